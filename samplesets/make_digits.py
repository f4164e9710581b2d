#!/usr/bin/env python3
"""Regenerates samplesets/digits from the MNIST PNGs beside the project (../shared/datasets/mnist).

The first 500 files of each digit, in file-name order: 400 train, 50 val, 50 test. Byte-for-byte
copies, no other change, no selection.

    python3 samplesets/make_digits.py [MNIST_DIR]
"""
import pathlib, shutil, sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "datasets" / "mnist"
SPLITS = [("train", 400), ("val", 50), ("test", 50)]

out = HERE / "digits"
for split, _ in SPLITS:
    shutil.rmtree(out / split, ignore_errors=True)
for digit in range(10):
    files = sorted((SOURCE / str(digit)).glob("*.png"))
    start = 0
    for split, n in SPLITS:
        target = out / split / str(digit)
        target.mkdir(parents=True, exist_ok=True)
        for f in files[start:start + n]:
            shutil.copyfile(f, target / f.name)
        start += n
print(f"wrote {sum(n for _, n in SPLITS) * 10} digits to {out}")
