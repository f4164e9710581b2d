#!/usr/bin/env python3
"""COCO import: cvops reading a COCO file into its detection layout (cli/examples/coco_import.rs:
the stream parse and the conversion of every box to a YOLO line, without the uploads) against
pycocotools loading the same file (COCO(path): json.load and its index), in the same run.

    cargo build --release -p cvops --example coco_import
    pip install pycocotools
    python3 bench/coco_import.py [--images 100000] [--boxes 1000000]

The file is made first, seeded: 100,000 images of 640x480 and 1,000,000 boxes spread over 80
categories, each annotation with a 4-point polygon, area and iscrowd, as COCO's own files have.
Both are timed as whole processes (start-up included); peak RSS is each process's maximum
resident set size (wait4).
"""
import argparse, json, os, pathlib, platform, random, subprocess, sys, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CVOPS = ROOT / "target" / "release" / "examples" / "coco_import"


def make(path, images, boxes):
    rng = random.Random(7)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write('{"info": {"description": "cvops coco_import benchmark"}, "images": [')
        f.write(",".join(json.dumps({"id": i + 1, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480}) for i in range(images)))
        f.write('], "categories": [')
        f.write(",".join(json.dumps({"id": c + 1, "name": f"class{c}", "supercategory": "thing"}) for c in range(80)))
        f.write('], "annotations": [')
        for a in range(boxes):
            x, y = rng.uniform(0, 600), rng.uniform(0, 440)
            w, h = rng.uniform(1, 640 - x), rng.uniform(1, 480 - y)
            ann = {"id": a + 1, "image_id": rng.randrange(images) + 1, "category_id": rng.randrange(80) + 1,
                   "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]], "area": w * h,
                   "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "iscrowd": 0}
            f.write(("," if a else "") + json.dumps(ann))
        f.write("]}")


def run_measured(cmd):
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()
    return wall, usage.ru_maxrss / 1024, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/cvops-coco-bench")
    args = parser.parse_args()
    path = pathlib.Path(args.dir) / "annotations" / "instances_train.json"
    if not path.exists():
        make(path, args.images, args.boxes)
    size = path.stat().st_size / 1e6
    cvops_wall, cvops_rss, out = run_measured([str(CVOPS), args.dir])
    counted = json.loads(out.strip().splitlines()[-1])
    assert counted["boxes"] == args.boxes, counted
    peer = "import sys\nfrom pycocotools.coco import COCO\nc = COCO(sys.argv[1])\nprint(len(c.getAnnIds()))\n"
    peer_wall, peer_rss, out = run_measured([sys.executable, "-c", peer, str(path)])
    assert int(out.strip().splitlines()[-1]) == args.boxes, out
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
          f"{path.name}: {size:.0f} MB, {args.images:,} images, {args.boxes:,} boxes\n")
    print("| reader | wall s | boxes/s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    print(f"| cvops (stream parse + YOLO lines) | {cvops_wall:.2f} | {args.boxes / cvops_wall:,.0f} | {cvops_rss:,.0f} |")
    print(f"| pycocotools COCO() | {peer_wall:.2f} | {args.boxes / peer_wall:,.0f} | {peer_rss:,.0f} |")
    print(f"\nratio (cvops / pycocotools): {peer_wall / cvops_wall:.2f}x the boxes/s, {cvops_rss / peer_rss:.2f}x the memory")


if __name__ == "__main__":
    main()
