#!/usr/bin/env python
"""The second-order targets, side by side in one run. A subcommand of bench/compare.py:

  (a) HVP vs gradient at one point, Rosenbrock d = 1000 (a traced tg.Function):
      F.hvp(x, v) / F.grad(x)                                   target <= 5x
  (b) dense Hessian, n = 10 inputs, at 10^4 points, batched:
      tapegrad F.hessian(X), X of shape (10000, 10), vs JAX jax.jit(jax.vmap(jax.hessian(f)))
      in float64, compile excluded                              target: tapegrad faster
      (with --torch: torch.func.vmap(torch.func.hessian(f)) for reference, eager)

    python bench/compare.py transforms           # full run
    python bench/compare.py transforms --quick   # fewer, shorter repeats
    python bench/compare.py transforms --torch   # plus the (slow) torch.func row

Every system's results are checked before any timing: (a) against the closed-form
Rosenbrock gradient and Hessian-vector product, (b) against the closed-form Rosenbrock
Hessian at every point (1e-10 relative, max-norm) and with np.allclose between systems.
The function of (b) is one Python definition (Rosenbrock d = 10, a sum over a loop)
run by every system. Cases of a workload are measured interleaved round-robin after
warm-ups; each figure is the median (min-max) over repeats of the mean over an inner
loop; ratios are of medians from the same run. A missing peer is reported, not fatal.
Exit status 1 if a check disagrees.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import tapegrad as tg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Case, human, med, paired  # noqa: E402
from replay_workloads import rel_err  # noqa: E402
from replay_workloads import rosen_grad_numpy as rosen_grad  # noqa: E402

TITLE = "tapegrad second-order transforms vs peers"
HVP_D = 1000
HVP_TARGET = 5.0  # hvp time / grad time
HESS_N = 10
HESS_TARGET = 1.0  # tapegrad time / JAX time
REL_TOL = 1e-10
SEED = 20240611
SIZES = {  # Hessian points; samples per case, warm-ups, seconds per sample
    "full": dict(hvp_d=HVP_D, hess_points=10_000, repeats=15, warmup=2, sample_s=0.2),
    "quick": dict(hvp_d=HVP_D, hess_points=10_000, repeats=5, warmup=1, sample_s=0.05),
    "smoke": dict(hvp_d=50, hess_points=200, repeats=2, warmup=0, sample_s=0.001),
}


# ---------------------------------------------------------------- the functions


def rosen(x):
    """Rosenbrock, written once for every system: numpy object arrays of tapegrad Vars,
    JAX tracers and torch tensors all index and add the same way."""
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def rosen_hessians(X: np.ndarray) -> np.ndarray:
    """Closed-form Hessians at each row of X: shape (N, d, d)."""
    X = np.atleast_2d(X)
    N, d = X.shape
    H = np.zeros((N, d, d))
    i = np.arange(d - 1)
    H[:, i, i] += 1200 * X[:, :-1] ** 2 - 400 * X[:, 1:] + 2
    H[:, i + 1, i + 1] += 200
    H[:, i, i + 1] = H[:, i + 1, i] = -400 * X[:, :-1]
    return H


def rosen_hvp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Closed-form H v (tridiagonal), without forming H."""
    hv = np.zeros_like(x)
    hv[:-1] += (1200 * x[:-1] ** 2 - 400 * x[1:] + 2) * v[:-1] - 400 * x[:-1] * v[1:]
    hv[1:] += 200 * v[1:] - 400 * x[:-1] * v[:-1]
    return hv


def check(rep: harness.Report, name: str, got, want) -> None:
    err = rel_err(got, want)
    ok = err <= REL_TOL
    rep.say(f"- check {name}: max-norm relative error {err:.2e} "
            f"({'ok' if ok else f'**DISAGREES** > {REL_TOL}'})")
    if not ok:
        rep.fail(f"{name}: relative error {err:.3e}")


def case_rows(cases: dict[str, Case], per_point: int | None = None) -> tuple[list[str], list[list]]:
    header = ["case", "median", "min – max", "inner x repeats"]
    rows = [[name, human(med(c.wall)), f"{human(min(c.wall))} – {human(max(c.wall))}",
             f"{c.inner} x {len(c.wall)}"] for name, c in cases.items()]
    if per_point:
        header.append("per point")
        for row, c in zip(rows, cases.values()):
            row.append(human(med(c.wall) / per_point))
    return header, rows


# ---------------------------------------------------------------- (a) HVP vs gradient


def hvp_vs_grad(cfg: dict, rep: harness.Report) -> dict:
    d = cfg["hvp_d"]
    rep.say(f"\n## (a) HVP vs gradient at one point: Rosenbrock d = {d} (traced tg.Function)\n")
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1.5, 1.5, d)
    v = rng.normal(size=d)
    F = tg.trace(rosen, np.zeros(d))
    x1 = x[None, :]
    rep.say(f"- `{F!r}`")
    check(rep, "F.grad(x) vs closed form", F.grad(x), rosen_grad(x))
    check(rep, "F.grad(x[None]) vs closed form", F.grad(x1, threads=1)[0], rosen_grad(x))
    check(rep, "F.hvp(x, v) vs closed-form H v", F.hvp(x, v), rosen_hvp(x, v))
    check(rep, "F.hvp(x, v, threads=1) vs closed-form H v", F.hvp(x, v, threads=1), rosen_hvp(x, v))
    cases = {
        "F.grad(x)": Case(lambda: F.grad(x)),
        "F.hvp(x, v)": Case(lambda: F.hvp(x, v)),
        "F.hvp(x, v, threads=1)": Case(lambda: F.hvp(x, v, threads=1)),
        "F.value_and_grad(x)": Case(lambda: F.value_and_grad(x)),
        # info: the batch machinery (which F.hvp uses) on one point, first order
        "F.grad(x[None]) (batch path, 1 point, info)": Case(lambda: F.grad(x1, threads=1)),
        "F.jvp(x, v, threads=1) (info)": Case(lambda: F.jvp(x, v, threads=1)),
    }
    harness.run_cases(cases, cfg["repeats"], cfg["warmup"], cfg["sample_s"], on_error=rep.note)
    rep.say("")
    rep.table(*case_rows(cases))
    g, h = cases["F.grad(x)"], cases["F.hvp(x, v)"]
    ratio = med(h.wall) / med(g.wall)
    ratio1 = med(cases["F.hvp(x, v, threads=1)"].wall) / med(g.wall)
    ok = ratio <= HVP_TARGET
    batch1 = med(cases["F.grad(x[None]) (batch path, 1 point, info)"].wall)
    rep.say(f"\n- info: F.hvp(x, v) / F.grad(x[None]) (both via the batch path) = "
            f"{med(h.wall) / batch1:.2f}x; F.grad(x[None]) / F.grad(x) = {batch1 / med(g.wall):.2f}x")
    rep.say(f"- HVP / gradient = {ratio:.2f}x (per-repeat {paired(h.wall, g.wall)}), threads=1: "
            f"{ratio1:.2f}x; target <= {HVP_TARGET:g}x: {harness.met(ok)}")
    return {"hvp/grad": ratio, "hvp/grad threads=1": ratio1, "hvp_ok": ok}


# ---------------------------------------------------------------- (b) batched dense Hessian


def jax_hessian_case(jax, X: np.ndarray):
    """(callable returning a numpy (N, n, n) array, compile seconds)."""
    import jax.numpy as jnp

    hess = jax.jit(jax.vmap(jax.hessian(rosen)))
    XJ = jnp.asarray(X)
    assert XJ.dtype == jnp.float64, "jax_enable_x64 did not take effect"
    t0 = time.perf_counter()
    hess(XJ).block_until_ready()  # compile (and one run): excluded from the timings
    compile_s = time.perf_counter() - t0

    def run():
        return hess(XJ).block_until_ready()

    return run, compile_s


def torch_hessian_case(torch, X: np.ndarray):
    from torch import func as tf

    XT = torch.tensor(X, dtype=torch.float64)
    hess = tf.vmap(tf.hessian(rosen))

    def run():
        return hess(XT)

    return run


def batched_hessian(cfg: dict, peers: dict, with_torch: bool, rep: harness.Report) -> dict:
    points = cfg["hess_points"]
    rep.say(f"\n## (b) dense Hessian, n = {HESS_N}, at {points} points, batched "
            f"(Rosenbrock d = {HESS_N})\n")
    X = np.random.default_rng(SEED + 1).uniform(-1.5, 1.5, (points, HESS_N))
    want = rosen_hessians(X)
    F = tg.trace(rosen, np.zeros(HESS_N))
    rep.say(f"- `{F!r}`")
    H = F.hessian(X)
    assert H.shape == (points, HESS_N, HESS_N), H.shape
    check(rep, "tapegrad F.hessian(X) vs closed form", H, want)
    check(rep, "tapegrad F.hessian(X, threads=1) vs closed form", F.hessian(X, threads=1), want)
    cases = {"tapegrad F.hessian(X)": Case(lambda: F.hessian(X)),
             "tapegrad F.hessian(X, threads=1)": Case(lambda: F.hessian(X, threads=1))}
    jax_name = "JAX jit(vmap(hessian)) (x64)"
    if "jax" in peers:
        jax_run, compile_s = jax_hessian_case(peers["jax"], X)
        HJ = np.asarray(jax_run())
        check(rep, "JAX vs closed form", HJ, want)
        same = np.allclose(H, HJ, rtol=1e-12, atol=1e-9)
        rep.say(f"- np.allclose(tapegrad, JAX, rtol=1e-12, atol=1e-9): {same}")
        if not same:
            rep.fail("tapegrad and JAX Hessians disagree")
        rep.say(f"- JAX compile (excluded from timings): {human(compile_s)}")
        cases[jax_name] = Case(jax_run)
    else:
        rep.say("- JAX rows skipped: JAX is not loaded")
    torch_name = "torch.func vmap(hessian) (eager, reference only)"
    if not with_torch:
        rep.say("- torch row skipped (seconds per call): add --torch to include it")
    elif "torch" not in peers:
        rep.say("- torch row skipped: torch is not loaded")
    else:
        torch_run = torch_hessian_case(peers["torch"], X)
        check(rep, "torch vs closed form", torch_run().numpy(), want)
        cases[torch_name] = Case(torch_run)
    harness.run_cases(cases, cfg["repeats"], cfg["warmup"], cfg["sample_s"], on_error=rep.note)
    rep.say("")
    rep.table(*case_rows(cases, per_point=points))
    out: dict = {}
    tg_case = cases["tapegrad F.hessian(X)"]
    if jax_name in cases:
        j = cases[jax_name]
        ratio = med(tg_case.wall) / med(j.wall)
        ratio1 = med(cases["tapegrad F.hessian(X, threads=1)"].wall) / med(j.wall)
        ok = ratio < HESS_TARGET
        rep.say(f"\n- tapegrad / JAX = {ratio:.2f}x (per-repeat {paired(tg_case.wall, j.wall)}), "
                f"threads=1: {ratio1:.2f}x; target < {HESS_TARGET:g}x (tapegrad faster): "
                f"{harness.met(ok)}")
        out.update({"tg/jax": ratio, "tg/jax threads=1": ratio1, "hess_ok": ok})
    if torch_name in cases:
        rep.say(f"- tapegrad / torch.func = {med(tg_case.wall) / med(cases[torch_name].wall):.3f}x")
    return out


def add_arguments(ap) -> None:
    ap.add_argument("--torch", action="store_true",
                    help="also time torch.func.vmap(torch.func.hessian) in (b) (slow: seconds "
                         "per call)")


def run(mode: str, opts, rep: harness.Report) -> None:
    cfg = SIZES[mode]
    with_torch = getattr(opts, "torch", False)
    peers, missing = harness.load_peers(("jax", "torch") if with_torch else ("jax",),
                                        allowed=opts.peers)
    rep.environment(peers, missing)
    a = hvp_vs_grad(cfg, rep)
    b = batched_hessian(cfg, peers, with_torch, rep)
    summary = [[f"(a) HVP / gradient, Rosenbrock d={cfg['hvp_d']}",
                f"{a['hvp/grad']:.2f}x (threads=1 {a['hvp/grad threads=1']:.2f}x)",
                f"<= {HVP_TARGET:g}x", harness.met(a["hvp_ok"])]]
    if "tg/jax" in b:
        summary.append([f"(b) dense Hessian n={HESS_N} at {cfg['hess_points']} points, tapegrad / "
                        "JAX jit(vmap(hessian))",
                        f"{b['tg/jax']:.2f}x (threads=1 {b['tg/jax threads=1']:.2f}x)",
                        f"< {HESS_TARGET:g}x", harness.met(b["hess_ok"])])
    else:
        summary.append(["(b) dense Hessian vs JAX", "JAX not loaded: no ratio", f"< {HESS_TARGET:g}x",
                        "not measured"])
    rep.table(["target", "measured", "target", "met"], summary, title="Summary")
    rep.data.update({"hvp": a, "hessian": b})


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["transforms"] + sys.argv[1:]))
