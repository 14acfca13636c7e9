#!/usr/bin/env python3
"""PyTorch peer of bench/cpu_dense.cpp: times the same conv/matmul work on the CPU with 2 threads.

bench_cpu_dense runs this script with the shape list on the command line, so both sides measure exactly the
same shapes; each shape prints one JSON line {"key", "fwd_ms", "bwd_data_ms", "bwd_weight_ms"} that the C++
side parses. Shape arguments:
  conv:N,C,H,W,K,R,S,stride,pad,dil,groups,bias     matmul:M,N,K
"""
import json
import sys
import time

import torch


def median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def conv_case(args, warmup, runs):
    n, c, h, w, k, r, s, stride, pad, dil, groups, bias = args
    x = torch.randn(n, c, h, w)
    wt = torch.randn(k, c // groups, r, s)
    b = torch.randn(k) if bias else None
    y = torch.nn.functional.conv2d(x, wt, b, stride, pad, dil, groups)
    dy = torch.randn_like(y)
    common = ([k] if bias else None, [stride] * 2, [pad] * 2, [dil] * 2, False, [0, 0], groups)
    conv_bwd = torch.ops.aten.convolution_backward
    return {
        "fwd_ms": median_ms(lambda: torch.nn.functional.conv2d(x, wt, b, stride, pad, dil, groups), warmup, runs),
        "bwd_data_ms": median_ms(lambda: conv_bwd(dy, x, wt, *common, [True, False, False]), warmup, runs),
        "bwd_weight_ms": median_ms(lambda: conv_bwd(dy, x, wt, *common, [False, True, bool(bias)]), warmup, runs),
    }


def matmul_case(args, warmup, runs):
    m, n, k = args
    a, b, dc = torch.randn(m, k), torch.randn(k, n), torch.randn(m, n)
    return {
        "fwd_ms": median_ms(lambda: torch.matmul(a, b), warmup, runs),
        "bwd_data_ms": median_ms(lambda: torch.matmul(dc, b.t()), warmup, runs),  # dA = dC B^T
        "bwd_weight_ms": median_ms(lambda: torch.matmul(a.t(), dc), warmup, runs),  # dB = A^T dC
    }


def main():
    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    warmup, runs = 2, 5
    keys = []
    for arg in sys.argv[1:]:
        if arg.startswith("--runs="):
            runs = int(arg.split("=")[1])
        else:
            keys.append(arg)
    for key in keys:
        kind, nums = key.split(":")
        values = [int(v) for v in nums.split(",")]
        result = conv_case(values, warmup, runs) if kind == "conv" else matmul_case(values, warmup, runs)
        print(json.dumps({"key": key, **result}), flush=True)


if __name__ == "__main__":
    main()
