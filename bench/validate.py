#!/usr/bin/env python3
"""Validation throughput: `cvops validate` against the Pillow peer (../shared/peers/pillow_validate.py)
on the same files, in the same run, on this machine. Prints a Markdown table for the README.

    cargo build --release -p cvops
    pip install pillow numpy
    python3 bench/validate.py [--photos 8] [--repeat 3]

Both run on one core: `cvops validate` checks files one after another on one thread, as the peer
does. Timing: cvops is timed as a whole process (start-up included); the peer by its own clock
after Python and numpy have loaded, which favours the peer. Peak RSS is the kernel's maximum
resident set size of each process (wait4).
"""
import argparse, json, os, pathlib, platform, re, subprocess, sys, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "peers" / "pillow_validate.py"
CVOPS = ROOT / "target" / "release" / "cvops"


def run_measured(cmd):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        errfile = os.open("/tmp/cvops-bench-stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(errfile, 2)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    stderr = pathlib.Path("/tmp/cvops-bench-stderr").read_text()
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), stderr


def megapixels(files):
    out = subprocess.run([str(CVOPS), "validate", "--json", *map(str, files)], capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return sum((r["width"] or 0) * (r["height"] or 0) for r in rows if r["valid"]) / 1e6, sum(r["valid"] for r in rows)


def measure(name, files, repeat):
    mp, valid = megapixels(files)
    assert valid == len(files), f"{name}: only {valid} of {len(files)} valid"
    cvops_wall, cvops_rss = 0.0, 0.0
    for _ in range(repeat):
        wall, rss, code, _ = run_measured([str(CVOPS), "validate", "--json", *map(str, files)])
        assert code == 0, f"cvops exited {code}"
        cvops_wall, cvops_rss = cvops_wall + wall, max(cvops_rss, rss)
    _, peer_rss, code, err = run_measured([sys.executable, str(PEER), "--repeat", str(repeat), *map(str, files)])
    assert code == 0, err
    peer_wall = float(re.search(r"files in ([0-9.]+) s", err).group(1))
    n = len(files) * repeat
    return {
        "set": name, "files": len(files), "mp": mp,
        "cvops_fps": n / cvops_wall, "cvops_mps": mp * repeat / cvops_wall, "cvops_rss": cvops_rss,
        "peer_fps": n / peer_wall, "peer_mps": mp * repeat / peer_wall, "peer_rss": peer_rss,
    }


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not CVOPS.exists():
        sys.exit("build first: cargo build --release -p cvops")
    photos_dir = ROOT / "bench" / "out" / "photos"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_photos.py"), str(photos_dir), str(args.photos)], check=True)
    photos = sorted(photos_dir.glob("*.jpg"))[: args.photos]
    digits = sorted((ROOT / "samplesets" / "digits").rglob("*.png"))
    rows = [measure("camera JPEG 4032x3024", photos, args.repeat), measure("digits PNG 28x28", digits, args.repeat)]
    print(f"\nMachine: {machine()}; one core each; {args.repeat} passes over the files.\n")
    print("| files | count | cvops files/s | cvops MP/s | cvops peak RSS | Pillow peer files/s | peer MP/s | peer peak RSS | cvops / peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['files']} | {r['cvops_fps']:.1f} | {r['cvops_mps']:.1f} | {r['cvops_rss']:.0f} MB | "
              f"{r['peer_fps']:.1f} | {r['peer_mps']:.1f} | {r['peer_rss']:.0f} MB | **{r['cvops_fps'] / r['peer_fps']:.1f}x** |")


if __name__ == "__main__":
    main()
