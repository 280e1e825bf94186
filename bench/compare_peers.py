#!/usr/bin/env python
"""The peer table: tapegrad against every installed peer (micrograd, PyTorch CPU scalar and
tensorized, JAX jit, CasADi, HIPS autograd) on five workloads. A subcommand of
bench/compare.py:

    python bench/compare.py peers --quick                  # < 2 min on 2 cores
    python bench/compare.py peers                          # full run, < 10 min
    python bench/compare.py peers --quick --json /tmp/cmp.json --plot /tmp/cmp.png

Workloads (definitions reused from workloads.py / replay_workloads.py):
    W1  eager build + backward of the 1e5-op W1 graph (8 shared leaves)
    W2  micrograd's demo step (MLP 2-16-16-1, 100 moons, SVM loss + L2): value and
        gradient w.r.t. the 337 parameters; eager scalar graphs, tapegrad traced/replayed
        with the parameters as inputs, tensorized peers
    W3  Rosenbrock gradient at a new point, d = 1000 and 10000 (numpy in and out)
    W4  gradient of the 17-op 3-input function F3 at 1e5 points
    W5  deep chain x <- sin(x)*0.5 + x, depth 1e4 and 1e5: d x_final / d x_0 (a peer that
        cannot do it, e.g. micrograd's recursive backward, gets a "fails: ..." cell)

Every row is checked against the workload's float64 reference before it is timed (max-norm
relative error <= 1e-9; W1: tapegrad.reference, pure Python double, or tapegrad's eager graph;
W2, W3 d=1000: tapegrad's eager graph; W3, W4: the hand-written numpy gradient; W5: a plain
float loop with the chain rule by hand); a disagreement is flagged in the table and the
exit status is 1. Within a workload the rows are timed interleaved round-robin after a
warm-up; each figure is the median (min-max) over repeats, per call and per unit (op,
node, point, element), with the ratio of medians to tapegrad's row of the same mode
(eager: graph built every call; compiled: traced/jitted/vectorized, set-up reported
separately). A missing peer is reported, never fatal.
"""
from __future__ import annotations

import gc
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402
import numpy as np  # noqa: E402
import replay_workloads as R  # noqa: E402
import workloads as W  # noqa: E402

TITLE = "tapegrad vs peers, five workloads"
REL_TOL = 1e-9

SIZES = {
    "full": dict(w1_ops=100_000, rosen=R.ROSEN_DIMS, f3_n=R.F3_N, chain=(10_000, 100_000),
                 budget_s=5.0, min_repeats=3, max_repeats=15, warmup=1, sample_s=0.01),
    "quick": dict(w1_ops=100_000, rosen=R.ROSEN_DIMS, f3_n=R.F3_N, chain=(10_000, 100_000),
                  budget_s=0.8, min_repeats=1, max_repeats=5, warmup=0, sample_s=0.003),
    "smoke": dict(w1_ops=600, rosen=(20, 60), f3_n=500, chain=(100, 2_000),
                  budget_s=0.02, min_repeats=1, max_repeats=2, warmup=0, sample_s=0.0005),
}


# ================================================================ rows


@dataclass
class Row:
    workload: str  # "W1" .. "W5"
    size: str  # "1e5 ops", "d=1000", ...
    system: str  # "tapegrad", "micrograd", "torch", ...
    variant: str  # how it runs
    mode: str  # "eager" | "compiled"
    unit: str  # "op", "node", "point", "element", "step"
    units: int
    status: str = "ok"  # ok | MISMATCH | fails: <error> | skipped
    check: str = ""
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    repeats: int = 0
    calls_per_sample: int = 0
    per_unit_ns: float | None = None
    ratio: float | None = None  # median / tapegrad's median (same workload, size, mode)
    ratio_to: str = ""
    setup_s: float | None = None  # trace / jit compile / symbolic build, once
    setup_what: str = ""
    notes: str = ""
    _case: object = field(default=None, repr=False)


@dataclass
class Spec:
    """A row to be: make() -> (run callable, its result for the check, setup seconds)."""
    system: str
    variant: str
    mode: str
    make: Callable
    fresh: bool = False  # builds a graph per call: gc.collect() untimed before each sample
    notes: str = ""
    setup_what: str = ""
    result: Callable | None = None  # run's return value -> arrays for the check


def fail_text(err: BaseException) -> str:
    msg = str(err).splitlines()[0] if str(err) else ""
    return f"fails: {type(err).__name__}" + (f" ({msg[:80]})" if msg and not isinstance(err, RecursionError) else "")


def parts(x) -> list[np.ndarray]:
    if isinstance(x, (tuple, list)):
        return [np.ravel(np.asarray(a, dtype=np.float64)) for a in x]
    return [np.ravel(np.asarray(x, dtype=np.float64))]


def check_err(got, want) -> float:
    """Worst max-norm relative error over the parts (value, each gradient array); an
    absolute floor of 1e-280 keeps underflowed (denormal vs 0) gradients from counting."""
    g, w = parts(got), parts(want)
    if len(g) != len(w):
        return math.inf
    worst = 0.0
    for a, b in zip(g, w):
        if a.shape != b.shape:
            return math.inf
        if np.array_equal(a, b):
            continue
        diff = float(np.max(np.abs(a - b)))
        if diff != diff:
            return math.inf
        worst = max(worst, diff / max(float(np.max(np.abs(b))), 1e-280))
    return worst


def run_workload(workload: str, size: str, unit: str, units: int, specs: list[Spec],
                 ref, cfg: dict, rows: list[Row], log) -> None:
    """Set up and check every spec, then time the passing ones round-robin."""
    todo: list[Row] = []
    for sp in specs:
        row = Row(workload, size, sp.system, sp.variant, sp.mode, unit, units, notes=sp.notes,
                  setup_what=sp.setup_what)
        rows.append(row)
        try:
            gc.collect()
            fn, setup_s = sp.make()
            row.setup_s = setup_s
            t0 = time.perf_counter()
            out = fn()
            first = time.perf_counter() - t0
            got = sp.result(out) if sp.result else out
            del out
            err = check_err(got, ref)
        except Exception as e:  # a peer that cannot run this is a cell, not a crash
            row.status = fail_text(e)
            row.check = "—"
            log(f"  {workload} {size} / {sp.system} {sp.variant}: {row.status}")
            continue
        finally:
            gc.collect()
        row.check = f"{err:.0e}" if err <= REL_TOL else f"**{err:.1e}**"
        if not err <= REL_TOL:
            row.status = "MISMATCH"
        case = H.Case(fn, fresh=sp.fresh)
        case.calibrate(cfg["sample_s"])  # no-op for fresh (graph-building) rows
        per_sample = max(first, 1e-9) * case.inner
        case.repeats = max(cfg["min_repeats"], min(cfg["max_repeats"], int(cfg["budget_s"] / per_sample)))
        row._case = case
        todo.append(row)
    H.interleave([r._case for r in todo], max((r._case.repeats for r in todo), default=0),
                 cfg["warmup"])
    for row in todo:
        c = row._case
        row.median_s, row.min_s, row.max_s = H.med(c.wall), min(c.wall), max(c.wall)
        row.repeats, row.calls_per_sample = len(c.wall), c.inner
        row.per_unit_ns = row.median_s / units * 1e9
        row._case = None
    # ratios to tapegrad's first row of the same mode (else its first row)
    mine = [r for r in rows if r.workload == workload and r.size == size]
    tgs = [r for r in mine if r.system == "tapegrad" and r.median_s]
    for r in mine:
        if r.median_s is None or not tgs:
            continue
        base = next((t for t in tgs if t.mode == r.mode), tgs[0])
        r.ratio, r.ratio_to = r.median_s / base.median_s, base.variant
    log(f"  {workload} {size}: {len(todo)} rows timed")


def skipped(workload, size, unit, units, system, variant, why, rows) -> None:
    rows.append(Row(workload, size, system, variant, "—", unit, units, status="skipped", check="—",
                    notes=why))


# ================================================================ spec helpers


def ready(fn, setup_s=None):
    return lambda: (fn, setup_s)


def timed_setup(make):
    """make() -> object; returns (object, seconds)."""
    t0 = time.perf_counter()
    obj = make()
    return obj, time.perf_counter() - t0


# ================================================================ W1


def w1_specs(n_terms: int, peers: dict) -> list[Spec]:
    def eager(s: W.System):
        def run():
            root, xs = s.run_w1(n_terms)
            return [s.value(root)] + [s.grad(x) for x in xs]

        def make():
            s.prepare_w1(n_terms)
            return run, None
        return make

    specs = [Spec("tapegrad", "eager tape (C++)", "eager", eager(W.system_tapegrad()), fresh=True)]
    if "micrograd" in peers:
        specs.append(Spec("micrograd", "eager Value graph, GC on", "eager", eager(W.system_micrograd()),
                          fresh=True, notes="sin/exp/tanh added in its closure style; recursion "
                          f"limit raised to {W.micrograd_recursion_limit(n_terms)} for W1"))
    if "torch" in peers:
        specs.append(Spec("torch", "scalar: 0-dim float64 tensors", "eager", eager(W.system_torch()),
                          fresh=True))
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        def f(xs):
            it = iter(xs)
            return W.w1(lambda v: next(it), anp.sin, anp.exp, anp.tanh, n_terms)[0]

        vg = autograd.value_and_grad(f)

        def run():
            v, g = vg(list(W.LEAF_VALUES))
            return [v] + list(g)

        specs.append(Spec("autograd", "value_and_grad over 8 scalar leaves (traced per call)",
                          "eager", ready(run), fresh=True))
    if "casadi" in peers:
        ca = peers["casadi"]

        def run():
            x = ca.SX.sym("x", len(W.LEAF_VALUES))
            it = iter([x[i] for i in range(x.numel())])
            f = W.w1(lambda v: next(it), ca.sin, ca.exp, ca.tanh, n_terms)[0]
            fun = ca.Function("f", [x], [f, ca.gradient(f, x)])
            v, g = fun(list(W.LEAF_VALUES))
            return [float(v)] + g.full().ravel().tolist()

        specs.append(Spec("casadi", "SX build + gradient + Function + eval per call", "eager",
                          ready(run), fresh=True,
                          notes="not CasADi's intended use (symbolic modelling, not an eager tape)"))
    return specs


def w1_reference(n_terms: int) -> tuple[list[float], str]:
    try:
        s = W.system_reference()
        what = "tapegrad.reference (pure Python double)"
    except Exception:
        s = W.system_tapegrad()
        what = "tapegrad eager"
    root, xs = s.run_w1(n_terms)
    return [s.value(root)] + [s.grad(x) for x in xs], what


# ================================================================ W2


def w2_specs(peers: dict, X, y, p) -> list[Spec]:
    specs = []

    def eager_objects(leaf, relu, value, grad, backward):
        loss = R.make_mlp_loss_objects(X, y, np.frompyfunc(relu, 1, 1))

        def run():
            leaves = np.empty(p.size, dtype=object)
            for i, v in enumerate(p.tolist()):  # one by one: numpy must not call __array__
                leaves[i] = leaf(v)
            root = loss(leaves)
            backward(root)
            return [value(root), np.array([grad(v) for v in leaves])]
        return run

    import tapegrad as tg

    t = R.TapegradMLP(X, y, R.mlp_params())
    specs.append(Spec("tapegrad", "traced once, replayed (F.value_and_grad)", "compiled",
                      ready(lambda: t.value_and_grad(p), t.trace_s), setup_what="tg.trace",
                      result=lambda o: [o[0], o[1]]))
    specs.append(Spec("tapegrad", "eager graph per step", "eager",
                      ready(eager_objects(tg.Var, tg.relu, lambda r: r.value, lambda v: v.grad,
                                          lambda r: r.backward())), fresh=True))
    if "micrograd" in peers:
        Value = peers["micrograd"].Value
        specs.append(Spec("micrograd", "eager Value graph per step, GC on", "eager",
                          ready(eager_objects(Value, lambda v: v.relu(), lambda r: r.data,
                                              lambda v: v.grad, lambda r: r.backward())),
                          fresh=True, notes="its own demo's graph (same ops via numpy object arrays)"))
    if "torch" in peers:
        torch = peers["torch"]
        specs.append(Spec("torch", "scalar: 0-dim tensors per parameter", "eager",
                          ready(eager_objects(lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True),
                                              torch.relu, lambda r: r.item(), lambda v: v.grad.item(),
                                              lambda r: r.backward())), fresh=True))
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_step():
            pt = torch.tensor(p, requires_grad=True)
            blocks = R.mlp_blocks(pt)
            h = Xt
            for k in range(0, len(blocks), 2):
                h = h @ blocks[k] + blocks[k + 1]
                if k < len(blocks) - 2:
                    h = torch.relu(h)
            loss = torch.relu(1 - yt * h[:, 0]).mean() + R.MLP_ALPHA * (pt * pt).sum()
            loss.backward()
            return [loss.item(), pt.grad.numpy()]

        specs.append(Spec("torch", "tensorized (matrices)", "compiled", ready(torch_step),
                          notes="vectorized eager torch, no compilation"))
    if "jax" in peers:
        def make():
            j = R.JaxMLP(X, y)
            return (lambda: j.value_and_grad(p)), j.compile_s
        specs.append(Spec("jax", "jit(value_and_grad), tensorized", "compiled", make,
                          setup_what="lower+compile", result=lambda o: [o[0], o[1]]))
    if "casadi" in peers:
        def make():
            c, s = timed_setup(lambda: R.CasadiMLP(X, y))
            return (lambda: c.value_and_grad_buffer(p)), s
        specs.append(Spec("casadi", "SX Function, zero-copy buffer()", "compiled", make,
                          setup_what="SX build + Function", result=lambda o: [o[0], o[1].copy()]))
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        def loss(q):
            blocks = R.mlp_blocks(q)
            h = X
            for k in range(0, len(blocks), 2):
                h = anp.dot(h, blocks[k]) + blocks[k + 1]
                if k < len(blocks) - 2:
                    h = anp.maximum(h, 0.0)
            return anp.mean(anp.maximum(1 - y * h[:, 0], 0.0)) + R.MLP_ALPHA * anp.sum(q * q)

        vg = autograd.value_and_grad(loss)
        specs.append(Spec("autograd", "value_and_grad, tensorized (numpy)", "compiled",
                          ready(lambda: vg(p)), result=lambda o: [o[0], o[1]],
                          notes="traced per call (no compilation)"))
    return specs


# ================================================================ W3


def w3_specs(d: int, peers: dict, x: np.ndarray) -> list[Spec]:
    t = R.TapegradRosen(d, "loop")
    specs = [Spec("tapegrad", "loop-traced, replayed (F.grad)", "compiled",
                  ready(lambda: t.grad(x), t.trace_s), setup_what="tg.trace")]

    def eager(s: W.System):
        def run():
            leaves = [s.leaf(v) for v in x.tolist()]
            root = R.rosen_loop(leaves)
            s.backward(root)
            return np.array([s.grad(v) for v in leaves])
        return run

    specs.append(Spec("tapegrad", "eager graph rebuilt per point", "eager", ready(eager(W.system_tapegrad())),
                      fresh=True))
    if "micrograd" in peers:
        def make():
            need = 10 * d + 10_000
            if sys.getrecursionlimit() < need:
                sys.setrecursionlimit(need)
            return eager(W.system_micrograd()), None
        specs.append(Spec("micrograd", "eager Value graph rebuilt per point", "eager", make, fresh=True,
                          notes=f"recursion limit raised to {10 * d + 10_000}"))
    if "torch" in peers:
        torch = peers["torch"]
        specs.append(Spec("torch", "scalar: 0-dim tensors per element", "eager",
                          ready(eager(W.system_torch())), fresh=True))

        def torch_vec():
            xt = torch.tensor(x, requires_grad=True)
            f = (100 * (xt[1:] - xt[:-1] ** 2) ** 2 + (1 - xt[:-1]) ** 2).sum()
            f.backward()
            return xt.grad.numpy()
        specs.append(Spec("torch", "tensorized", "compiled", ready(torch_vec),
                          notes="vectorized eager torch, no compilation"))
    if "jax" in peers:
        def make():
            j = R.JaxRosen(d)
            return (lambda: j.grad(x)), j.compile_s
        specs.append(Spec("jax", "jit(grad), tensorized", "compiled", make, setup_what="lower+compile"))
    if "casadi" in peers:
        def make():
            c, s = timed_setup(lambda: R.CasadiRosen(d))
            return (lambda: c.grad_buffer(x)), s
        specs.append(Spec("casadi", "SX Function, zero-copy buffer()", "compiled", make,
                          setup_what="SX build + Function", result=lambda o: o.copy()))

        def make_call():
            c, s = timed_setup(lambda: R.CasadiRosen(d))
            return (lambda: c.grad_call(x)), s
        specs.append(Spec("casadi", "SX Function, numpy in/out g(x)", "compiled", make_call,
                          setup_what="SX build + Function",
                          notes="CasADi's ordinary call: converts numpy to DM and back"))
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        g = autograd.grad(lambda v: anp.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2))
        specs.append(Spec("autograd", "grad, tensorized (numpy)", "compiled", ready(lambda: g(x)),
                          notes="traced per call (no compilation)"))
    specs.append(Spec("numpy", "hand-written gradient (no AD)", "compiled", ready(lambda: R.rosen_grad_numpy(x)),
                      notes="floor: what the gradient costs in numpy"))
    return specs


# ================================================================ W4


def w4_specs(n: int, peers: dict, X, Y, Z) -> list[Spec]:
    t = R.TapegradF3()
    specs = [Spec("tapegrad", "traced, replayed batched (F.grad, threads=1)", "compiled",
                  ready(lambda: t.grad(X, Y, Z, 1), t.trace_s), setup_what="tg.trace"),
             Spec("tapegrad", "traced, replayed batched (F.grad, threads=2)", "compiled",
                  ready(lambda: t.grad(X, Y, Z, 2), t.trace_s), setup_what="tg.trace",
                  notes="info: 2 threads")]
    if "torch" in peers:
        torch = peers["torch"]

        def torch_vec():
            a, b, c = (torch.tensor(v, requires_grad=True) for v in (X, Y, Z))
            R.f3_generic(a, b, c, torch).sum().backward()
            return [a.grad.numpy(), b.grad.numpy(), c.grad.numpy()]
        specs.append(Spec("torch", "tensorized (sum trick)", "compiled", ready(torch_vec),
                          notes="vectorized eager torch, no compilation"))
    if "jax" in peers:
        def make():
            j = R.JaxF3(n)
            return (lambda: j.grad(X, Y, Z)), j.compile_s
        specs.append(Spec("jax", "jit(vmap(grad))", "compiled", make, setup_what="lower+compile"))
    if "casadi" in peers:
        def make():
            c, s = timed_setup(lambda: R.CasadiF3(n))
            return (lambda: c.grad_buffer(X, Y, Z)), s
        specs.append(Spec("casadi", "SX map(n), zero-copy buffer()", "compiled", make,
                          setup_what="SX build + map", result=lambda o: [a.copy() for a in o]))
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        g = autograd.grad(lambda xyz: anp.sum(R.f3_generic(*xyz, anp)))
        specs.append(Spec("autograd", "grad of the sum, tensorized (numpy)", "compiled",
                          ready(lambda: g((X, Y, Z))), notes="traced per call (no compilation)"))
    specs.append(Spec("numpy", "hand-written gradient (no AD)", "compiled",
                      ready(lambda: R.f3_grad_numpy(X, Y, Z)), notes="floor"))
    return specs


# ================================================================ W5


CHAIN_X0 = 0.3


def chain_generic(x, depth: int, sin):
    for _ in range(depth):
        x = sin(x) * 0.5 + x
    return x


def chain_reference(depth: int, x0: float = CHAIN_X0) -> list[float]:
    """Plain floats, chain rule by hand: [x_depth, d x_depth / d x_0]."""
    x, d = x0, 1.0
    for _ in range(depth):
        d *= math.cos(x) * 0.5 + 1.0
        x = math.sin(x) * 0.5 + x
    return [x, d]


def w5_specs(depth: int, peers: dict, default_limit: int) -> list[Spec]:
    import tapegrad as tg

    def eager(s: W.System, limit: int | None = None):
        def make():
            if limit is not None:
                sys.setrecursionlimit(limit)

            def run():
                x = s.leaf(CHAIN_X0)
                root = chain_generic(x, depth, s.sin)
                s.backward(root)
                return [s.value(root), s.grad(x)]
            return run, None
        return make

    def make_traced():
        F, s = timed_setup(lambda: tg.trace(lambda x: chain_generic(x, depth, tg.sin), CHAIN_X0))
        return (lambda: F.value_and_grad(CHAIN_X0)), s

    specs = [Spec("tapegrad", "eager tape (C++)", "eager", eager(W.system_tapegrad()), fresh=True),
             Spec("tapegrad", "traced once, replayed (F.value_and_grad)", "compiled", make_traced,
                  setup_what="tg.trace", result=lambda o: [o[0], o[1]])]
    if "micrograd" in peers:
        specs.append(Spec("micrograd", "eager Value graph, default recursion limit", "eager",
                          eager(W.system_micrograd(), default_limit), fresh=True,
                          notes=f"sys.getrecursionlimit() = {default_limit} (Python's default); "
                          "its backward recurses once per level"))
    if "torch" in peers:
        specs.append(Spec("torch", "scalar: 0-dim float64 tensors", "eager", eager(W.system_torch()),
                          fresh=True))
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        vg = autograd.value_and_grad(lambda x: chain_generic(x, depth, anp.sin))
        specs.append(Spec("autograd", "value_and_grad on a scalar (traced per call)", "eager",
                          ready(lambda: vg(CHAIN_X0)), fresh=True, result=lambda o: [o[0], o[1]]))
    if "jax" in peers:
        jax = peers["jax"]

        def make():
            import jax.numpy as jnp

            def f(x):
                return jax.lax.fori_loop(0, depth, lambda i, x: jnp.sin(x) * 0.5 + x, x)

            x0 = np.float64(CHAIN_X0)
            g, s = R._jit_compiled(jax, jax.value_and_grad(f), x0)
            return (lambda: [float(v) for v in g(x0)]), s
        specs.append(Spec("jax", "jit(value_and_grad(fori_loop))", "compiled", make,
                          setup_what="lower+compile", notes="a loop primitive, not an unrolled graph"))
    if "casadi" in peers:
        ca = peers["casadi"]

        def make():
            def build():
                x = ca.SX.sym("x")
                f = chain_generic(x, depth, ca.sin)
                return ca.Function("f", [x], [f, ca.gradient(f, x)])
            fun, s = timed_setup(build)
            buf = R.CasadiBuffer(fun)
            x0 = np.array([CHAIN_X0])
            return (lambda: [float(a[0]) for a in buf(x0)]), s
        specs.append(Spec("casadi", "SX Function, zero-copy buffer()", "compiled", make,
                          setup_what="SX build + gradient + Function"))
    return specs


# ================================================================ output


def cell_time(r: Row) -> str:
    if r.median_s is None:
        return r.status
    return (f"{H.human(r.median_s)} ({H.human(r.min_s)}–{H.human(r.max_s)})"
            + (" **MISMATCH**" if r.status == "MISMATCH" else ""))


def table_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    hdr = ["workload", "system", "variant", "mode", "time per call: median (min–max)", "ns per unit",
           "× tapegrad (same mode)", "repeats", "check (rel err)", "set-up (once)", "notes"]
    out = []
    for r in rows:
        out.append([f"{r.workload} {r.size}", r.system, r.variant, r.mode, cell_time(r),
                    f"{H.fmt(r.per_unit_ns)} /{r.unit}" if r.per_unit_ns is not None else "—",
                    f"{H.fmt(r.ratio)}×" if r.ratio is not None else "—",
                    f"{r.repeats}×{r.calls_per_sample}" if r.repeats else "—", r.check,
                    f"{r.setup_what} {H.human(r.setup_s)}" if r.setup_s is not None else "",
                    r.notes])
    return hdr, out


def plot(rows: list[Row], path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as err:
        return f"--plot: matplotlib is not available ({type(err).__name__}: {err}); no PNG written"
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(f"{r.workload} {r.size}", []).append(r)
    n = len(groups)
    cols = 2
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(14, 3.2 * nrows), squeeze=False)
    for ax, (title, rs) in zip(axes.ravel(), groups.items()):
        labels, vals, colors = [], [], []
        for r in rs:
            labels.append(f"{r.system}: {r.variant}"[:56])
            ok = r.per_unit_ns is not None
            vals.append(r.per_unit_ns if ok else np.nan)
            colors.append("tab:red" if r.status == "MISMATCH" else
                          "tab:blue" if r.system == "tapegrad" else "tab:gray")
        y = np.arange(len(rs))
        ax.barh(y, [v if v == v else 0 for v in vals], color=colors)
        ax.set_xscale("log")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{title} (ns per {rs[0].unit}, log)", fontsize=9)
        for yi, (v, r) in enumerate(zip(vals, rs)):
            if v != v:
                ax.text(0.01, yi, r.status[:40], transform=ax.get_yaxis_transform(), fontsize=7,
                        va="center", color="tab:red")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("tapegrad vs peers (lower is better; blue = tapegrad)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


# ================================================================ main


def measure(mode: str, peer_names, rep: H.Report, log=print) -> dict:
    """Run every workload; returns the JSON-able result (also what the smoke test checks)."""
    cfg = SIZES[mode]
    t_start = time.perf_counter()
    default_limit = sys.getrecursionlimit()
    peers, missing = H.load_peers(H.PEERS, allowed=peer_names)
    frozen_before = gc.get_freeze_count()
    env = rep.environment(peers, missing, H.freeze_imports())
    rows: list[Row] = []
    refs: dict[str, str] = {}

    def section(name, fn):
        rep.section(name, fn)
        log(f"  [{name}: {rep.sections[name]:.1f} s]")

    try:
        # ---- W1
        n_terms = W.w1_terms(cfg["w1_ops"])
        ops = W.w1_op_count(n_terms)
        w1_size = f"{ops} ops"

        def do_w1():
            ref, refs["W1"] = w1_reference(n_terms)
            run_workload("W1", w1_size, "op", ops, w1_specs(n_terms, peers), ref, cfg, rows, log)
            if "jax" in peers:
                skipped("W1", w1_size, "op", ops, "jax", "eager (no jit)",
                        "not JAX's intended use: eager dispatch ~200 µs per scalar op; a jit of a "
                        "1e5-op unrolled scalar graph is not how JAX is used", rows)

        section("W1", do_w1)

        # ---- W2
        def do_w2():
            X, y = R.two_moons()
            p0 = R.mlp_params()
            p = p0 + 0.01 * np.random.default_rng(R.SEED + 7).standard_normal(p0.size)
            v, g = R.eager_value_and_grad(R.make_mlp_loss_tapegrad(X, y), p)
            refs["W2"] = "tapegrad eager graph"
            run_workload("W2", "MLP 2-16-16-1, 100 pts", "step", 1, w2_specs(peers, X, y, p),
                         [v, g], cfg, rows, log)

        section("W2", do_w2)

        # ---- W3
        def do_w3():
            for d in cfg["rosen"]:
                x = R.rosen_point(d)
                ref = R.rosen_grad_numpy(x)
                if d <= 1000:  # the numpy gradient itself against tapegrad's eager graph
                    _, eg = R.eager_value_and_grad(R.rosen_loop, x)
                    e = R.rel_err(ref, eg)
                    if not e <= REL_TOL:
                        log(f"  W3 d={d}: numpy reference disagrees with tapegrad eager ({e:.1e})")
                refs[f"W3 d={d}"] = "numpy hand-written gradient"
                run_workload("W3", f"d={d}", "element", d, w3_specs(d, peers, x), ref, cfg, rows, log)
                sys.setrecursionlimit(default_limit)

        section("W3", do_w3)

        # ---- W4
        def do_w4():
            n = cfg["f3_n"]
            X, Y, Z = R.f3_points(n)
            refs["W4"] = "numpy hand-written gradient"
            run_workload("W4", f"{n} points", "point", n, w4_specs(n, peers, X, Y, Z),
                         list(R.f3_grad_numpy(X, Y, Z)), cfg, rows, log)
            for name, why in (("micrograd", "no log (and no sin/exp/tanh) in micrograd 0.1.0; "
                               "a per-point scalar graph is not a batched workload"),
                              ("torch", "scalar 0-dim tensors per point: not a batched workload "
                               "(see the tensorized row)")):
                if name in peers:
                    skipped("W4", f"{n} points", "point", n, name, "scalar eager", why, rows)

        section("W4", do_w4)

        # ---- W5
        def do_w5():
            for depth in cfg["chain"]:
                sys.setrecursionlimit(default_limit)
                refs[f"W5 depth {depth}"] = "plain float loop, chain rule by hand"
                run_workload("W5", f"depth {depth}", "node", 3 * depth, w5_specs(depth, peers, default_limit),
                             chain_reference(depth), cfg, rows, log)
            sys.setrecursionlimit(default_limit)

        section("W5", do_w5)
    finally:
        sys.setrecursionlimit(default_limit)
        if frozen_before == 0:  # undo our freeze only (nothing was frozen before us)
            gc.unfreeze()

    env["load_average_end"] = list(os.getloadavg())
    bad = [f"{r.workload} {r.size} / {r.system} {r.variant}" for r in rows if r.status == "MISMATCH"]
    return {
        "mode": mode,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "environment": env,
        "references": refs,
        "rel_tol": REL_TOL,
        "rows": [{k: v for k, v in asdict(r).items() if not k.startswith("_")} for r in rows],
        "mismatches": bad,
        "section_seconds": dict(rep.sections),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
    }


def report(res: dict, rep: H.Report) -> None:
    rows = [Row(**r) for r in res["rows"]]
    c = res["config"]
    rep.say(f"- timing: warm-up {c['warmup'] + 1} call(s) (the check run + {c['warmup']}), then "
            f"{c['min_repeats']}–{c['max_repeats']} repeats per row (fewer for slow rows: "
            f"~{c['budget_s']} s budget per row), interleaved round-robin within a workload; "
            f"a sample is the mean over `calls` calls (~{c['sample_s'] * 1e3:g} ms); "
            "`repeats` column = samples × calls per sample")
    rep.say("- check: worst relative error (max-norm) over the parts of each result (the "
            "value, each gradient array) vs the reference, tolerance 1e-9")
    rep.say("- references (float64): " + "; ".join(f"{k}: {v}" for k, v in res["references"].items()))
    rep.say("- W5 units are nodes = 3 × depth (sin, *0.5, +); the gradient d x_final/d x_0 "
            "underflows to 0 beyond depth ~1100 (x → π, factor 0.5 per step): the check "
            "still compares value and gradient")
    rep.say("- mode: eager = the graph is built in every call; compiled = traced / jitted / "
            "vectorized once (set-up reported separately); ratios are to tapegrad's row of "
            "the same mode\n")
    rep.table(*table_rows(rows))
    for m in res["mismatches"]:
        rep.fail(f"disagrees with the reference: {m}")
    fails = [r for r in rows if r.status.startswith("fails")]
    if fails:
        rep.say("\nFailures: " + "; ".join(f"{r.workload} {r.size} / {r.system}: {r.status}" for r in fails))


def add_arguments(ap) -> None:
    ap.add_argument("--plot", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")


def run(mode: str, opts, rep: H.Report) -> None:
    res = measure(mode, opts.peers, rep, log=lambda m: print(m, file=sys.stderr, flush=True))
    rep.data.update(res)
    report(res, rep)
    if getattr(opts, "plot", None):
        rep.say(plot([Row(**r) for r in res["rows"]], opts.plot))


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["peers"] + sys.argv[1:]))
