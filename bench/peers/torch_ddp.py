#!/usr/bin/python3
"""PyTorch peer of bench_dist: DistributedDataParallel (gloo backend, CPU) on the same SimCLR step: ResNet-18
layout, CIFAR stem, 1 channel, width W, projection Linear-BN-ReLU-Linear 512/128, NT-Xent (tau 0.2) over
the global batch (embeddings all-gathered with a backward that all-reduces the gradient and keeps this
rank's rows, the usual GatherLayer), SGD (lr 0.3, momentum 0.9, wd 5e-4), fixed random (B/N, 1, 28, 28)
views per rank. DDP's default 25 MB buckets. BatchNorm is per rank: torch.nn.SyncBatchNorm refuses CPU
tensors ("SyncBatchNorm expected input tensor to be on GPU"), so compare with bench_dist --no-sync-bn.
Ranks are processes started with torch.multiprocessing (gloo over the loopback interface).
Prints one JSON line: {"images_per_s": ..., "ranks": ..., "threads": ...}.
   torch_ddp.py --ranks 2 --threads 1 --width 8 --batch 64 --steps 20"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from make_model_fixtures import ARCH, WidthResNet  # noqa: E402


class GatherLayer(torch.autograd.Function):
    """all_gather whose backward gives each rank the gradient of its rows summed over every rank's loss."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous()
        dist.all_reduce(g)
        n = g.shape[0] // dist.get_world_size()
        return g[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def global_nt_xent(z, tau, n):
    """z (2n, D) = [view 1; view 2] of this rank's n samples, scored against the whole global batch."""
    z = F.normalize(z, dim=1)
    world, rank = dist.get_world_size(), dist.get_rank()
    cols = GatherLayer.apply(z).reshape(world, 2, n, -1).transpose(0, 1).reshape(2 * world * n, -1)
    b = world * n
    g = torch.arange(n) + rank * n
    self_idx = torch.cat([g, g + b])
    pos = torch.cat([g + b, g])
    sim = z @ cols.t() / tau
    sim[torch.arange(2 * n), self_idx] = float("-inf")
    return F.cross_entropy(sim, pos)


def worker(rank, a, init_file, out_file):
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=a.ranks)
    torch.manual_seed(0)
    encoder = WidthResNet(*ARCH[18], num_classes=0, width=a.width, in_channels=1, stem="cifar")
    head = nn.Sequential(nn.Linear(8 * a.width, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    model = nn.parallel.DistributedDataParallel(nn.Sequential(encoder, nn.Flatten(1), head))
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    n = a.batch // a.ranks
    gen = torch.Generator().manual_seed(1234 + rank)
    views = [torch.randn(2 * n, 1, 28, 28, generator=gen) for _ in range(4)]

    def step(s):
        loss = global_nt_xent(model(views[s % 4]), 0.2, n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up
    dist.barrier()
    t0 = time.perf_counter()
    for s in range(a.steps):
        step(s + 1)
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump({"images_per_s": a.steps * a.batch / dt, "ranks": a.ranks, "threads": a.threads}, f)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        init_file, out_file = os.path.join(d, "init"), os.path.join(d, "out.json")
        mp.spawn(worker, args=(a, init_file, out_file), nprocs=a.ranks, join=True)
        with open(out_file) as f:
            print(json.dumps(json.load(f)), flush=True)


if __name__ == "__main__":
    main()
