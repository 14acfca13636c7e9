#!/usr/bin/env python3
"""torchvision peer of bench/augment_cpu.cpp: the SimCLR recipe (2 views per image) on the CPU.

bench_augment_cpu runs this script with the same shapes and image count. Two worker processes with one torch
thread each stand in for DataLoader(num_workers=2); each applies the torchvision pipeline per image, the way a
Dataset's __getitem__ does. Two input paths are timed, and the C++ side compares with the faster one:
  pil     PIL images: RRC, flip, ColorJitter p=0.8, RandomGrayscale p=0.2, GaussianBlur p=0.5, ToTensor,
          Normalize (the torchvision SimCLR recipe as usually written)
  tensor  float tensors (ConvertImageDtype first), then the same transforms on tensors
Results travel back as a count only (no tensor transfer), which favours the peer.
Prints one JSON line per shape: {"key": "HxWxC", "pil_img_s": ..., "tensor_img_s": ...}.
Usage: torchvision_augment.py --n N --shapes 28x28x1,32x32x3,96x96x3
"""
import argparse
import json
import multiprocessing as mp
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image


def blur_kernel(size):
    k = int(0.1 * size)
    if k % 2 == 0:
        k += 1
    return max(k, 3)


def simclr(size, channels, tensor_input):
    mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if channels == 3 else ([0.5], [0.5])
    ops = [T.ConvertImageDtype(torch.float)] if tensor_input else []
    ops += [
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))], p=0.5),
    ]
    if not tensor_input:
        ops.append(T.ToTensor())
    ops.append(T.Normalize(mean, std))
    return T.Compose(ops)


STATE = {}


def init_worker(h, w, c, n, mode):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    if mode == "pil":
        STATE["images"] = [Image.fromarray(a[:, :, 0] if c == 1 else a) for a in arr]
    else:
        STATE["images"] = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arr]
    STATE["t"] = simclr(h, c, mode == "tensor")


def work(chunk):
    t = STATE["t"]
    images = STATE["images"]
    for i in range(*chunk):
        t(images[i])
        t(images[i])  # two views
    return chunk[1] - chunk[0]


def measure(h, w, c, n, mode, workers=2):
    with mp.get_context("fork").Pool(workers, initializer=init_worker, initargs=(h, w, c, n, mode)) as pool:
        pool.map(work, [(0, min(n, 16))] * workers)  # warm-up in every worker
        half = n // workers
        chunks = [(k * half, (k + 1) * half) for k in range(workers)]
        best = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            done = sum(pool.map(work, chunks))
            best = max(best, done / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--shapes", default="28x28x1,32x32x3,96x96x3")
    args = ap.parse_args()
    for key in args.shapes.split(","):
        h, w, c = (int(v) for v in key.split("x"))
        res = {"key": key}
        for mode in ("pil", "tensor"):
            res[mode + "_img_s"] = measure(h, w, c, args.n, mode)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
