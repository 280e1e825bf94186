#!/usr/bin/env python
"""scipy.optimize.minimize(method="trust-constr") with tapegrad's sparse Hessian, on the
chained Rosenbrock function of d variables:

    f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2,   i = 0..d-2,

whose Hessian is tridiagonal (3d - 2 nonzeros: d = 10^4 would be 800 MB dense). The same
problem is solved three ways from the same start, and all must reach the same minimum
(x = 1, f = 0):

- tapegrad: gradient F.grad, Hessian F.hessian(x, sparse=True) (a scipy.sparse CSR matrix);
- dense: the same gradient, Hessian F.hessian(x) as a dense array;
- finite differences: the same gradient, hess="2-point" (scipy differences the gradient).

    python examples/rosenbrock_trust_constr.py               # d = 2000, all three
    python examples/rosenbrock_trust_constr.py --dim 500 --check

--check exits 1 unless every run converges to x = 1 (within 1e-6) and the runs agree.
The dense and finite-difference runs are skipped above d = 4000 (memory and time).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.optimize import minimize

import tapegrad as tg

DENSE_MAX = 4000


def rosenbrock(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
               for i in range(len(x) - 1))


def start(d):
    """x = 0.5 everywhere: from the classical (-1.2, 1, -1.2, ...) trust-constr stops at
    the chained function's other local minimum, near x_0 = -1 (f = 3.99)."""
    return np.full(d, 0.5)


def solve(F, x0, hess, label):
    t0 = time.perf_counter()
    res = minimize(F, x0, jac=F.grad, hess=hess, method="trust-constr",
                   options={"gtol": 1e-10, "xtol": 1e-14, "maxiter": 2000})
    return dict(label=label, x=res.x, f=float(res.fun), iterations=res.nit,
                hessians=res.nhev, seconds=time.perf_counter() - t0, status=res.status,
                message=res.message)


def run(d, dense=True):
    x0 = start(d)
    F = tg.trace(rosenbrock, x0)
    runs = [solve(F, x0, lambda x: F.hessian(x, sparse=True), "tapegrad sparse Hessian")]
    if dense and d <= DENSE_MAX:
        runs.append(solve(F, x0, lambda x: F.hessian(x), "tapegrad dense Hessian"))
        runs.append(solve(F, x0, "2-point", "finite differences of the gradient"))
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=2000, help="d (default 2000)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every run reaches x = 1 and the runs agree")
    args = ap.parse_args(argv)
    runs = run(args.dim)
    print(f"chained Rosenbrock, d = {args.dim}, trust-constr, gradient by tapegrad\n")
    print("| Hessian | f at the end | max |x - 1| | iterations | Hessians | seconds |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['label']} | {r['f']:.3g} | {np.max(np.abs(r['x'] - 1)):.2e} | "
              f"{r['iterations']} | {r['hessians']} | {r['seconds']:.2f} |")
    ok = all(np.max(np.abs(r["x"] - 1)) <= 1e-6 for r in runs)
    spread = max(np.max(np.abs(r["x"] - runs[0]["x"])) for r in runs)
    print(f"\nlargest difference between the runs' solutions: {spread:.2e}")
    if args.check:
        print("check:", "ok" if ok else "FAILED")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
