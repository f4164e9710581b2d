#!/usr/bin/env python3
"""Regenerates samplesets/detect-digits, a small object-detection set, and samplesets/bad/annotations,
one label fault for every annotation code, from the MNIST PNGs beside the project.

Digits 500 to 999 of each class (the classification set uses 0 to 499) are scaled to 14-44 px and
pasted, 1 to 4 per image without overlap, on 96x96 textured backgrounds (noise over a gradient,
stripes or a checkerboard, in random colours), in a contrasting colour with the digit's own
intensity as alpha. Each box is the tight box of the pasted glyph's pixels. Seeded: the same
script gives the same pictures and boxes.

Written twice over the same images: YOLO (data.yaml, images/<split>/, labels/<split>/, as
Ultralytics trains from) and COCO (annotations/instances_<split>.json, category ids 1-10 for the
names "0"-"9"). 800 images: 640 train, 80 val, 80 test.

    pip install pillow
    python3 samplesets/make_detect.py [MNIST_DIR]
"""
import json, pathlib, random, shutil, sys

from PIL import Image, ImageDraw

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "datasets" / "mnist"
OUT = HERE / "detect-digits"
BAD = HERE / "bad" / "annotations"
SIZE = 96
SPLITS = [("train", 640), ("val", 80), ("test", 80)]
NAMES = [str(d) for d in range(10)]

rng = random.Random(20261203)
glyphs = {d: sorted((SOURCE / str(d)).glob("*.png"))[500:1000] for d in range(10)}


def colour():
    return tuple(rng.randrange(256) for _ in range(3))


def background():
    im = Image.new("RGB", (SIZE, SIZE))
    a, b = colour(), colour()
    kind = rng.randrange(3)
    draw = ImageDraw.Draw(im)
    if kind == 0:  # noise over a gradient
        px = im.load()
        for y in range(SIZE):
            for x in range(SIZE):
                t = (x + y) / (2 * SIZE)
                n = rng.randrange(-30, 31)
                px[x, y] = tuple(max(0, min(255, int(a[i] * (1 - t) + b[i] * t) + n)) for i in range(3))
    elif kind == 1:  # stripes
        width = rng.randrange(3, 12)
        for x in range(-SIZE, 2 * SIZE, 2 * width):
            draw.polygon([(x, 0), (x + width, 0), (x + width + SIZE // 2, SIZE), (x + SIZE // 2, SIZE)], fill=a)
        im = Image.blend(Image.new("RGB", im.size, b), im, 0.7)
    else:  # checkerboard
        cell = rng.randrange(6, 20)
        for y in range(0, SIZE, cell):
            for x in range(0, SIZE, cell):
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=a if (x // cell + y // cell) % 2 else b)
    return im


def mean(c):
    return sum(c) / 3


def glyph_of(digit):
    """A digit scaled to a random side, with the box of its ink inside that square (or None)."""
    glyph = Image.open(rng.choice(glyphs[digit])).convert("L")
    side = rng.randrange(14, 45)
    glyph = glyph.resize((side, side), Image.BILINEAR)
    bbox = glyph.point(lambda v: 255 if v > 60 else 0).getbbox()
    if bbox is None:
        return None
    return glyph, bbox, side


def make_image():
    im = background()
    boxes = []
    for _ in range(rng.randrange(1, 5)):
        digit = rng.randrange(10)
        made = glyph_of(digit)
        if made is None:
            continue
        glyph, (gx0, gy0, gx1, gy1), side = made
        for _try in range(50):
            x, y = rng.randrange(0, SIZE - side + 1), rng.randrange(0, SIZE - side + 1)
            box = (x + gx0, y + gy0, gx1 - gx0, gy1 - gy0)
            if all(box[0] + box[2] <= b[0] or b[0] + b[2] <= box[0] or box[1] + box[3] <= b[1] or b[1] + b[3] <= box[1] for b, _ in boxes):
                region = im.crop((x, y, x + side, y + side))
                under = mean(region.resize((1, 1)).getpixel((0, 0)))
                ink = tuple(rng.randrange(0, 70) for _ in range(3)) if under > 128 else tuple(rng.randrange(190, 256) for _ in range(3))
                im.paste(Image.new("RGB", (side, side), ink), (x, y), glyph)
                boxes.append((box, digit))
                break
    return im, boxes


def yolo_line(box, digit):
    x, y, w, h = box
    return f"{digit} {(x + w / 2) / SIZE:.6f} {(y + h / 2) / SIZE:.6f} {w / SIZE:.6f} {h / SIZE:.6f}"


def data_yaml(root):
    root.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f"'{n}'" for n in NAMES)
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\ntest: images/test\nnc: {len(NAMES)}\nnames: [{quoted}]\n")


shutil.rmtree(OUT, ignore_errors=True)
data_yaml(OUT)
index = 0
for split, count in SPLITS:
    (OUT / "images" / split).mkdir(parents=True)
    (OUT / "labels" / split).mkdir(parents=True)
    (OUT / "annotations").mkdir(exist_ok=True)
    coco = {"info": {"description": "detect-digits, made by samplesets/make_detect.py"}, "images": [], "annotations": [],
            "categories": [{"id": d + 1, "name": NAMES[d], "supercategory": "digit"} for d in range(10)]}
    for i in range(count):
        im, boxes = make_image()
        name = f"{split}_{i:04d}"
        im.save(OUT / "images" / split / f"{name}.jpg", "JPEG", quality=90)
        (OUT / "labels" / split / f"{name}.txt").write_text("".join(yolo_line(b, d) + "\n" for b, d in boxes))
        image_id = len(coco["images"]) + 1
        coco["images"].append({"id": image_id, "file_name": f"{name}.jpg", "width": SIZE, "height": SIZE})
        for box, digit in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": digit + 1,
                                        "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0})
    (OUT / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, separators=(",", ":")))
print(f"wrote {sum(n for _, n in SPLITS)} images to {OUT}")

# One label fault for each annotation code, in the YOLO layout; expected.tsv says what ingest answers.
shutil.rmtree(BAD, ignore_errors=True)
(BAD / "images" / "train").mkdir(parents=True)
(BAD / "labels" / "train").mkdir(parents=True)
data_yaml(BAD)
cases = [
    # name, label file bytes (None: no label file), boxes kept, refused codes (in line order)
    ("good", b"3 0.5 0.5 0.25 0.25\n", 1, []),
    ("background", None, 0, []),
    ("empty_file", b"", 0, []),
    ("malformed", b"3 0.5 0.5 0.25 0.25\n3 0.5 0.5 0.25\nthree 0.5 0.5 0.2 0.2\n3 0.1 0.1 0.2 0.2 0.3 0.3\n", 1, ["malformed_annotation"] * 3),
    ("empty_box", b"1 0.5 0.5 0 0.2\n1 0.5 0.5 0.2 -0.2\n", 0, ["empty_box"] * 2),
    ("outside", b"2 0.95 0.5 0.2 0.2\n2 48 48 20 20\n", 0, ["box_outside_image"] * 2),
    ("unknown_class", b"12 0.5 0.5 0.2 0.2\n4 0.25 0.25 0.2 0.2\n", 1, ["unknown_class"]),
    ("not_text", b"\xff\xfe\x00\x01binary", 0, ["malformed_label_file"]),
]
rows = ["# file\tboxes kept\trefused codes (comma-separated; - for none)"]
for name, label, kept, codes in cases:
    im, _ = make_image()
    im.save(BAD / "images" / "train" / f"{name}.jpg", "JPEG", quality=90)
    if label is not None:
        (BAD / "labels" / "train" / f"{name}.txt").write_bytes(label)
    rows.append(f"{name}\t{kept}\t{','.join(codes) or '-'}")
(BAD / "labels" / "train" / "orphan.txt").write_text("5 0.5 0.5 0.2 0.2\n")
rows.append("orphan\t0\tlabel_without_image")
(BAD / "expected.tsv").write_text("\n".join(rows) + "\n")
print(f"wrote {len(cases)} images and {len(cases)} label files to {BAD}")
