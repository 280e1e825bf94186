#!/usr/bin/env python
"""Sum of per-point Rosenbrock losses and gradients over 10**7 points in 100 chunks, on a
local 2-process dask cluster, with a progress bar.

    python examples/dask_rosenbrock.py                  # 10**7 points, 100 chunks
    python examples/dask_rosenbrock.py --points 1e5     # a quick run

The points are generated on the workers (nothing large leaves this process), the traced
Function travels to each worker once, and each chunk is one batched C++ replay.
"""
from __future__ import annotations

import argparse

import numpy as np

import tapegrad as tg


def rosenbrock(x):
    return (x[0] - 1) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def main() -> None:
    ap = argparse.ArgumentParser(description="tapegrad.dask: Rosenbrock over many points")
    ap.add_argument("--points", type=float, default=1e7, help="number of points (default 1e7)")
    ap.add_argument("--chunks", type=int, default=100, help="number of chunks (default 100)")
    ap.add_argument("--check", action="store_true", help="compare with one local replay")
    args = ap.parse_args()
    n = int(args.points)

    import dask.array as da
    from distributed import Client, LocalCluster, progress

    F = tg.trace(rosenbrock, np.zeros(2))
    with LocalCluster(n_workers=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        X = da.random.default_rng(0).uniform(-2, 2, size=(n, 2), chunks=(-(-n // args.chunks), 2))
        values, grads = tg.dask.value_and_grad(F, X)  # lazy: nothing has run yet
        total, gsum = client.persist([values.sum(), grads.sum(axis=0)])
        progress(total, gsum)  # the bar; prints to the terminal
        total, gsum = client.compute([total, gsum], sync=True)
        print(f"\n{n} points in {X.numblocks[0]} chunks on {len(client.scheduler_info()['workers'])} "
              f"workers: sum of losses {total:.6e}, sum of gradients {gsum}")
        if args.check:
            x = X.compute()
            v, g = F.value_and_grad(x)
            print(f"local replay: {v.sum():.6e}, {g.sum(axis=0)}")
            assert np.allclose(total, v.sum(), rtol=1e-10) and np.allclose(gsum, g.sum(axis=0), rtol=1e-10)


if __name__ == "__main__":
    main()
