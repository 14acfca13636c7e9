#!/usr/bin/python3
"""PyTorch peer of bench_moco: MoCo v2 training steps on Fashion-MNIST with the same model (ResNet-18 layout,
CIFAR stem, width W, 1 channel; query and key encoders, each with MoCo v2's MLP head Linear-ReLU-Linear
512/128), the same recipe (mocov2 on one channel: RandomResizedCrop(28, scale=(0.2, 1)),
ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8 (saturation and hue leave one channel alone), RandomGrayscale p=0.2 (a
no-op on one channel), GaussianBlur(3) p=0.5, flip, Normalize(0.5, 0.5)), the same batch, a queue of K
keys, shuffling BN over 8 shards of the permuted key batch (the single-process form of MoCo's
batch_shuffle_ddp), InfoNCE at tau 0.2, SGD (lr 0.06, momentum 0.9, wd 1e-4) and the key encoder's EMA
(m 0.99, with torch._foreach ops: one fused pass as ours is, rather than MoCo's per-tensor loop). On the CPU:
2 threads, augmentation in 1 DataLoader worker as selfsup uses 1 loader thread.
Prints one JSON line: {"images_per_s": ..., "steps": ..., "last_loss": ...}.
   torch_moco_fmnist.py --width 8 --batch 64 --steps 160 --queue-size 16384 [--device cuda --workers 8]
                        [--data-dir DIR]"""
import argparse
import copy
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


def load_images(data_dir):
    with gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz"), "rb") as f:
        data = f.read()
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).copy())


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images
        self.t = T.Compose([
            T.RandomResizedCrop(28, scale=(0.2, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
            T.RandomHorizontalFlip(),
            T.Normalize((0.5,), (0.5,)),
        ])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255.0
        return self.t(x), self.t(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--queue-size", type=int, default=16384)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(2)
    torch.manual_seed(0)
    feat = 8 * a.width
    q_net = nn.Sequential(WidthResNet(*ARCH[18], num_classes=0, width=a.width, in_channels=1, stem="cifar"),
                          nn.Flatten(1), nn.Linear(feat, 512), nn.ReLU(), nn.Linear(512, 128)).to(dev)
    k_net = copy.deepcopy(q_net)
    for prm in k_net.parameters():
        prm.requires_grad = False
    q_params, k_params = list(q_net.parameters()), list(k_net.parameters())
    queue = F.normalize(torch.randn(a.queue_size, 128, device=dev), dim=1)
    ptr = 0
    opt = torch.optim.SGD(q_params, lr=0.06, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(TwoViews(load_images(a.data_dir)), batch_size=a.batch, shuffle=True,
                                         drop_last=True, num_workers=a.workers, persistent_workers=True,
                                         pin_memory=dev.type == "cuda")
    it = iter(loader)
    warmup = 3
    loss = None
    for step in range(a.steps + warmup):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        xq, xk = next(it)
        xq, xk = xq.to(dev, non_blocking=True), xk.to(dev, non_blocking=True)
        q = F.normalize(q_net(xq), dim=1)
        with torch.no_grad():
            perm = torch.randperm(a.batch, device=dev)
            k = torch.cat([k_net(s) for s in xk[perm].chunk(a.shards)])
            k = F.normalize(k[torch.argsort(perm)], dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(a.batch, dtype=torch.long, device=dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(k_params, 0.99)
            torch._foreach_add_(k_params, q_params, alpha=0.01)
            n = min(a.batch, a.queue_size - ptr)
            queue[ptr:ptr + n] = k[:n]
            if n < a.batch:
                queue[:a.batch - n] = k[n:]
            ptr = (ptr + a.batch) % a.queue_size
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": a.steps * a.batch / dt, "steps": a.steps, "last_loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
