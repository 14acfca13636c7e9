#!/usr/bin/python3
"""PyTorch peer of bench_e2e_step: one training step (forward, backward, SGD with momentum and weight decay)
of a CIFAR-stem ResNet-18 (torchvision's blocks at a given width, tests/fixtures/make_model_fixtures.py's
WidthResNet) with a 10-class fc and cross-entropy, float32, 2 threads. --precision bf16: each case in float32
and then under torch.autocast("cpu", dtype=torch.bfloat16) (forward and loss; backward follows the forward's
dtypes, the optimizer and the weights stay float32).
   torch_e2e_step.py --runs N [--precision fp32|bf16] WIDTH:CHANNELS:SIZE:BATCH ...
Prints one JSON line per case and precision: {"key": "...", "precision": "fp32"|"bf16", "ms": median}."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from make_model_fixtures import ARCH, WidthResNet  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("cases", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(2)
    precisions = ["fp32", "bf16"] if a.precision == "bf16" else ["fp32"]
    for key, precision in [(k, pr) for k in a.cases for pr in precisions]:
        width, channels, size, batch = (int(v) for v in key.split(":"))
        torch.manual_seed(0)
        model = WidthResNet(*ARCH[18], num_classes=10, width=width, in_channels=channels, stem="cifar").train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x = torch.randn(batch, channels, size, size)
        y = torch.randint(0, 10, (batch,))
        times = []
        for i in range(a.runs + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(json.dumps({"key": key, "precision": precision, "ms": times[len(times) // 2]}), flush=True)


if __name__ == "__main__":
    main()
