#!/usr/bin/env python
"""What finding a program's loops (``F.structure()``, C++ ``find_runs``) costs against
the trace that made the program, on programs of 10^5 to 10^6 ops:

    python bench/structure_cost.py            # ~1 min on 2 noisy cores
    python bench/structure_cost.py --quick    # the smaller sizes only
    python bench/structure_cost.py --forward  # one-point forward: interpreter vs by runs
    python bench/structure_cost.py --calls    # F(x), F.grad: before and after the loops

Per workload: ops in the program, the trace time (``tg.trace``, median of 3), the
detection time (``_core.find_runs`` alone: first call, then the median of 5), their
ratio, and what was found (runs, coverage, largest run). With ``--forward``: the
one-point forward sweep over every slot, by the interpreter (``program::forward``) and
run by run (``forward_by_runs``, every run looped over), and as ``program::forward``
runs once the program has looked for its loops (the elementwise runs only, when they
pay), best of 7 x 20 calls each, after a check that all three agree bit for bit.
"""
from __future__ import annotations

import random
import statistics
import sys
import time

import numpy as np

import tapegrad as tg
from tapegrad import _core


def rosenbrock_numpy(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    return s


def euler(x, k):
    for _ in range(100_000):
        x = x + 0.01 * (-k * x + tg.sin(x))
    return x


def random_dag(n_ops, seed=0):
    rng = random.Random(seed)
    unary = (tg.sin, tg.tanh, tg.exp, abs)
    binary = (lambda u, v: u + v, lambda u, v: u - v, lambda u, v: u * v, tg.maximum)

    def f(x):
        vals = list(x)
        for _ in range(n_ops):
            u = vals[rng.randrange(len(vals))]
            if rng.random() < 0.3:
                vals.append(rng.choice(unary)(u))
            else:
                vals.append(rng.choice(binary)(u, vals[rng.randrange(len(vals))]))
        return vals[-1] + sum(vals[len(x):-1])  # every op reaches the output

    return f


def mlp_loss():
    from tapegrad.nn.demo import make_model, moons_loss
    model = make_model()
    X, y = tg.nn.make_moons(100)

    def trace():
        return tg.nn.compile_loss(model, moons_loss, X, y).function

    return trace


def workloads(quick):
    yield "Rosenbrock numpy, d=1e4", lambda: tg.trace(rosenbrock_numpy, np.zeros(10_000))
    yield "Rosenbrock loop, d=1e4", lambda: tg.trace(rosenbrock_loop, np.zeros(10_000))
    yield "MLP loss (demo, 100 points)", mlp_loss()
    yield "random DAG, 1e5 ops", lambda: tg.trace(random_dag(100_000), np.linspace(0.1, 1, 8))
    if quick:
        return
    yield "Rosenbrock numpy, d=1e5", lambda: tg.trace(rosenbrock_numpy, np.zeros(100_000))
    yield "Rosenbrock loop, d=1e5", lambda: tg.trace(rosenbrock_loop, np.zeros(100_000))
    yield "Euler, 1e5 steps", lambda: tg.trace(euler, 1.0, 0.5)


def main(quick):
    print(f"{'workload':30} {'ops':>8} {'trace':>9} {'find 1st':>9} {'find':>9} {'ratio':>7}"
          "  found")
    for name, make in workloads(quick):
        traces, F = [], None
        for _ in range(3):
            t0 = time.perf_counter()
            F = make()
            traces.append(time.perf_counter() - t0)
        program = F._programs[0]
        t0 = time.perf_counter()
        _core.find_runs(program)
        first = time.perf_counter() - t0
        finds = []
        for _ in range(5):
            t0 = time.perf_counter()
            _core.find_runs(program)
            finds.append(time.perf_counter() - t0)
        trace, find = statistics.median(traces), statistics.median(finds)
        S = F.structure()
        big = max(S.runs, key=lambda r: r.size, default=None)
        what = (f"{len(S)} runs, {100 * S.covered:.2f}% covered" +
                (f", largest {big.count} x {big.period}" if big else ""))
        print(f"{name:30} {F.n_ops:8d} {1e3 * trace:7.1f}ms {1e3 * first:7.2f}ms "
              f"{1e3 * find:7.2f}ms {find / trace:7.4f}  {what}")


def forward(quick):
    print(f"{'workload':30} {'ops':>8} {'interpreter':>12} {'by runs':>10} {'speed-up':>9} "
          f"{'forward()':>10} {'speed-up':>9}  loops")
    for name, make in workloads(quick):
        F = make()
        program = F._programs[0]
        x = np.random.default_rng(0).uniform(0.1, 0.9, program.n_inputs)
        loops = _core._point_loops(program)
        want, _ = _core._forward_slots(program, x, "interpreter")
        for how in ("by_runs", "program"):
            got, _ = _core._forward_slots(program, x, how)
            same = (want.view(np.uint64) == got.view(np.uint64)) | (np.isnan(want) & np.isnan(got))
            assert same.all(), (name, how)
        best = {}
        for how in ("interpreter", "by_runs", "program") * 7:
            t = _core._forward_slots(program, x, how, 20)[1]
            best[how] = min(best.get(how, t), t)
        t0 = best["interpreter"]
        looped = sum(c for _, c, _ in loops)
        print(f"{name:30} {F.n_ops:8d} {1e6 * t0:10.1f}us {1e6 * best['by_runs']:8.1f}us "
              f"{t0 / best['by_runs']:8.2f}x {1e6 * best['program']:8.1f}us "
              f"{t0 / best['program']:8.2f}x  {len(loops)} runs, {looped} slots, "
              f"{sum(r for _, _, r in loops)} in reverse too")


def calls(quick):
    """F(x) and F.grad(x) end to end: calls 2-31 (the interpreter) against calls 40-200
    (the elementwise loops, where the program has them), medians, one process."""
    import pickle
    print(f"{'workload':30} {'call':>6} {'calls 2-31':>11} {'calls 40+':>10} {'ratio':>6}")
    for name, make in workloads(quick):
        F = make()
        rng = np.random.default_rng(0)
        args = [rng.uniform(0.1, 0.9, shape) if shape else 0.5 for shape in F._arg_shapes]
        for what in ("F(x)", "grad"):
            G = pickle.loads(pickle.dumps(F))  # a copy that has not looked for loops
            call = G if what == "F(x)" else G.grad
            ts = []
            for _ in range(200):
                t0 = time.perf_counter()
                call(*args)
                ts.append(time.perf_counter() - t0)
            before, after = statistics.median(ts[1:31]), statistics.median(ts[39:])
            print(f"{name:30} {what:>6} {1e6 * before:9.1f}us {1e6 * after:8.1f}us "
                  f"{after / before:6.2f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    run = forward if "--forward" in args else calls if "--calls" in args else main
    run("--quick" in args)
