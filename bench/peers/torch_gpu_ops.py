#!/usr/bin/env python3
"""PyTorch peer of bench/gpu_elementwise.cpp: the same work on the same GPU, the same JSON keys.

Prints one line per measurement: {"bench", "value", "unit"}. CUDA events, 3 warm-up runs, median of 20.
gpu_check.sh runs both programs and prints them side by side.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import median_gpu_ms  # noqa: E402




def report(bench, value, unit):
    print(json.dumps({"bench": bench, "value": round(value, 2), "unit": unit}), flush=True)


def main():
    if not torch.cuda.is_available():
        print("torch_gpu_ops: SKIPPED: torch sees no CUDA device", file=sys.stderr)
        return 0
    dev = torch.device("cuda:0")
    n = 1 << 28
    a = torch.rand(n, device=dev)
    b = torch.rand(n, device=dev)
    c = torch.empty_like(a)
    nbytes = n * 4
    ms = median_gpu_ms(lambda: c.copy_(a), 3, 20)
    report("copy_d2d_f32_256M", 2 * nbytes / ms / 1e6, "GB/s")
    ms = median_gpu_ms(lambda: torch.add(a, b), 3, 20)
    report("add_f32_256M", 3 * nbytes / ms / 1e6, "GB/s")
    ms = median_gpu_ms(lambda: torch.mul(a, b), 3, 20)
    report("mul_f32_256M", 3 * nbytes / ms / 1e6, "GB/s")
    ms = median_gpu_ms(lambda: torch.mul(a, 3.0), 3, 20)
    report("scale_f32_256M", 2 * nbytes / ms / 1e6, "GB/s")
    a16, b16 = a.bfloat16(), b.bfloat16()
    ms = median_gpu_ms(lambda: torch.add(a16, b16), 3, 20)
    report("add_bf16_256M", 3 * nbytes / 2 / ms / 1e6, "GB/s")
    del a, b, c, a16, b16

    m = 4096
    flop = 2.0 * m * m * m
    x = torch.randn(m, m, device=dev)
    y = torch.randn(m, m, device=dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    ms = median_gpu_ms(lambda: torch.matmul(x, y), 3, 20)
    report("matmul_f32_4096", flop / ms / 1e9, "TFLOP/s")
    torch.backends.cuda.matmul.allow_tf32 = True
    ms = median_gpu_ms(lambda: torch.matmul(x, y), 3, 20)
    report("matmul_tf32_4096", flop / ms / 1e9, "TFLOP/s")
    x16, y16 = x.bfloat16(), y.bfloat16()
    ms = median_gpu_ms(lambda: torch.matmul(x16, y16), 3, 20)
    report("matmul_bf16_4096", flop / ms / 1e9, "TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
