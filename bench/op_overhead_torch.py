"""PyTorch's own per-op overhead, the reference for bench/op_overhead.ts.

Usage: python3 bench/op_overhead_torch.py N THREADS NUMEL  -> one JSON line {op: ns_per_op, ...}
Same ops, sizes and loop shape as the TypeScript side (result replaces the input, old one freed).
"""
import json, os, sys, time
import torch

n, threads, numel = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.set_grad_enabled(True)  # same mode as the TS side (grad mode on, no tensor requires grad)


def bench(step, a0):
    for _ in range(2):  # warm-up, then best of 3 timed runs
        a = a0
        for _ in range(n // 10):
            a = step(a)
    best = float('inf')
    for _ in range(3):
        a = a0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            a = step(a)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


a0 = torch.zeros(numel)
b = torch.full((numel,), 1e-7)
flat = torch.zeros(numel)
res = {
    'add': bench(lambda a: a.add(b), a0),
    'mul': bench(lambda a: a.mul(b), a0),
    'relu': bench(lambda a: a.relu(), a0),
    'sum': bench(lambda a: flat.sum(), a0),
    'reshape': bench(lambda a: flat.reshape([4, numel // 4]), a0),
    'noop': bench(lambda a: a, a0),
}
info = {
    'torch': torch.__version__,
    'threads': torch.get_num_threads(),
    'interop_threads': torch.get_num_interop_threads(),
    'GOMP_SPINCOUNT': os.environ.get('GOMP_SPINCOUNT'),
    'OPENBLAS_THREAD_TIMEOUT': os.environ.get('OPENBLAS_THREAD_TIMEOUT'),
}
print(json.dumps({'ns': res, 'info': info}))
