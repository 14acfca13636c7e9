"""Timing shared by the GPU peers: CUDA events around each run, warm-up runs first, the median of the
timed runs (the same method as bench/gpu_harness.h on our side)."""
import torch


def median_gpu_ms(fn, warmup=3, runs=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]
