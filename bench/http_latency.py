#!/usr/bin/env python3
"""End-to-end HTTP latency: `cvops serve` against the Python peer (../shared/peers/ort_infer.py
serve: onnxruntime, one thread, Pillow preprocessing) with the same model and the same images,
over loopback, the same client for both (cli/examples/http_load.rs: a fixed request count,
CONCURRENCY at a time). Also cold start (process start to the first answered prediction), the
model load time, and what the monitoring feed costs (cvops serve with CVOPS_MONITORING=off).

    cargo build --release -p cvops --bin cvops --example http_load
    pip install onnxruntime numpy pillow
    cargo run --release -p cvops -- demo                     # a trained digits model in .cvops-demo
    python3 bench/http_latency.py --own .cvops-demo [--requests 2000] [--concurrency 1,4]
"""
import argparse, json, os, pathlib, re, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from infer_latency import machine  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "peers" / "ort_infer.py"
CVOPS = ROOT / "target" / "release" / "cvops"
LOAD = ROOT / "target" / "release" / "examples" / "http_load"
IMAGES = ROOT / "samplesets" / "digits" / "test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_answer(url, body, process, timeout=60):
    """Seconds from now until `url` answers 200 to a POST of `body`."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            sys.exit(f"the server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            request = urllib.request.Request(url, data=body, headers={"content-type": "image/png"})
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.005)
    sys.exit(f"{url} did not answer within {timeout} s")


def production(data_dir):
    out = subprocess.run([str(CVOPS), "--data-dir", data_dir, "models", "--json"], check=True, capture_output=True, text=True).stdout
    versions = [json.loads(line) for line in out.splitlines() if line.strip()]
    chosen = [v for v in versions if v["model"] == "digits" and v["stage"] == "production"]
    if not chosen:
        sys.exit(f"no production digits model in {data_dir}; run `cvops demo` first")
    return chosen[0]


def load(url, requests, concurrency):
    out = subprocess.run([str(LOAD), url, str(IMAGES), str(requests), str(concurrency)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_cvops(data_dir, port, monitoring):
    env = dict(os.environ, CVOPS_LOG="cvops_infer=info", CVOPS_MONITORING=monitoring, RAYON_NUM_THREADS="1")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(CVOPS), "--data-dir", data_dir, "serve", "--no-auth", "--addr", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, started


def start_peer(model, port, version):
    spec = version["input"]
    labels = ",".join(version["labels"])
    args = [sys.executable, str(PEER), "serve", str(model), str(port), "--size", str(spec["width"]), "--labels", labels,
            "--mean", ",".join(str(m) for m in spec["mean"]), "--std", ",".join(str(s) for s in spec["std"])]
    if spec["channels"] == 1:
        args.insert(5, "--grey")
    started = time.perf_counter()
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--own", required=True, help="a cvops data directory with a production digits model")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,4")
    args = parser.parse_args()
    version = production(args.own)
    sample = next(IMAGES.glob("*/*.png")).read_bytes()
    work = tempfile.mkdtemp()
    model = pathlib.Path(work) / "model.onnx"
    model.write_bytes((pathlib.Path(args.own) / "buckets" / "models" / version["artifact"]["key"]).read_bytes())

    results = {}
    servers = [("cvops serve", lambda p: start_cvops(args.own, p, "on"), "/v1/models/digits/predict"),
               ("cvops serve, monitoring off", lambda p: start_cvops(args.own, p, "off"), "/v1/models/digits/predict"),
               ("ort_infer.py serve (peer)", lambda p: start_peer(model, p, version), "/predict")]
    for name, start, path in servers:
        port = free_port()
        process, started = start(port)
        url = f"http://127.0.0.1:{port}{path}"
        try:
            first_answer(url, sample, process)
            cold = time.perf_counter() - started
            load(url, 200, 1)  # warm-up
            runs = {c: load(url, args.requests, c) for c in (int(x) for x in args.concurrency.split(","))}
        finally:
            process.terminate()
            _, err = process.communicate(timeout=10)
        loaded = re.search(r"load_ms=([\d.]+)", re.sub(r"\x1b\[[0-9;]*m", "", err or ""))
        results[name] = {"cold_start_ms": cold * 1e3, "model_load_ms": float(loaded[1]) if loaded else None, "runs": runs}

    print(f"Machine: {machine()}; model: digits v{version['version']} ({version['input']['width']}x{version['input']['height']}, "
          f"{version['input']['channels']} channel); {args.requests} requests of the {len(list(IMAGES.glob('*/*.png')))} test digits, loopback\n")
    print("| server | concurrency | p50 ms | p95 ms | p99 ms | requests/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for c, run in r["runs"].items():
            print(f"| {name} | {c} | {run['p50_ms']:.3f} | {run['p95_ms']:.3f} | {run['p99_ms']:.3f} | {run['requests_per_s']:.0f} | {run['errors']} |")
    peer = results["ort_infer.py serve (peer)"]["runs"]
    ours = results["cvops serve"]["runs"]
    off = results["cvops serve, monitoring off"]["runs"]
    print()
    for c in ours:
        print(f"concurrency {c}: p50 cvops / peer = {ours[c]['p50_ms'] / peer[c]['p50_ms']:.2f}x; "
              f"monitoring adds {ours[c]['p50_ms'] - off[c]['p50_ms']:+.3f} ms to the p50")
    print()
    print("| server | cold start (spawn to first prediction) ms | model load ms |")
    print("|---|---:|---:|")
    for name, r in results.items():
        load_ms = f"{r['model_load_ms']:.1f}" if r["model_load_ms"] is not None else "-"
        print(f"| {name} | {r['cold_start_ms']:.0f} | {load_ms} |")


if __name__ == "__main__":
    main()
