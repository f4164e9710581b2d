#!/usr/bin/env python3
"""Model latency: tract, and what the endpoint runs (`LoadedModel`: the direct runner for the
trainer's architecture where the CPU allows, else tract), against onnxruntime
(../shared/peers/ort_infer.py), batch 1, one thread each, same input, same run, on this machine. Prints a Markdown table for the
README.

    cargo build --release -p cvops-inference --example latency
    pip install onnxruntime numpy pillow
    python3 bench/infer_latency.py [--runs 50] [--own DATA_DIR]

Models: every folder of ../shared/models (torchvision architectures with random weights, with
onnxruntime's output to check against), and, with --own, the most accurate `digits` model in a
cvops data directory (`cvops demo` makes one in .cvops-demo), on a standard-normal input of its
card's shape.
"""
import argparse, json, pathlib, platform, re, subprocess, sys, tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "peers" / "ort_infer.py"
MODELS = ROOT.parent / "shared" / "models"
TRACT = ROOT / "target" / "release" / "examples" / "latency"


def machine():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {len(__import__('os').sched_getaffinity(0))} cores, {platform.system()} {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def tract(model_dir, runs):
    out = subprocess.run([str(TRACT), str(model_dir), str(runs)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peer(model_dir, runs):
    out = subprocess.run([sys.executable, str(PEER), "latency", str(model_dir), str(runs)], check=True, capture_output=True, text=True).stdout
    m = re.search(r"load ([\d.]+) ms, median ([\d.]+) ms, min ([\d.]+) ms", out)
    return {"load_ms": float(m[1]), "median_ms": float(m[2]), "min_ms": float(m[3])}


def own_model_dir(data_dir, work):
    """The most accurate digits model of a data directory, with an input of its card's shape."""
    cards = list((pathlib.Path(data_dir) / "buckets" / "models" / "models" / "digits" / "runs").glob("*/0/card.json"))
    if not cards:
        sys.exit(f"no trained digits model under {data_dir}; run `cvops demo` first")
    best = max(cards, key=lambda c: json.loads(c.read_text())["metrics"]["test"]["accuracy"])
    runs, card = [best], json.loads(best.read_text())
    target = pathlib.Path(work) / "cvops-digits"
    target.mkdir()
    (target / "model.onnx").write_bytes((runs[0].parent / "model.onnx").read_bytes())
    spec = card["input"]
    x = np.random.default_rng(0).standard_normal((1, spec["channels"], spec["height"], spec["width"])).astype(np.float32)
    np.save(target / "input.npy", x)
    return target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--own", help="a cvops data directory with a trained digits model")
    args = parser.parse_args()
    dirs = sorted(p for p in MODELS.iterdir() if (p / "model.onnx").exists())
    with tempfile.TemporaryDirectory() as work:
        if args.own:
            dirs.append(own_model_dir(args.own, work))
        print(f"Machine: {machine()}. Batch 1, one thread each, {args.runs} runs after 5 warm-ups; medians.\n")
        print("| model | tract load | tract median | onnxruntime load | onnxruntime median | tract / onnxruntime "
              "| cvops runner | cvops median | cvops / onnxruntime | tract vs output.npy |")
        print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for d in dirs:
            t, p = tract(d, args.runs), peer(d, args.runs)
            error = t["relative_error_vs_output_npy"]
            print(
                f"| {d.name} | {t['load_ms']:.0f} ms | {t['median_ms']:.3f} ms | {p['load_ms']:.0f} ms | {p['median_ms']:.3f} ms "
                f"| **{t['median_ms'] / p['median_ms']:.2f}x** | {t['cvops_runner']} | {t['cvops_median_ms']:.3f} ms "
                f"| **{t['cvops_median_ms'] / p['median_ms']:.2f}x** | {'-' if error is None else f'{error:.1e}'} |"
            )


if __name__ == "__main__":
    main()
