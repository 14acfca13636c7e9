#!/usr/bin/env python3
"""PyTorch peer of bench/augment_gpu.cpp: torchvision's SimCLR recipe on the GPU, per sample, same JSON keys.

The work: 4096 source images of 256x256x3 uint8 (on the GPU) -> 2 views of 224x224 each with
RandomResizedCrop(224, scale 0.08-1, antialias off), then float in [0, 1], RandomHorizontalFlip,
ColorJitter(0.8, 0.8, 0.8, 0.2) with p=0.8, RandomGrayscale(0.2), GaussianBlur(23, sigma 0.1-2) with p=0.5,
Normalize(ImageNet), written into a preallocated (4096, 3, 224, 224) batch per view (float32, or bfloat16 by
casting the float32 result at the copy). torchvision.transforms.v2 when available (torchvision >= 0.16),
else the v1 transforms (same classes, ConvertImageDtype for the dtype step).

Per-sample torchvision is slow (a few kernel launches per op per image), so each configuration runs for at
most --seconds (default 8; about 25 s in all with start-up) over as many images as fit and EXTRAPOLATES to the 4096-image batch; the output
says how many images were timed. Prints {"bench", "value", "unit"} lines: augment_simclr_{f32,bf16}_
ms_per_view_batch and _images_per_s (images with both views per second), as bench_augment_gpu does.
"""
import argparse
import json
import sys
import time

import torch

try:  # torchvision >= 0.16
    from torchvision.transforms import v2 as T

    API = "v2"
except ImportError:  # torchvision 0.14/0.15: v1 transforms on tensors
    from torchvision import transforms as T

    API = "v1"

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def simclr_pipeline(size):
    ksize = int(0.1 * size)
    ksize += 1 - ksize % 2  # odd, as selfsup's blur_kernel_size (22 -> 23 at 224)
    to_float = T.ToDtype(torch.float32, scale=True) if API == "v2" else T.ConvertImageDtype(torch.float32)
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=False),
        to_float,
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(ksize, sigma=(0.1, 2.0))], p=0.5),
        T.Normalize(MEAN, STD),
    ])


def report(bench, value, unit):
    print(json.dumps({"bench": bench, "value": round(value, 3), "unit": unit}), flush=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="images in the (extrapolated) batch")
    ap.add_argument("--src", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget per configuration")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a syntax check")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch_augment_gpu: SKIPPED: torch sees no CUDA device", file=sys.stderr)
        return 0
    dev = torch.device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator(device="cpu").manual_seed(0)
    # uint8 (n, 3, src, src) on the device (CHW: torchvision's layout): 256 random images generated on the
    # host, repeated (the content does not change the per-sample cost; generating 805 MB would take seconds).
    src = torch.empty((args.n, 3, args.src, args.src), dtype=torch.uint8, device=dev)
    chunk = torch.randint(0, 256, (min(256, args.n), 3, args.src, args.src), dtype=torch.uint8, generator=gen).to(dev)
    for i in range(0, args.n, chunk.shape[0]):
        j = min(args.n, i + chunk.shape[0])
        src[i:j].copy_(chunk[: j - i])
    pipe = simclr_pipeline(args.size)
    import torchvision

    print(f"# torch {torch.__version__}, torchvision {torchvision.__version__} ({API} transforms), {dev}, "
          f"per-sample SimCLR pipeline, 2 views", flush=True)
    for tag, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        out = [torch.empty((args.n, 3, args.size, args.size), dtype=dtype, device=dev) for _ in range(2)]
        for i in range(min(8, args.n)):  # warm-up: kernels, caching allocator
            for v in range(2):
                out[v][i].copy_(pipe(src[i]))
        sync(dev)
        t0 = time.perf_counter()
        count = 0
        while count < args.n:
            for v in range(2):
                out[v][count].copy_(pipe(src[count]))
            count += 1
            if count % 16 == 0:
                sync(dev)
                if time.perf_counter() - t0 > args.seconds:
                    break
        sync(dev)
        sec = time.perf_counter() - t0
        imgs_per_s = count / sec
        note = "" if count == args.n else f", EXTRAPOLATED to {args.n}"
        print(f"# {tag}: {count} images x 2 views in {sec:.2f} s{note}", flush=True)
        report(f"augment_simclr_{tag}_ms_per_view_batch", args.n / imgs_per_s * 1e3 / 2, "ms")
        report(f"augment_simclr_{tag}_images_per_s", imgs_per_s, "img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
