#!/usr/bin/env bash
# On a GPU host, with target/device from scripts/device-build.sh: the GPU, the training-step
# benchmark against PyTorch on the same GPU (bench/train_throughput.py), then the whole demo with
# its training job on the GPU. Results go to $OUT (or ./device-out).
cd "$(dirname "$0")/.."
OUT=${OUT:-device-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())"
# cuBLAS, cuRAND and NVRTC from PyTorch's wheels or a toolkit; never the toolkit's stub libcuda,
# which would shadow the driver's.
PREFIX=$(python3 -c 'import sys; print(sys.prefix)')
LIBS=$(timeout 60 find "$PREFIX" /usr/local -xdev \( -name 'libcublas.so*' -o -name 'libcurand.so*' -o -name 'libnvrtc.so*' \) 2>/dev/null \
    | xargs -r -n1 dirname | grep -v stubs | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$PWD/target/device:$LIBS${LD_LIBRARY_PATH:-}"
chmod +x target/device/cvops target/device/throughput
target/device/throughput --steps 1 --warmup 1 --batch 8 2>/dev/null | grep -q '"cuda"' || {
    echo "the cuda build did not find the GPU:"; target/device/throughput --steps 1 --warmup 1 --batch 8 2>&1 | cut -c1-600 | tail -5; exit 3; }
timeout 90 python3 bench/train_throughput.py --binary target/device/throughput | tee "$OUT/train_throughput.md"
timeout 90 python3 bench/train_throughput.py --binary target/device/throughput --strict-fp32 | tee "$OUT/train_throughput_strict.md"
time (timeout 170 target/device/cvops --data-dir "$OUT/demo" demo --samples samplesets > "$OUT/demo.txt" 2>&1; echo "demo exit $?")
grep -v '^loading' "$OUT"/demo/jobs/*.log | head -30
grep -n 'accuracy' "$OUT/demo.txt" | head -8
rm -rf "$OUT/demo/buckets" "$OUT/demo"/*.sqlite*
# The check that matters: the model trained on the GPU passed register-model's gate (90% floor).
grep -q '"promoted":true' "$OUT"/demo/jobs/*.log && grep -q ' on cuda$' "$OUT"/demo/jobs/*.log \
    || { echo "FAILED: the demo's model was not trained on the GPU, or did not pass the gate"; exit 1; }
echo "the demo's model was trained on the GPU and promoted"
