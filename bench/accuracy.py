#!/usr/bin/env python
"""Per op, the max error in ulps against mpmath at 50 digits: `python bench/compare.py accuracy`.

For every op of the table, on its domain (tests/mpmath_oracle.py: wide, the same the
tests draw from), the max over the points of |got - exact| / ulp(exact) of
- the eager value (scalar libm, one Var at a time),
- the batched replay's value (F over a numpy array: glibc libmvec's SIMD kernels),
- the first derivative, eager (backward()) and batched (F.grad), max over the arguments
  that take a gradient; a derivative whose exact value is below the smallest normal
  double counts as exact when within DBL_MIN of it.
Points where an op's oracle exempts the derivative by design (a rule that reuses a
rounded value, e.g. tanh's 1 - out^2 for |x| > 3) are measured apart: the last column.
Where an op's formula cancels by design (lgamma, digamma and polygamma at x < 0 use a
reflection formula; near their zeros there the exact value is far smaller than its terms),
the error is in ulp of the larger term (the oracle's value_scale and grad_scale).
10^4 points per op (--quick 2000, --smoke 50). Fails when an op exceeds its bound.
"""
from __future__ import annotations

import sys
from pathlib import Path

import harness as H
import tapegrad as tg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import mpmath_oracle as O  # noqa: E402

TITLE = "accuracy: max ulp error per op against mpmath (eager and lanes; value and derivative)"
POINTS = {"full": 10_000, "quick": 2_000, "smoke": 50}


def fmt(err: float) -> str:
    return "0" if err == 0 else f"{err:.3g}"


def run(mode: str, opts, rep: H.Report) -> None:
    n = POINTS[mode]
    rep.environment()
    rows = []
    for op, _ in tg.ops():
        o = O.ORACLES.get(op)
        if o is None:
            rep.fail(f"{op}: no mpmath oracle in tests/mpmath_oracle.py")
            continue
        w = O.measure(tg, op, n)
        rep.data[op] = {k: [e, p] for k, (e, p) in w.items()}
        exempt = max(w["exempt_grad"][0], w["exempt_lanes_grad"][0])
        rows.append([op, fmt(w["value"][0]), fmt(w["lanes"][0]), fmt(w["grad"][0]),
                     fmt(w["lanes_grad"][0]), fmt(exempt) if exempt else ""])
        for key, bound in (("value", o.value), ("lanes", o.lanes), ("grad", o.grad),
                           ("lanes_grad", o.grad)):
            if mode != "smoke" and w[key][0] > bound:
                rep.fail(f"{op} {key}: {w[key][0]:.3g} ulp > {bound:g} at {w[key][1]}")
    rep.table(["op", "value", "value (lanes)", "d/dx", "d/dx (lanes)", "d/dx where exempt"],
              rows, title=f"max ulp error over {n:,} points per op")


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["accuracy"] + sys.argv[1:]))
