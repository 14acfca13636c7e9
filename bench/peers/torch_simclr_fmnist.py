#!/usr/bin/python3
"""PyTorch peer of bench_simclr: SimCLR training steps on Fashion-MNIST with the same model (ResNet-18
layout, CIFAR stem, width W, 1 channel; projection Linear-BN-ReLU-Linear 512/128), the same recipe (the
grayscale recipe: RandomResizedCrop(28, scale=(crop_min, 1)), flip, ColorJitter(0.4, 0.4) p=0.8,
GaussianBlur(3) p=0.5, Normalize(0.5, 0.5)), the same batch, NT-Xent (tau 0.2) and SGD (momentum 0.9,
wd 5e-4). On the CPU: 2 threads, augmentation in 1 DataLoader worker as selfsup uses 1 loader thread. On
cuda: the model on the GPU (eager), augmentation in --workers DataLoader workers (pinned memory), the usual
PyTorch setup. --precision bf16: forward and loss under torch.autocast(device, dtype=torch.bfloat16) (the
optimizer and the weights stay float32).
Prints one JSON line: {"images_per_s": ..., "steps": ..., "last_loss": ...}.
   torch_simclr_fmnist.py --width 8 --batch 256 --steps 40 [--crop-min 0.3] [--device cuda --workers 8]
                          [--data-dir DIR] [--precision fp32|bf16]"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from make_model_fixtures import ARCH, WidthResNet  # noqa: E402


def load_images(data_dir="/usr/share/datasets/fashion-mnist"):
    with gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz"), "rb") as f:
        data = f.read()
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).copy())


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images, crop_min):
        self.images = images
        self.t = T.Compose([
            T.RandomResizedCrop(28, scale=(crop_min, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
            T.Normalize((0.5,), (0.5,)),
        ])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255.0
        return self.t(x), self.t(x)


def nt_xent(z, tau):
    z = F.normalize(z, dim=1)
    n2 = z.shape[0]
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = (torch.arange(n2, device=z.device) + n2 // 2) % n2
    return F.cross_entropy(sim, target)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--crop-min", type=float, default=0.3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(2)
    torch.manual_seed(0)
    encoder = WidthResNet(*ARCH[18], num_classes=0, width=a.width, in_channels=1, stem="cifar")
    feat = 8 * a.width
    head = nn.Sequential(nn.Linear(feat, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    encoder.to(dev)
    head.to(dev)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(TwoViews(load_images(a.data_dir), a.crop_min), batch_size=a.batch,
                                         shuffle=True, drop_last=True, num_workers=a.workers,
                                         persistent_workers=True, pin_memory=dev.type == "cuda")
    it = iter(loader)
    warmup = 3
    loss = None
    for step in range(a.steps + warmup):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        v1, v2 = next(it)
        v1, v2 = v1.to(dev, non_blocking=True), v2.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            z = head(encoder(torch.cat([v1, v2])).flatten(1))
        loss = nt_xent(z.float(), 0.2)  # outside autocast: the loss in float32, as selfsup's InfoNCE
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": a.steps * a.batch / dt, "steps": a.steps, "last_loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
