#!/usr/bin/env python3
"""Detection latency: what cvops' endpoint does for a detector after decoding an image
(letterbox, normalise, run on tract, decode the YOLO layout, NMS, map boxes back), against
onnxruntime doing the same work in Python (Pillow letterbox, numpy decoding and NMS, as a Python
endpoint would), batch 1, one thread each, on the same model and the same images, in the same run.

    cargo build --release -p cvops-inference --example detect_latency
    pip install onnxruntime numpy pillow
    python3 bench/detect_latency.py [--model samplesets/yolov8n/yolov8n-digits.onnx] \
        [--images samplesets/detect-digits/images/test] [--classes 10] [--size 96] [--runs 20] \
        [--card card.json]

With --card (the model card of a model trained by cvops, such as the reference detector), both
sides prepare the input as the card says (resize mode, mean and std) instead of Ultralytics'
letterbox and 0..1 scaling.

Prints Markdown rows: the per-image median of the whole request and of the model's run alone,
for both, with the ratio, and how many images got the same number of boxes from both (the letterbox's resampling differs, Pillow's bilinear against
the image crate's triangle filter, so a box near a threshold may differ).
"""
import argparse, datetime, json, pathlib, subprocess, time

import numpy as np
import onnxruntime as ort
from PIL import Image

from infer_latency import machine  # this folder's: the CPU, its cores, the OS

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURS = ROOT / "target" / "release" / "examples" / "detect_latency"


def letterbox(image, size):
    w, h = image.size
    r = min(size / w, size / h)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(image.resize((nw, nh), Image.BILINEAR), (round((size - nw) / 2 - 0.1), round((size - nh) / 2 - 0.1)))
    return canvas, nw / w, nh / h, round((size - nw) / 2 - 0.1), round((size - nh) / 2 - 0.1)


def iou(box, others):
    x1 = np.maximum(box[0], others[:, 0]); y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2]); y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(others) - inter + 1e-9)


def squash(image, size):
    w, h = image.size
    return image.resize((size, size), Image.BILINEAR), size / w, size / h, 0, 0


def prepare(image, size, spec):
    """The input as the card's spec says (Ultralytics' letterbox and 0..1 without one), and where the image landed."""
    fitted = squash(image, size) if spec and spec.get("resize", "squash") == "squash" else letterbox(image, size)
    x = np.asarray(fitted[0], dtype=np.float32) / 255.0
    if spec:
        x = (x - np.array(spec["mean"], dtype=np.float32)) / np.array(spec["std"], dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), fitted[1:]


def detect(session, name, image, size, spec=None, conf=0.25, iou_threshold=0.7, max_det=300):
    x, (sx, sy, left, top) = prepare(image, size, spec)
    out = session.run(None, {name: np.ascontiguousarray(x)})[0][0]  # [4 + classes, N]
    scores = out[4:]
    cls, best = scores.argmax(0), scores.max(0)
    keep = best >= conf
    cx, cy, w, h = out[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    cls, best = cls[keep], best[keep]
    order = np.argsort(-best, kind="stable")
    kept = []
    for i in order:
        if len(kept) == max_det:
            break
        same = [k for k in kept if cls[k] == cls[i]]
        if not same or iou(boxes[i], boxes[same]).max() <= iou_threshold:
            kept.append(i)
    result = boxes[kept].copy()
    result[:, [0, 2]] = (result[:, [0, 2]] - left) / sx
    result[:, [1, 3]] = (result[:, [1, 3]] - top) / sy
    return result


def peer(model, images, size, runs, spec):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    started = time.perf_counter()
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - started) * 1e3
    name = session.get_inputs()[0].name
    times, model_times, boxes = [], [], []
    for image in images:
        boxes.append(len(detect(session, name, image, size, spec)))
        x = prepare(image, size, spec)[0]
        for _ in range(runs):
            started = time.perf_counter()
            detect(session, name, image, size, spec)
            times.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            session.run(None, {name: x})
            model_times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    model_times.sort()
    return {"load_ms": load_ms, "median_ms": times[len(times) // 2], "min_ms": times[0],
            "model_median_ms": model_times[len(model_times) // 2], "boxes": boxes}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "samplesets/yolov8n/yolov8n-digits.onnx"))
    parser.add_argument("--images", default=str(ROOT / "samplesets/detect-digits/images/test"))
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--card", help="a cvops model card: prepare the input as its spec says")
    args = parser.parse_args()
    spec = json.loads(pathlib.Path(args.card).read_text())["input"] if args.card else None
    paths = sorted(pathlib.Path(args.images).iterdir())
    images = [Image.open(p).convert("RGB") for p in paths]
    ours = json.loads(
        subprocess.run(
            [str(OURS), args.model, args.images, str(args.classes), str(args.size), str(args.runs)] + ([args.card] if args.card else []),
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )
    theirs = peer(args.model, images, args.size, args.runs, spec)
    same = sum(a == b for a, b in zip(ours["boxes"], theirs["boxes"]))
    print(f"machine: {machine()}; {datetime.date.today()}; {len(images)} images x {args.runs} runs; {pathlib.Path(args.model).name} at {args.size}x{args.size}")
    print("| model | what | cvops (tract) median | onnxruntime (+ numpy) median | ratio |")
    print("|---|---|---:|---:|---:|")
    name = pathlib.Path(args.model).name
    print(f"| {name} | whole request after decoding | {ours['median_ms']:.2f} ms | {theirs['median_ms']:.2f} ms | {ours['median_ms'] / theirs['median_ms']:.2f}x |")
    print(f"| {name} | the model's run alone | {ours['model_median_ms']:.2f} ms | {theirs['model_median_ms']:.2f} ms | {ours['model_median_ms'] / theirs['model_median_ms']:.2f}x |")
    print(f"same number of boxes on {same} of {len(images)} images")


if __name__ == "__main__":
    main()
