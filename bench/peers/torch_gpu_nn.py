#!/usr/bin/env python3
"""PyTorch peer of bench/gpu_nn.cpp: the same work on the same GPU, the same JSON keys.

Fused cross-entropy (label smoothing 0.1) on (65536, 1000) logits, float32 and bf16: forward, and forward +
backward. ResNet-50 convolutions at batch 64 and 128, float32 with TF32 and bf16: forward, and backward
(grad input + grad weight through aten.convolution_backward, as autograd calls it). cudnn.benchmark is on,
so the warm-up runs include cuDNN's algorithm search, as ours do. CUDA events, 3 warm-up runs, median of 10.
Prints one line per measurement: {"bench", "value", "unit"}, in milliseconds.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import median_gpu_ms  # noqa: E402




def report(bench, ms):
    print(json.dumps({"bench": bench, "value": float(f"{ms:.4g}"), "unit": "ms"}), flush=True)


def bench_cross_entropy(dev, dtype, tag):
    n, c = 65536, 1000
    logits = (torch.randn(n, c, device=dev) * 2.0).to(dtype)
    target = (torch.arange(n, device=dev) * 7919) % c
    report(f"xent_fwd_{tag}_65536x1000",
           median_gpu_ms(lambda: F.cross_entropy(logits, target, label_smoothing=0.1)))
    x = logits.detach().requires_grad_(True)

    def fwd_bwd():
        x.grad = None
        F.cross_entropy(x, target, label_smoothing=0.1).backward()

    report(f"xent_fwdbwd_{tag}_65536x1000", median_gpu_ms(fwd_bwd))


# (name, C, H, K, R, stride, pad): the same layers as bench/gpu_nn.cpp.
LAYERS = [
    ("conv1_7x7s2", 3, 224, 64, 7, 2, 3),
    ("l1_3x3", 64, 56, 64, 3, 1, 1),
    ("l2_3x3s2", 128, 56, 128, 3, 2, 1),
    ("l3_1x1_256to1024", 256, 14, 1024, 1, 1, 0),
    ("l4_3x3", 512, 7, 512, 3, 1, 1),
]


def bench_conv(dev, layer, n, dtype, tag):
    name, c, h, k, r, stride, pad = layer
    p = (h + 2 * pad - r) // stride + 1
    x = torch.randn(n, c, h, h, device=dev).to(dtype)
    w = (torch.randn(k, c, r, r, device=dev) * 0.05).to(dtype)
    dy = torch.randn(n, k, p, p, device=dev).to(dtype)
    base = f"conv_{name}_b{n}_{tag}"
    report(f"{base}_fwd", median_gpu_ms(lambda: F.conv2d(x, w, None, stride, pad)))
    report(f"{base}_bwd", median_gpu_ms(lambda: torch.ops.aten.convolution_backward(
        dy, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, False])))


def main():
    if not torch.cuda.is_available():
        print("torch_gpu_nn: SKIPPED: torch sees no CUDA device", file=sys.stderr)
        return 0
    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    bench_cross_entropy(dev, torch.float32, "f32")
    bench_cross_entropy(dev, torch.bfloat16, "bf16")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    for n in (64, 128):
        for layer in LAYERS:
            bench_conv(dev, layer, n, torch.float32, "tf32")
            bench_conv(dev, layer, n, torch.bfloat16, "bf16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
