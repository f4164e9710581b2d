#!/usr/bin/env python3
"""Training throughput: the trainer's network on candle (what the Batch job runs) against the same
network in PyTorch, on the same device, same batch, same synthetic inputs, same run. Prints a
Markdown table for the README.

    cargo build --release -p cvops-trainer --example throughput --features cuda   # on a GPU host
    python3 bench/train_throughput.py [--binary PATH] [--batch 256] [--steps 50] [--cpu]

The network is the anchor's: conv3x3 32-64-128 (no bias), each with batch norm, ReLU and a 2x2
max-pool, global average pool, linear(10); 64x64 RGB; AdamW (lr 1e-3, weight decay 0.01); fp32.
PyTorch runs with its defaults (cuDNN may use TF32 for convolutions unless --strict-fp32).
"""
import argparse, json, os, pathlib, platform, subprocess, time

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
ANCHOR_IMAGES_PER_SECOND = 95_000  # PyTorch 2.11, one H200, fp32, batch 256 (the anchor)


def network(channels, width, classes=10):
    layers, inputs = [], channels
    for outputs in (width, width * 2, width * 4):
        layers += [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(), nn.MaxPool2d(2)]
        inputs = outputs
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, classes))


def torch_throughput(args, device):
    torch.manual_seed(0)
    net = network(args.channels, args.width).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(args.batch, args.channels, args.side, args.side, device=device)
    y = (torch.arange(args.batch, device=device) % 10).long()
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimiser.step()
        return loss

    for _ in range(args.warmup):
        step().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    final = loss.item()  # waits for the device
    seconds = time.perf_counter() - started
    return {"framework": f"pytorch {torch.__version__}", "seconds": seconds, "images_per_second": args.steps * args.batch / seconds, "loss": final}


def candle_throughput(args):
    command = [str(args.binary), "--batch", str(args.batch), "--side", str(args.side), "--channels", str(args.channels),
               "--width", str(args.width), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.cpu:
        command.append("--cpu")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["framework"] = "candle (cvops-trainer)"
    return result


def machine(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", type=pathlib.Path, default=ROOT / "target" / "release" / "examples" / "throughput")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--cpu", action="store_true", help="compare on the CPU instead of the first GPU")
    parser.add_argument("--strict-fp32", action="store_true", help="turn PyTorch's TF32 convolutions off")
    args = parser.parse_args()
    if args.strict_fp32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))

    candle = candle_throughput(args)
    reference = torch_throughput(args, device)
    print(f"Machine: {machine(device)}; batch {args.batch}, {args.channels}x{args.side}x{args.side}, "
          f"widths {args.width}-{args.width * 2}-{args.width * 4}, {args.steps} timed steps after {args.warmup}\n")
    print("| trainer | device | images/s | vs PyTorch, same run | vs the 95,000 images/s anchor |")
    print("|---|---|---:|---:|---:|")
    for row in (candle, reference):
        print(f"| {row['framework']} | {device.type} | {row['images_per_second']:,.0f} | "
              f"{row['images_per_second'] / reference['images_per_second']:.2f}x | "
              f"{row['images_per_second'] / ANCHOR_IMAGES_PER_SECOND:.2f}x |")
    print(json.dumps({"candle": candle, "pytorch": reference, "machine": machine(device)}))


if __name__ == "__main__":
    main()
