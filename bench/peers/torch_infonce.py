"""PyTorch peer of bench_infonce_cpu: NT-Xent forward+backward the way SSL libraries write it
(F.normalize, one (2N, 2N) similarity matrix, the diagonal masked, cross_entropy against the twin).
With --moco K: MoCo's InfoNCE as its reference code writes it (l_pos = (q k).sum(1), l_neg = q @ queue.T,
cat, cross_entropy against column 0), the sizes being batches; the queue and k are constant.
Prints one JSON line per size: {"rows": R, "ms": median, "loss": value}."""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def nt_xent(z, tau):
    n2 = z.shape[0]
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(sim, target)


def moco_infonce(q, k, queue, tau):
    qn = F.normalize(q, dim=1)
    l_pos = (qn * k).sum(1, keepdim=True)
    l_neg = qn @ queue.t()
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--tau", type=float, default=0.2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--moco", type=int, default=0)
    p.add_argument("rows", type=int, nargs="+")
    a = p.parse_args()
    torch.set_num_threads(2)
    for rows in a.rows:
        torch.manual_seed(0)
        z = torch.randn(rows, a.dim, requires_grad=True)
        if a.moco:
            k = F.normalize(torch.randn(rows, a.dim), dim=1)
            queue = F.normalize(torch.randn(a.moco, a.dim), dim=1)
        times = []
        loss = None
        for i in range(a.runs + 1):
            z.grad = None
            t0 = time.perf_counter()
            loss = moco_infonce(z, k, queue, a.tau) if a.moco else nt_xent(z, a.tau)
            loss.backward()
            if i > 0:
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(json.dumps({"rows": rows, "ms": times[len(times) // 2], "loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
