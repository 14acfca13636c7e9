"""PyTorch GPU peer of bench_playground_infonce and bench_playground_momentum.

--infonce N...: NT-Xent forward+backward the way SSL libraries write it (F.normalize, one (N, N) similarity
  matrix, the diagonal masked, cross_entropy against the twin (i + N/2) mod N), D = 128, tau = 0.2, in float32
  and bfloat16 (--dtypes f32 bf16 picks; the bf16 variant is the peer of the tensor-core kernels v4/v5:
  bf16 inputs, bf16 (N, N) logits from the bf16 GEMM, cross_entropy upcasting internally).
  One JSON line per (N, dtype): {"what": "infonce", "n", "dtype", "ms", "peak_mib"} or "error".
--ema: torch._foreach_mul_ / _foreach_add_ over ResNet-50's 161 parameter tensors (25.6M floats), m = 0.996:
  {"what": "ema", "ms", "numel"}.
Times are CUDA-event medians after warm-up."""
import argparse
import json
import sys
import os

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import median_gpu_ms  # noqa: E402


def nt_xent(z, tau):
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(sim, target)




def resnet50_param_sizes():
    v = []
    conv = lambda o, i, k: v.append(o * i * k * k)
    def bn(c):
        v.extend([c, c])
    conv(64, 3, 7)
    bn(64)
    cin = 64
    for blocks, w in zip([3, 4, 6, 3], [64, 128, 256, 512]):
        for b in range(blocks):
            conv(w, cin, 1); bn(w); conv(w, w, 3); bn(w); conv(4 * w, w, 1); bn(4 * w)
            if b == 0:
                conv(4 * w, cin, 1); bn(4 * w)
            cin = 4 * w
    v.extend([1000 * 2048, 1000])
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--infonce", type=int, nargs="*", default=None)
    p.add_argument("--ema", action="store_true")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--tau", type=float, default=0.2)
    p.add_argument("--dtypes", nargs="+", choices=["f32", "bf16"], default=["f32", "bf16"])
    a = p.parse_args()
    if not torch.cuda.is_available():
        return
    dev = torch.device("cuda")
    for n in a.infonce or []:
        for name in a.dtypes:
            dtype = torch.float32 if name == "f32" else torch.bfloat16
            try:
                torch.manual_seed(0)
                z = torch.randn(n, a.dim, device=dev, dtype=dtype, requires_grad=True)

                def step():
                    z.grad = None
                    nt_xent(z, a.tau).backward()

                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                ms = median_gpu_ms(step, 2, 7 if n <= 16384 else 3)
                peak = torch.cuda.max_memory_allocated() / 2**20
                print(json.dumps({"what": "infonce", "n": n, "dtype": name, "ms": ms, "peak_mib": peak}), flush=True)
            except torch.OutOfMemoryError:
                print(json.dumps({"what": "infonce", "n": n, "dtype": name, "error": "out of memory"}), flush=True)
            torch.cuda.empty_cache()
    if a.ema:
        sizes = resnet50_param_sizes()
        tgt = [torch.randn(s, device=dev) for s in sizes]
        onl = [torch.randn(s, device=dev) for s in sizes]
        m = 0.996

        def ema():
            torch._foreach_mul_(tgt, m)
            torch._foreach_add_(tgt, onl, alpha=1 - m)

        ms = median_gpu_ms(ema, 3, 21)
        print(json.dumps({"what": "ema", "ms": ms, "numel": sum(sizes)}), flush=True)


if __name__ == "__main__":
    main()
