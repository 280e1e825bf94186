#!/usr/bin/env python
"""scipy.optimize.least_squares with tapegrad's sparse Jacobian, on the Broyden tridiagonal
system (Moré, Garbow and Hillstrom's problem 30, in the form scipy's least_squares
tutorial uses for its large sparse example):

    r_i = (3 - x_i) x_i + 1 - x_{i-1} - 2 x_{i+1},   i = 0..n-1 (x_{-1} = x_n = 0),

whose Jacobian is tridiagonal. It is solved twice from x = -1:

- tapegrad: jac=lambda x: R.jacobian(x, sparse=True) (a scipy.sparse CSR matrix);
- finite differences: jac="2-point" with jac_sparsity (scipy groups the columns: 3
  residual evaluations per Jacobian).

Both must reach a zero residual and the same solution. (A sparse Jacobian makes
least_squares solve its trust-region steps with LSMR, unpreconditioned: well-conditioned
problems like this one converge in a few steps; a discretised boundary-value problem,
whose Jacobian's condition number grows like n^2, needs many LSMR iterations per step.)

    python examples/broyden_least_squares.py                 # n = 10^4
    python examples/broyden_least_squares.py --n 2000 --check
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares

import tapegrad as tg


def residual(x):
    """The n residuals of a vector x."""
    n = len(x)
    return np.array([(3 - x[i]) * x[i] + 1 - (x[i - 1] if i else 0.0)
                     - 2 * (x[i + 1] if i < n - 1 else 0.0) for i in range(n)])


def solve(n):
    x0 = -np.ones(n)
    R = tg.trace(residual, x0)
    runs = []
    t0 = time.perf_counter()
    res = least_squares(R, x0, jac=lambda x: R.jacobian(x, sparse=True))
    runs.append(dict(label="tapegrad sparse Jacobian", res=res, seconds=time.perf_counter() - t0))
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n))
    t0 = time.perf_counter()
    res = least_squares(R, x0, jac="2-point", jac_sparsity=pattern)
    runs.append(dict(label="2-point differences, jac_sparsity", res=res,
                     seconds=time.perf_counter() - t0))
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="unknowns (default 10^4)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless both runs reach a zero residual and agree")
    args = ap.parse_args(argv)
    runs = solve(args.n)
    print(f"Broyden tridiagonal, n = {args.n}, least_squares (trf, lsmr)\n")
    print("| Jacobian | max residual | residual evals | Jacobians | seconds |")
    print("|---|---|---|---|---|")
    for r in runs:
        res = r["res"]
        print(f"| {r['label']} | {np.max(np.abs(res.fun)):.2e} | {res.nfev} | {res.njev} | "
              f"{r['seconds']:.2f} |")
    diff = float(np.max(np.abs(runs[0]["res"].x - runs[1]["res"].x)))
    print(f"\nthe two solutions differ by {diff:.2e} (max abs)")
    ok = diff <= 1e-8 and all(np.max(np.abs(r["res"].fun)) <= 1e-10 for r in runs)
    if args.check:
        print("check:", "ok" if ok else "FAILED")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
