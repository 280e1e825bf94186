#!/usr/bin/env python
"""tapegrad.dask on a local multi-process cluster vs single-process batched replay.

    python bench/bench_dask.py              # throughput at 10**7 points + per-task overhead
    python bench/bench_dask.py --transfer   # also: how the Function reaches the workers
    python bench/bench_dask.py --threads    # also: dask threads vs tapegrad threads
    python bench/bench_dask.py --quick      # 10**6 points, fewer repeats

Throughput: ``sum of per-point values and of gradients`` over N points, on
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` with
``tg.dask.value_and_grad`` (input generated and persisted on the workers first, not
timed), against ``F.value_and_grad(x, threads=1)`` and ``threads=2`` in this process on
the same data (plus the two sums). Two functions: Rosenbrock in 2-D (7 ops, ~10 ns per
point: bound by dask's per-task cost and memory traffic) and a 2-input function of ~60 ops
with exp/sin (compute-bound). Figures are medians over interleaved repeats, wall clock.

Per-task overhead: many tiny chunks (8 points) of a trivial function, total wall time
divided by the number of chunks (each chunk is one replay task and one partial-sum task).

Transfer: 100 tasks using one large Function (a 20000-step chain, ~60k nodes), shipped
(a) embedded in every task, (b) with ``client.scatter(F, broadcast=True)``, (c) as one
``dask.delayed`` key (what tapegrad.dask does), counting unpickles of the Function on
the workers.
"""
from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import time

import numpy as np


def rosen(x):
    return (x[0] - 1) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def heavy(x):
    import tapegrad as tg
    s = 0.0
    for k in range(1, 9):
        s = s + tg.sin(k * x[0] + x[1]) * tg.exp(-0.05 * k * x[1] * x[1]) + x[0] * x[1] / k
    return s


def chain(x):
    import tapegrad as tg
    s = x
    for k in range(20000):
        s = s + tg.sin(s * (1.0 + 1e-5 * k))
    return s


def _count_restores():
    """In a worker: count unpickles of tapegrad Functions from now on."""
    import tapegrad.function as f
    if not hasattr(f, "_bench_restores"):
        original = f._restore

        def counting(state):
            f._bench_restores += 1
            return original(state)
        f._restore = counting
    f._bench_restores = 0


def _restores():
    import tapegrad.function as f
    return f._bench_restores


def _task(block, F):
    from tapegrad.dask import _Shipped
    F = F.load() if isinstance(F, _Shipped) else F
    return F(block, threads=1)


def median(ts):
    return statistics.median(ts)


def throughput(client, tg, da, dask, n, chunks, repeats):
    print(f"\n== throughput: sum of values and gradients over {n:.0e} points")
    print(f"{'function':10} {'chunks':>6} {'local t=1':>10} {'local t=2':>10} {'dask 2w':>10} "
          f"{'dask/t=1':>9} {'dask/t=2':>9}  (points/s; ratios of medians)")
    from distributed import wait
    for name, fn in (("rosen2d", rosen), ("heavy", heavy)):
        F = tg.trace(fn, np.zeros(2))
        for nchunks in chunks:
            X = da.random.random((n, 2), chunks=(n // nchunks, 2)).persist()
            wait(X)
            x = X.compute()
            times = {"t1": [], "t2": [], "dask": []}
            for r in range(repeats + 1):  # the first round warms up
                for key in times:
                    t0 = time.perf_counter()
                    if key == "dask":
                        v, g = tg.dask.value_and_grad(F, X)
                        out = dask.compute(v.sum(), g.sum(axis=0))
                    else:
                        v, g = F.value_and_grad(x, threads=1 if key == "t1" else 2)
                        out = (v.sum(), g.sum(axis=0))
                    if r:
                        times[key].append(time.perf_counter() - t0)
                    del v, g
                    if key == "t1":
                        want = out
                    else:  # the same sums up to summation order
                        assert np.allclose(out[0], want[0], rtol=1e-9)
            med = {k: median(t) for k, t in times.items()}
            pps = {k: n / t for k, t in med.items()}
            print(f"{name:10} {nchunks:>6} {pps['t1']:>10.3g} {pps['t2']:>10.3g} "
                  f"{pps['dask']:>10.3g} {med['t1'] / med['dask']:>9.2f} "
                  f"{med['t2'] / med['dask']:>9.2f}")
            del X, x


def overhead(client, tg, da, dask, repeats):
    print("\n== per-task overhead: tiny chunks (8 points) of x*x, call + sum")
    F = tg.trace(lambda x: x * x, 0.5)
    for nchunks in (100, 1000):
        X = da.ones(8 * nchunks, chunks=8).persist()
        ts = []
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            tg.dask.call(F, X).sum().compute()
            if r:
                ts.append(time.perf_counter() - t0)
        t = median(ts)
        print(f"{nchunks:>5} chunks: {t * 1e3:7.1f} ms total, {t / nchunks * 1e6:6.0f} us per chunk")


def transfer(client, tg, da, dask, repeats):
    F = tg.trace(chain, 0.5)
    size = len(pickle.dumps(F))
    print(f"\n== transfer: 100 tasks, one Function of {F.n_nodes} nodes ({size / 1e6:.1f} MB "
          "pickled), 2 workers")
    from tapegrad.dask import _Shipped
    X = da.linspace(0, 1, 100, chunks=1).persist()
    client.run(_count_restores)
    for option in ("embedded in every task", "client.scatter(broadcast=True)",
                   "dask.delayed key (tapegrad.dask)"):
        ts, counts = [], []
        for r in range(repeats + 1):
            client.run(_count_restores)
            t0 = time.perf_counter()
            if option.startswith("embedded"):
                arg = F
            elif option.startswith("client"):
                arg = client.scatter(F, broadcast=True)
            else:
                carrier = _Shipped.of(F, "bench")
                arg = dask.delayed(carrier, name=f"tapegrad-function-{carrier.digest}",
                                   traverse=False)
            X.map_blocks(_task, arg, dtype=float, meta=np.empty(0)).sum().compute()
            if r:
                ts.append(time.perf_counter() - t0)
                counts.append(sum(client.run(_restores).values()))
            del arg
            # a fresh Function pickle each round: no worker-side cache may help
            client.run(lambda: __import__("tapegrad.dask").dask._cache.clear())
        print(f"{option:34} {median(ts) * 1e3:8.0f} ms   unpickles of F on the workers: "
              f"{statistics.median(counts):.0f}")


def threads_choice(tg, da, dask, n, repeats):
    """One worker process, 2 cores: dask threads vs tapegrad threads vs both."""
    from distributed import Client, LocalCluster, wait
    print(f"\n== threads: one worker process, heavy function, {n:.0e} points in 20 chunks")
    F = tg.trace(heavy, np.zeros(2))
    for dask_threads, tg_threads in ((1, 1), (2, 1), (1, 2), (2, 2)):
        with LocalCluster(n_workers=1, threads_per_worker=dask_threads, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster):
            X = da.random.random((n, 2), chunks=(n // 20, 2)).persist()
            wait(X)
            ts = []
            for r in range(repeats + 1):
                t0 = time.perf_counter()
                v, g = tg.dask.value_and_grad(F, X, threads=tg_threads)
                dask.compute(v.sum(), g.sum(axis=0))
                if r:
                    ts.append(time.perf_counter() - t0)
            print(f"dask threads {dask_threads} x tapegrad threads {tg_threads}: "
                  f"{n / median(ts):.3g} points/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=float, default=1e7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--transfer", action="store_true")
    ap.add_argument("--threads", action="store_true", help="also: dask vs tapegrad threads")
    args = ap.parse_args()
    if args.quick:
        args.points, args.repeats = min(args.points, 1e6), 3
    import dask
    import dask.array as da
    import distributed
    from distributed import Client, LocalCluster

    import tapegrad as tg

    print(f"dask {dask.__version__}, distributed {distributed.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        n = int(args.points)
        throughput(client, tg, da, dask, n, (100, 4), args.repeats)
        overhead(client, tg, da, dask, args.repeats)
        if args.transfer:
            transfer(client, tg, da, dask, max(args.repeats // 2, 2))
    if args.threads:
        threads_choice(tg, da, dask, min(int(args.points), 2 * 10**6), args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes share the cores)")


if __name__ == "__main__":
    main()
