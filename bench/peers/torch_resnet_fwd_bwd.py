#!/usr/bin/python3
"""PyTorch peer of bench_resnet_fwd_bwd: forward + backward of a CIFAR-stem ResNet-18 (train mode, float32),
same batch, input and width, 2 threads. Uses make_model_fixtures.py's WidthResNet (torchvision's blocks).
   torch_resnet_fwd_bwd.py WIDTH CHANNELS SIZE [BATCH] [ITERS]"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from make_model_fixtures import ARCH, WidthResNet  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
width, channels, size = (int(a) for a in sys.argv[1:4])
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 128
iters = int(sys.argv[5]) if len(sys.argv) > 5 else 5
model = WidthResNet(*ARCH[18], num_classes=10, width=width, in_channels=channels, stem="cifar").train()
x = torch.randn(batch, channels, size, size)
w = torch.randn(batch, 10)
times = []
for it in range(iters + 1):
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    (model(x) * w).sum().backward()
    if it:
        times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print("torch %s resnet18 cifar-stem width %d, batch %d x %dx%dx%d, %d threads: forward+backward median %.1f ms "
      "(min %.1f)" % (torch.__version__, width, batch, channels, size, size, torch.get_num_threads(),
                      times[len(times) // 2], times[0]))
