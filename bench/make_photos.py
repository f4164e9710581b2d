#!/usr/bin/env python3
"""Writes camera-size test photos: 4032 x 3024 JPEGs (12.2 megapixels, quality 90), with smooth
gradients, shapes and sensor-like noise, so that they compress like real photos (about 3-5 MB).

    python3 bench/make_photos.py OUT_DIR [N]
"""
import pathlib, sys

import numpy as np
from PIL import Image

W, H = 4032, 3024


def photo(seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([
        120 + 80 * np.sin(x / (300 + 40 * seed) + seed) * np.cos(y / 410),
        110 + 70 * np.cos(x / 520 - seed) + 30 * np.sin(y / 170),
        100 + 60 * np.sin((x + y) / (350 + 25 * seed)),
    ], axis=-1)
    for _ in range(12):  # a few objects with hard edges
        cx, cy, r = rng.integers(0, W), rng.integers(0, H), rng.integers(100, 600)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.integers(0, 255, size=3)
    base += rng.normal(0, 6, size=base.shape)  # sensor noise
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def main():
    out = pathlib.Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = out / f"photo-{i:02d}.jpg"
        if not path.exists():
            photo(i).save(path, "JPEG", quality=90)
    print(f"{n} photos of {W}x{H} in {out}")


if __name__ == "__main__":
    main()
