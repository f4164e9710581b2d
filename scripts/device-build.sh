#!/usr/bin/env bash
# Builds the GPU binaries (`cvops` and the trainer's throughput benchmark with `--features cuda`)
# on a host without a CUDA toolkit or a GPU, for a GPU host without a Rust toolchain:
#
#   scripts/device-build.sh            # -> target/device/{cvops,throughput,libcudart.so.13}
#   (on the GPU host, from the repository root, with target/device beside it)
#   bash scripts/device-run.sh         # the throughput benchmark against PyTorch, then the demo
#
# Where the CUDA toolkit is installed (the trainer image, a GPU workstation), plain
# `cargo build --release -p cvops --features cuda` does the same; this script exists for hosts
# without one. It fetches CUDA 13.0's compiler and headers as NVIDIA's Python wheels, and builds
# cudarc (candle's CUDA bindings) so that it loads the CUDA libraries when the program starts
# instead of linking them at build time (there are none to link here); on the GPU host they come
# from the driver and from PyTorch's wheels. The patch lives in the cache, never in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CVOPS_CUDA_CACHE:-target/cuda-toolkit}
OUT=target/device
CUDA_SERIES=13.0
COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}   # 90: H100/H200; 86: A10G; 89: L4
mkdir -p "$CACHE/wheels" "$OUT"
CACHE=$(cd "$CACHE" && pwd)

if [ ! -x "$CACHE/nvidia/cu13/bin/nvcc" ]; then
    echo "fetching the CUDA $CUDA_SERIES compiler (Python wheels)"
    python3 -m pip download --quiet --no-deps -d "$CACHE/wheels" \
        "nvidia-cuda-nvcc==$CUDA_SERIES.*" "nvidia-cuda-runtime==$CUDA_SERIES.*" "nvidia-cuda-cccl==$CUDA_SERIES.*" \
        "nvidia-nvvm==$CUDA_SERIES.*" "nvidia-cuda-crt==$CUDA_SERIES.*"
    for wheel in "$CACHE"/wheels/*.whl; do (cd "$CACHE" && python3 -m zipfile -e "$wheel" .); done
    chmod +x "$CACHE"/nvidia/cu13/bin/* "$CACHE"/nvidia/cu13/nvvm/bin/*
fi
TOOLKIT=$CACHE/nvidia/cu13
mkdir -p "$CACHE/link"
ln -sf "$TOOLKIT/lib/libcudart.so.13" "$CACHE/link/libcudart.so"

# cudarc, as candle's lock file pins it, made to load its libraries at run time.
CUDARC=$(cargo metadata --format-version 1 --features cvops-trainer/cuda 2>/dev/null | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in packages if p["name"] == "cudarc" and p["version"].startswith("0.19")))')
CUDARC=$(dirname "$CUDARC")
rm -rf "$CACHE/cudarc" && cp -r "$CUDARC" "$CACHE/cudarc"
python3 - "$CACHE/cudarc/build.rs" <<'PY'
import sys
path = sys.argv[1]
source = open(path).read()
linking = '''    #[cfg(feature = "dynamic-linking")]
    dynamic_linking(major, minor);'''
assert linking in source, "cudarc's build script changed: update scripts/device-build.sh"
source = source.replace(linking, '''    #[cfg(feature = "dynamic-linking")]
    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\"");''')
open(path, "w").write(source)
PY

cp Cargo.lock "$CACHE/Cargo.lock.kept"
trap 'cp "$CACHE/Cargo.lock.kept" Cargo.lock' EXIT
export PATH=$TOOLKIT/bin:$PATH CUDA_ROOT=$TOOLKIT CUDA_COMPUTE_CAP=$COMPUTE_CAP CUDARC_CUDA_VERSION=13000 \
    LIBRARY_PATH=$CACHE/link
PATCH="patch.crates-io.cudarc.path=\"$CACHE/cudarc\""
cargo build --release -p cvops --features cuda --config "$PATCH"
cargo build --release -p cvops-trainer --features cuda --example throughput --config "$PATCH"
TARGET=${CARGO_TARGET_DIR:-target}
cp "$TARGET/release/cvops" "$TARGET/release/examples/throughput" "$OUT/"
strip "$OUT/cvops" "$OUT/throughput"
cp "$TOOLKIT/lib/libcudart.so.13" "$OUT/"
du -sh "$OUT"
