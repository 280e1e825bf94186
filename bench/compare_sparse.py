#!/usr/bin/env python
"""Sparse Jacobians and Hessians against their own targets and their peers:
`python bench/compare.py sparse`.

1. The chained Rosenbrock Hessian, d = 10^5 (tridiagonal, 3d - 2 nonzeros), at one point:
   tapegrad F.hessian(x, sparse=True) against one tapegrad gradient at that point (target:
   at most 10x), against JAX with sparsejac (sparsejac.jacrev(jax.grad(f), pattern) under
   jit; target: tapegrad at most 0.5x it) and against CasADi SX's sparse Hessian
   (ca.hessian, a casadi Function called through its zero-copy buffer; target at most 1x).
   Beside it, the path before the recorded Hessian program (the plan's sweeps, through the
   same F.hessian with recording off), and what the first and second calls cost.
1b. The Hessian of examples/pendulum_swingup.py's Lagrangian (wrt the unknowns) per call:
   recorded program against the sweeps and a gradient of the Lagrangian.
2. The Jacobian of the 1-D Bratu residual (u_{i-1} - 2u_i + u_{i+1}) / h^2 + exp(u_i),
   n = 10^5 (tridiagonal): tapegrad R.jacobian(u, sparse=True) against one residual
   evaluation (target: at most 10x), and the same peers (sparsejac.jacfwd, ca.jacobian).
3. Sparsity detection on programs of about 10^6 ops (the Rosenbrock function and the Bratu
   residual, sized so): F.hessian_sparsity() and F.jacobian_sparsity() against the
   tg.trace that made the Function (target: at most 2x).
4. The optimal-control example (examples/pendulum_swingup.py: trapezoidal collocation,
   IPOPT) end to end, tapegrad's callbacks through cyipopt against CasADi's nlpsol with its
   own IPOPT: iterations, the optimum, and the seconds spent in derivative evaluation.

Each table's cases run interleaved in one process; figures are medians. Every peer's
derivative is checked against tapegrad's on every structural nonzero. Colors, the
coloring mode and the split between pattern, coloring and sweeps come from F.coloring().
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import harness as H
import tapegrad as tg

TITLE = "sparse Jacobians and Hessians: vs a gradient, JAX + sparsejac, CasADi; IPOPT"
TARGET_HESS_VS_GRAD = 10.0
TARGET_VS_JAX = 0.5
TARGET_VS_CASADI = 1.0
TARGET_JAC_VS_RESIDUAL = 10.0
TARGET_PATTERN_VS_TRACE = 2.0
SIZES = {
    "full": dict(d=100_000, n=100_000, pattern_ops=1_000_000, repeats=15, sample_s=0.2,
                 pattern_repeats=5, intervals=400, ocp_repeats=3),
    "quick": dict(d=100_000, n=100_000, pattern_ops=1_000_000, repeats=5, sample_s=0.05,
                  pattern_repeats=3, intervals=400, ocp_repeats=1),
    "smoke": dict(d=200, n=200, pattern_ops=2_000, repeats=1, sample_s=None,
                  pattern_repeats=1, intervals=40, ocp_repeats=1),
}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rosen(x, m=None):
    """Chained Rosenbrock: x a numpy object array of Vars (m None) or a jax array (m =
    jax.numpy)."""
    terms = 100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2
    return sum(terms) if m is None else m.sum(terms)


def bratu(u, m=np):
    """The Bratu residual, with m = numpy (u a Var array), jax.numpy, or _CasadiNumpy."""
    inv_h2 = float(u.shape[0] + 1) ** 2
    return (m.concatenate([m.zeros(1), u[:-1]]) - 2 * u
            + m.concatenate([u[1:], m.zeros(1)])) * inv_h2 + m.exp(u)


def point(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, n)


def csr_from_coo(rows, cols, vals, shape):
    import scipy.sparse as sp

    M = sp.csr_matrix((np.asarray(vals), (np.asarray(rows), np.asarray(cols))), shape=shape)
    M.sum_duplicates()
    return M


def max_rel_diff(A, B) -> float:
    """max |A - B| over the nonzeros, relative to max |B|."""
    scale = max(float(abs(B).max()), 1e-300)
    return float(abs(A - B).max()) / scale


# ---------------------------------------------------------------- peers


def jax_sparse(jax, fn, pattern, forward: bool):
    """jit(sparsejac.jac{fwd,rev}(fn, pattern)) and a call returning a scipy CSR."""
    import sparsejac
    from jax.experimental import sparse as jsparse

    jnp = jax.numpy
    P = pattern.tocoo()
    bcoo = jsparse.BCOO((jnp.ones(P.nnz), jnp.stack([jnp.asarray(P.row), jnp.asarray(P.col)], 1)),
                        shape=P.shape)
    jac = jax.jit((sparsejac.jacfwd if forward else sparsejac.jacrev)(fn, bcoo))

    def call(x):
        return jac(x).data.block_until_ready()

    def as_csr(x):
        out = jac(x)
        idx = np.asarray(out.indices)
        return csr_from_coo(idx[:, 0], idx[:, 1], out.data, P.shape)

    return call, as_csr


def casadi_sparse(ca, make, n: int):
    """A casadi Function of one SX vector, evaluated through its zero-copy buffer, and a
    call returning a scipy CSR."""
    import scipy.sparse as sp

    x = ca.SX.sym("x", n)
    fn = ca.Function("d", [x], [make(ca, x)])
    fb, evaluate = fn.buffer()
    out = np.zeros(fn.nnz_out(0))
    fb.set_res(0, memoryview(out))

    def call(xv):
        fb.set_arg(0, memoryview(xv))
        evaluate()
        return out

    def as_csr(xv):
        M = fn(xv)
        s = M.sparsity()
        return sp.csc_matrix((np.asarray(M.nonzeros()), s.row(), s.colind()),
                             shape=(s.size1(), s.size2())).tocsr()

    return call, as_csr


# ---------------------------------------------------------------- tables


def coloring_row(name: str, c, eval_s: float) -> list:
    return [name, c.mode, c.n_colors, f"{c.pattern.shape[0]:,} x {c.pattern.shape[1]:,}",
            f"{c.pattern.nnz:,}", H.human(c.pattern_seconds), H.human(c.coloring_seconds),
            H.human(eval_s)]


def sweeps_hessian(fn, *examples, wrt=None):
    """fn traced again, its sparse Hessian kept on the plan's sweeps (hessian_block: the
    path before the recorded Hessian program) by turning recording off for its first call:
    the same Python path as F.hessian(..., sparse=True) otherwise."""
    from tapegrad import sparse

    G = tg.trace(fn, *examples)
    saved, sparse.RECORD_OPS_PER_OP = sparse.RECORD_OPS_PER_OP, 0
    try:
        for _ in range(2):  # the second evaluation would record
            G.hessian(*examples, sparse=True, wrt=wrt)
    finally:
        sparse.RECORD_OPS_PER_OP = saved
    assert G.coloring("hessian", wrt=wrt).recorded_ops == 0
    return lambda *args: G.hessian(*args, sparse=True, wrt=wrt)


def derivative_table(rep, cfg, peers, *, label, title, fn, n, kind, base_name, base,
                     tg_name, tg_call, jax_fn, casadi_make, targets, extra=None):
    """One sparse derivative at one point, tapegrad against its baseline and the peers.
    extra(F, x): more tapegrad cases, {name: call}."""
    x = point(n, 1)
    t0 = time.perf_counter()
    F = tg.trace(fn, np.zeros(n))
    t1 = time.perf_counter()
    want = tg_call(F, x)  # the first call colors (cached on F)
    t2 = time.perf_counter()
    tg_call(F, x)  # a sparse Hessian's second call records its program
    t3 = time.perf_counter()
    first_call, second_call = t2 - t1, t3 - t2
    setup = {tg_name: t3 - t0}
    c = F.coloring(kind)
    cases = {base_name: H.Case(lambda: base(F, x)), tg_name: H.Case(lambda: tg_call(F, x))}
    for name, call in (extra(F, x) if extra else {}).items():
        err = max_rel_diff(call(x), want)
        if err != 0.0:
            rep.fail(f"{label}: {name} differs from {tg_name} by {err:.1e} (relative)")
        cases[name] = H.Case(lambda call=call: call(x))
    jax = peers.get("jax")
    if jax is not None:
        try:
            t0 = time.perf_counter()
            call, as_csr = jax_sparse(jax, jax_fn(jax.numpy), c.pattern, kind == "jacobian")
            err = max_rel_diff(as_csr(x), want)
            setup["JAX + sparsejac (jit)"] = time.perf_counter() - t0
            if err > 1e-12:
                rep.fail(f"{label}: JAX + sparsejac differs from tapegrad by {err:.1e} (relative)")
            cases["JAX + sparsejac (jit)"] = H.Case(lambda: call(x))
        except ImportError as err:
            rep.note(f"{label}: JAX + sparsejac not run: {err}")
    ca = peers.get("casadi")
    if ca is not None:
        t0 = time.perf_counter()
        call, as_csr = casadi_sparse(ca, casadi_make, n)
        setup["CasADi SX (buffer)"] = time.perf_counter() - t0
        err = max_rel_diff(as_csr(x), want)
        if err > 1e-12:
            rep.fail(f"{label}: CasADi differs from tapegrad by {err:.1e} (relative)")
        cases["CasADi SX (buffer)"] = H.Case(lambda: call(x))
    H.run_cases(cases, cfg["repeats"], 1, cfg["sample_s"], on_error=rep.note)
    med = {k: H.med(v.wall) for k, v in cases.items()}
    t = med[tg_name]
    rows = []
    for name, m in med.items():
        rows.append([name, H.human(m), f"{H.fmt(m / med[base_name])}x",
                     f"{H.fmt(t / m)}x", H.human(setup[name]) if name in setup else "—"])
    rep.table(["system", "median", f"vs {base_name}", "tapegrad / this",
               "setup (trace + first call, jit, build)"], rows, title=title)
    rep.table(["derivative", "mode", "colors", "shape", "nonzeros", "pattern", "coloring",
               "evaluation (sweeps)"], [coloring_row(tg_name, c, t)])
    recorded = getattr(c, "recorded_ops", 0)
    rep.say(f"- {tg_name}: first call {H.human(first_call)} (pattern, coloring, plan, "
            f"sweeps), second {H.human(second_call)}"
            + (f" (sweeps, recording the Hessian program of {recorded:,} ops)" if recorded
               else "") + f"; the function's program has {F.n_ops:,} ops")
    verdicts = []
    for peer, target in targets:
        key = next((k for k in med if k.startswith(peer)), None)
        if peer == base_name:
            r = t / med[base_name]
            verdicts.append([f"{tg_name} / {base_name}", f"{H.fmt(r)}x", f"<= {target}x",
                             H.met(r <= target)])
        elif key is not None:
            r = t / med[key]
            verdicts.append([f"tapegrad / {key}", f"{H.fmt(r)}x",
                             f"<= {target}x" if target else "reported",
                             H.met(r <= target) if target else "—"])
    rep.table(["target", "measured", "target", "met"], verdicts)
    rep.data[label] = dict(median_s=med, setup_s=setup, colors=c.n_colors, mode=c.mode,
                           nnz=c.pattern.nnz, pattern_s=c.pattern_seconds,
                           coloring_s=c.coloring_seconds, first_call_s=first_call,
                           second_call_s=second_call, recorded_ops=recorded)


def rosenbrock_hessian(rep, cfg, peers):
    d = cfg["d"]
    derivative_table(
        rep, cfg, peers, label="rosenbrock_hessian",
        title=f"1. chained Rosenbrock Hessian, d = {d:,}, one point",
        fn=rosen, n=d, kind="hessian", base_name="tapegrad F.grad(x)",
        base=lambda F, x: F.grad(x), tg_name="tapegrad F.hessian(x, sparse=True)",
        tg_call=lambda F, x: F.hessian(x, sparse=True),
        jax_fn=lambda jnp: __import__("jax").grad(lambda x: rosen(x, jnp)),
        casadi_make=lambda ca, x: ca.hessian(ca.sum1(100 * (x[1:] - x[:-1] ** 2) ** 2
                                                     + (1 - x[:-1]) ** 2), x)[0],
        targets=[("tapegrad F.grad(x)", TARGET_HESS_VS_GRAD), ("JAX", TARGET_VS_JAX),
                 ("CasADi", TARGET_VS_CASADI)],
        extra=lambda F, x: {"tapegrad plan's sweeps (before recording)":
                            sweeps_hessian(rosen, np.zeros(d))})


def pendulum_lagrangian_hessian(rep, cfg):
    """The Hessian IPOPT asks of examples/pendulum_swingup.py's Lagrangian, per call:
    recorded program against the plan's sweeps and a gradient of the Lagrangian."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import pendulum_swingup as P
    finally:
        sys.path.remove(str(EXAMPLES))
    N = cfg["intervals"]

    def lagrangian(z, lam, sigma):
        return sigma * P.cost(z, N) + sum(lam * np.array(P.defects(z, N, tg.sin)))
    z = P.start(N) + 0.1 * point(3 * (N + 1), 2)
    lam = point(2 * N, 3)
    L = tg.trace(lagrangian, P.start(N), np.zeros(2 * N), 1.0)
    t0 = time.perf_counter()
    want = L.hessian(z, lam, 1.0, sparse=True, wrt=0)
    t1 = time.perf_counter()
    L.hessian(z, lam, 1.0, sparse=True, wrt=0)  # records
    first, second = t1 - t0, time.perf_counter() - t1
    sweeps = sweeps_hessian(lagrangian, P.start(N), np.zeros(2 * N), 1.0, wrt=0)
    err = max_rel_diff(sweeps(z, lam, 1.0), want)
    if err != 0.0:
        rep.fail(f"pendulum Lagrangian: the sweeps differ from the recorded program by {err:.1e}")
    c = L.coloring("hessian", wrt=0)
    cases = {"tapegrad L.grad(z, lam, 1)": H.Case(lambda: L.grad(z, lam, 1.0)),
             "tapegrad L.hessian(sparse=True, wrt=0)":
                 H.Case(lambda: L.hessian(z, lam, 1.0, sparse=True, wrt=0)),
             "tapegrad plan's sweeps (before recording)": H.Case(lambda: sweeps(z, lam, 1.0))}
    H.run_cases(cases, cfg["repeats"], 1, cfg["sample_s"], on_error=rep.note)
    med = {k: H.med(v.wall) for k, v in cases.items()}
    base = med["tapegrad L.grad(z, lam, 1)"]
    rep.table(["call", "median", "vs the gradient"],
              [[k, H.human(m), f"{H.fmt(m / base)}x"] for k, m in med.items()],
              title=f"1b. pendulum swing-up Lagrangian Hessian, N = {N} ({3 * (N + 1)} unknowns, "
                    f"{c.n_colors} colors, {c.pattern.nnz:,} nonzeros), one point")
    rep.say(f"- first call {H.human(first)} (pattern, coloring, plan, sweeps), second "
            f"{H.human(second)} (sweeps, recording {c.recorded_ops:,} ops; the Lagrangian's "
            f"program has {L.n_ops:,})")
    rep.data["pendulum_lagrangian_hessian"] = dict(median_s=med, first_call_s=first,
                                                   second_call_s=second,
                                                   recorded_ops=c.recorded_ops,
                                                   colors=c.n_colors, nnz=c.pattern.nnz)


def bratu_jacobian(rep, cfg, peers):
    n = cfg["n"]
    derivative_table(
        rep, cfg, peers, label="bratu_jacobian",
        title=f"2. Bratu residual Jacobian, n = {n:,}, one point",
        fn=bratu, n=n, kind="jacobian", base_name="tapegrad R(u)", base=lambda F, x: F(x),
        tg_name="tapegrad R.jacobian(u, sparse=True)",
        tg_call=lambda F, x: F.jacobian(x, sparse=True),
        jax_fn=lambda jnp: lambda u: bratu(u, jnp),
        casadi_make=lambda ca, x: ca.jacobian(bratu(x, _CasadiNumpy(ca)), x),
        targets=[("tapegrad R(u)", TARGET_JAC_VS_RESIDUAL), ("JAX", None), ("CasADi", None)])


class _CasadiNumpy:
    """The three functions bratu() needs, on casadi SX column vectors."""

    def __init__(self, ca):
        self.ca = ca

    def concatenate(self, parts):
        return self.ca.vertcat(*parts)

    def zeros(self, k):
        return self.ca.SX.zeros(k)

    def exp(self, u):
        return self.ca.exp(u)


def sparsity_detection(rep, cfg):
    """Pattern time against trace time on programs of about cfg['pattern_ops'] ops."""
    ops = cfg["pattern_ops"]
    d = ops // 8 + 1  # the Rosenbrock program: 8 ops per term
    n = ops // 6  # the Bratu residual: 6 ops per point
    rows, data = [], {}
    for name, fn, size, kind in (("Rosenbrock", rosen, d, "hessian"),
                                 ("Bratu residual", bratu, n, "jacobian")):
        x0 = np.zeros(size)
        F = tg.trace(fn, x0)
        method = F.hessian_sparsity if kind == "hessian" else F.jacobian_sparsity
        cases = {"tg.trace": H.Case(lambda fn=fn, x0=x0: tg.trace(fn, x0), fresh=True),
                 f"F.{kind}_sparsity()": H.Case(method, fresh=True)}
        if kind == "hessian":
            cases["F.jacobian_sparsity()"] = H.Case(F.jacobian_sparsity, fresh=True)
        H.run_cases(cases, cfg["pattern_repeats"], 0)
        trace_s = H.med(cases["tg.trace"].wall)
        for label, case in cases.items():
            t = H.med(case.wall)
            ratio = t / trace_s
            check = "—" if label == "tg.trace" else H.met(ratio <= TARGET_PATTERN_VS_TRACE)
            rows.append([label, f"{name}, {F.n_ops:,} ops", H.human(t), f"{H.fmt(ratio)}x",
                         check])
            data[f"{name} {label}"] = t
    rep.data["sparsity_detection"] = data
    rep.table(["call", "program", "median", "vs its trace", f"<= {TARGET_PATTERN_VS_TRACE}x"],
              rows, title="3. sparsity detection against tracing")


def optimal_control(rep, cfg, peers):
    """examples/pendulum_swingup.py: both solvers, derivative seconds and the optimum."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import pendulum_swingup as P
    finally:
        sys.path.remove(str(EXAMPLES))
    N = cfg["intervals"]
    runs: dict[str, list] = {}
    try:
        import cyipopt  # noqa: F401
    except ImportError as err:
        rep.note(f"optimal control: tapegrad + IPOPT not run: cyipopt is not installed ({err}); "
                 "pip install '.[ipopt]'")
    else:
        runs["tapegrad + IPOPT (cyipopt)"] = [P.solve_tapegrad(N) for _ in range(cfg["ocp_repeats"])]
    if "casadi" in peers:
        runs["CasADi SX + IPOPT (nlpsol)"] = [P.solve_casadi(N) for _ in range(cfg["ocp_repeats"])]
    rows = []
    for name, rs in runs.items():
        r = rs[0]
        deriv = H.med([x["derivative_s"] for x in rs])
        calls = {k: v[0] for k, v in r["per_callback"].items()}
        rows.append([name, "converged" if r["converged"] else f"FAILED ({r['status']})",
                     f"{r['cost']:.10g}", r["iterations"], H.human(deriv),
                     H.human(H.med([x["solve_s"] for x in rs])),
                     H.human(H.med([x["setup_s"] for x in rs])),
                     f"{calls.get('gradient', 0)} / {calls.get('jacobian', 0)} / "
                     f"{calls.get('hessian', 0)}"])
        if not r["converged"]:
            rep.fail(f"optimal control: {name} did not converge ({r['status']})")
    if not rows:
        rows.append(["tapegrad + IPOPT (cyipopt)", "not run (see notes)", "—", "—", "—", "—",
                     "—", "—"])
    rep.table(["system", "status", "cost", "iterations", "derivative evaluation", "solve",
               "setup (trace / build)", "calls grad / jac / hess"], rows,
              title=f"4. pendulum swing-up, trapezoidal collocation, N = {N} "
                    f"({3 * (N + 1)} unknowns, {2 * N} constraints)")
    if len(runs) == 2:
        a, b = (rs[0] for rs in runs.values())
        dcost, dz = P.compare(a, b)
        if dcost > 1e-6 or dz > 1e-4:
            rep.fail(f"optimal control: the optima differ (cost {dcost:.1e}, solution {dz:.1e})")
        ta, tb = (H.med([x["derivative_s"] for x in rs]) for rs in runs.values())
        rep.table(["comparison", "measured"],
                  [["derivative seconds, tapegrad / CasADi", f"{H.fmt(ta / tb)}x"],
                   ["derivative seconds per iteration, tapegrad / CasADi",
                    f"{H.fmt((ta / max(a['iterations'], 1)) / (tb / max(b['iterations'], 1)))}x"],
                   ["cost, relative difference", f"{dcost:.1e}"],
                   ["solutions, max abs difference", f"{dz:.1e}"]])
    rep.data["optimal_control"] = {name: [{k: v for k, v in r.items() if k != "z"} for r in rs]
                                   for name, rs in runs.items()}


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = SIZES[mode]
    peers, missing = H.load_peers(opts.peers, allowed=("jax", "casadi"))
    rep.environment(peers, missing)
    versions = {k: H.pkg(k) for k in ("sparsejac", "cyipopt", "scipy")}
    rep.say("- also: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in versions.items()))
    rep.section("rosenbrock hessian", rosenbrock_hessian, rep, cfg, peers)
    rep.section("pendulum lagrangian hessian", pendulum_lagrangian_hessian, rep, cfg)
    rep.section("bratu jacobian", bratu_jacobian, rep, cfg, peers)
    rep.section("sparsity detection", sparsity_detection, rep, cfg)
    rep.section("optimal control", optimal_control, rep, cfg, peers)


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["sparse"] + sys.argv[1:]))
