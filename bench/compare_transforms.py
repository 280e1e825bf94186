#!/usr/bin/env python
"""Side-by-side numbers for issue 5's second-order targets, in ONE run:

  (a) HVP vs gradient at one point, Rosenbrock d = 1000 (a traced tg.Function):
      F.hvp(x, v) / F.grad(x)                                   target <= 5x
  (b) dense Hessian, n = 10 inputs, at 10^4 points, batched:
      tapegrad F.hessian(X), X of shape (10000, 10), vs JAX jax.jit(jax.vmap(jax.hessian(f)))
      in float64, compile excluded                              target: tapegrad faster
      (with --torch: torch.func.vmap(torch.func.hessian(f)) for reference, eager)

    python bench/compare_transforms.py           # full run
    python bench/compare_transforms.py --quick   # fewer, shorter repeats
    python bench/compare_transforms.py --torch   # plus the (slow) torch.func row

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

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import tapegrad as tg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_replay import Case, human, med, paired, pkg, run_cases  # noqa: E402  (one timer)
from replay_workloads import rosen_grad_numpy as rosen_grad  # noqa: E402

HVP_D = 1000
HVP_TARGET = 5.0  # hvp time / grad time
HESS_N, HESS_POINTS = 10, 10_000
HESS_TARGET = 1.0  # tapegrad time / JAX time
REL_TOL = 1e-10
SEED = 20240611

FAILURES: list[str] = []
NOTES: list[str] = []


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


def rel_err(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(1e-300, float(np.max(np.abs(want)))))


def check(name: str, got, want) -> None:
    err = rel_err(got, want)
    ok = err <= REL_TOL
    print(f"  check {name}: max-norm relative error {err:.2e} "
          f"({'ok' if ok else f'**DISAGREES** > {REL_TOL}'})")
    if not ok:
        FAILURES.append(f"{name}: relative error {err:.3e}")


# ---------------------------------------------------------------- measuring


def row(name: str, case: Case) -> str:
    w = case.wall
    return (f"| {name} | {human(med(case.wall))} | {human(min(w))} – {human(max(w))} | "
            f"{case.inner} x {len(w)} |")


HEADER = "| case | median | min – max | inner x repeats |\n|---|---|---|---|"


# ---------------------------------------------------------------- environment


def environment() -> None:
    import tapegrad._core as core
    from tapegrad.function import _default_threads

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    st = os.stat(core.__file__)
    print("## Environment")
    print(f"- python {platform.python_version()} on {platform.platform()}")
    print(f"- CPU: {cpu}; usable cores {len(os.sched_getaffinity(0))}; "
          f"tapegrad default threads {_default_threads()}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"- tapegrad {tg.__version__} (_core {core.__file__}, modified "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))})")
    print(f"- numpy {np.__version__}, jax {pkg('jax')}, jaxlib {pkg('jaxlib')}, "
          f"torch {pkg('torch')}")
    print()


# ---------------------------------------------------------------- (a) HVP vs gradient


def hvp_vs_grad(args) -> dict:
    print(f"## (a) HVP vs gradient at one point: Rosenbrock d = {HVP_D} (traced tg.Function)")
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1.5, 1.5, HVP_D)
    v = rng.normal(size=HVP_D)
    F = tg.trace(rosen, np.zeros(HVP_D))
    x1 = x[None, :]
    print(f"  {F!r}")
    check("F.grad(x) vs closed form", F.grad(x), rosen_grad(x))
    check("F.grad(x[None]) vs closed form", F.grad(x1, threads=1)[0], rosen_grad(x))
    check("F.hvp(x, v) vs closed-form H v", F.hvp(x, v), rosen_hvp(x, v))
    check("F.hvp(x, v, threads=1) vs closed-form H v", F.hvp(x, v, threads=1), rosen_hvp(x, v))
    cases = {
        "F.grad(x)": Case(lambda: F.grad(x)),
        "F.hvp(x, v)": Case(lambda: F.hvp(x, v)),
        "F.hvp(x, v, threads=1)": Case(lambda: F.hvp(x, v, threads=1)),
        "F.value_and_grad(x)": Case(lambda: F.value_and_grad(x)),
        # info: the batch machinery (which F.hvp uses) on one point, first order
        "F.grad(x[None]) (batch path, 1 point, info)": Case(lambda: F.grad(x1, threads=1)),
        "F.jvp(x, v, threads=1) (info)": Case(lambda: F.jvp(x, v, threads=1)),
    }
    run_cases(cases, args.repeats, args.warmup, args.target)
    print(HEADER)
    for name, case in cases.items():
        print(row(name, case))
    g, h = cases["F.grad(x)"], cases["F.hvp(x, v)"]
    ratio = med(h.wall) / med(g.wall)
    ratio1 = med(cases["F.hvp(x, v, threads=1)"].wall) / med(g.wall)
    ok = ratio <= HVP_TARGET
    batch1 = med(cases["F.grad(x[None]) (batch path, 1 point, info)"].wall)
    print(f"\n  info: F.hvp(x, v) / F.grad(x[None]) (both via the batch path) = "
          f"{med(h.wall) / batch1:.2f}x; F.grad(x[None]) / F.grad(x) = {batch1 / med(g.wall):.2f}x")
    print(f"  HVP / gradient = {ratio:.2f}x (per-repeat {paired(h, g)}), threads=1: "
          f"{ratio1:.2f}x; target <= {HVP_TARGET:g}x: {'met' if ok else '**NOT MET**'}\n")
    return {"hvp/grad": ratio, "hvp/grad threads=1": ratio1, "hvp_ok": ok}


# ---------------------------------------------------------------- (b) batched dense Hessian


def jax_hessian_case(X: np.ndarray):
    """(callable returning a numpy (N, n, n) array, compile seconds) or raises ImportError."""
    import jax

    jax.config.update("jax_enable_x64", True)
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


def torch_hessian_case(X: np.ndarray):
    import torch
    from torch import func as tf

    XT = torch.tensor(X, dtype=torch.float64)
    hess = tf.vmap(tf.hessian(rosen))

    def run():
        return hess(XT)

    return run


def batched_hessian(args) -> dict:
    print(f"## (b) dense Hessian, n = {HESS_N}, at {HESS_POINTS} points, batched "
          f"(Rosenbrock d = {HESS_N})")
    X = np.random.default_rng(SEED + 1).uniform(-1.5, 1.5, (HESS_POINTS, HESS_N))
    want = rosen_hessians(X)
    F = tg.trace(rosen, np.zeros(HESS_N))
    print(f"  {F!r}")
    H = F.hessian(X)
    assert H.shape == (HESS_POINTS, HESS_N, HESS_N), H.shape
    check("tapegrad F.hessian(X) vs closed form", H, want)
    check("tapegrad F.hessian(X, threads=1) vs closed form", F.hessian(X, threads=1), want)
    cases = {"tapegrad F.hessian(X)": Case(lambda: F.hessian(X)),
             "tapegrad F.hessian(X, threads=1)": Case(lambda: F.hessian(X, threads=1))}
    jax_name = "JAX jit(vmap(hessian)) (x64)"
    try:
        jax_run, compile_s = jax_hessian_case(X)
    except ImportError as err:
        print(f"  JAX rows skipped: JAX is not installed ({err})")
    else:
        HJ = np.asarray(jax_run())
        check("JAX vs closed form", HJ, want)
        same = np.allclose(H, HJ, rtol=1e-12, atol=1e-9)
        print(f"  np.allclose(tapegrad, JAX, rtol=1e-12, atol=1e-9): {same}")
        if not same:
            FAILURES.append("tapegrad and JAX Hessians disagree")
        print(f"  JAX compile (excluded from timings): {human(compile_s)}")
        cases[jax_name] = Case(jax_run)
    torch_name = "torch.func vmap(hessian) (eager, reference only)"
    try:
        torch_run = torch_hessian_case(X) if args.torch else None
    except ImportError as err:
        print(f"  torch row skipped: torch is not installed ({err})")
    else:
        if torch_run is None:
            print("  torch row skipped (seconds per call): add --torch to include it")
    if args.torch and torch_run is not None:
        check("torch vs closed form", torch_run().numpy(), want)
        cases[torch_name] = Case(torch_run)
    run_cases(cases, args.repeats, args.warmup, args.target)
    print(HEADER.replace("repeats |\n", "repeats | per point |\n") + "---|")
    for name, case in cases.items():
        print(row(name, case) + f" {human(med(case.wall) / HESS_POINTS)} |")
    out: dict = {}
    tg_case = cases["tapegrad F.hessian(X)"]
    if jax_name in cases:
        j = cases[jax_name]
        ratio = med(tg_case.wall) / med(j.wall)
        ratio1 = med(cases["tapegrad F.hessian(X, threads=1)"].wall) / med(j.wall)
        ok = ratio < HESS_TARGET
        print(f"\n  tapegrad / JAX = {ratio:.2f}x (per-repeat {paired(tg_case, j)}), "
              f"threads=1: {ratio1:.2f}x; "
              f"target < {HESS_TARGET:g}x (tapegrad faster): "
              f"{'met' if ok else '**NOT MET**'}")
        out.update({"tg/jax": ratio, "tg/jax threads=1": ratio1, "hess_ok": ok})
    if torch_name in cases:
        print(f"  tapegrad / torch.func = {med(tg_case.wall) / med(cases[torch_name].wall):.3f}x")
    print()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument("--torch", action="store_true",
                   help="also time torch.func.vmap(torch.func.hessian) in (b) (slow: seconds "
                        "per call)")
    args = p.parse_args()
    args.repeats, args.warmup, args.target = (5, 1, 0.05) if args.quick else (15, 2, 0.2)
    print("# tapegrad second-order transforms vs peers\n")
    environment()
    a = hvp_vs_grad(args)
    b = batched_hessian(args)
    print("## Summary")
    print(f"- (a) HVP / gradient, Rosenbrock d={HVP_D}: {a['hvp/grad']:.2f}x "
          f"(threads=1 {a['hvp/grad threads=1']:.2f}x); target <= {HVP_TARGET:g}x: "
          f"{'met' if a['hvp_ok'] else 'NOT MET'}")
    if "tg/jax" in b:
        print(f"- (b) dense Hessian n={HESS_N} at {HESS_POINTS} points, tapegrad / JAX "
              f"jit(vmap(hessian)): {b['tg/jax']:.2f}x (threads=1 {b['tg/jax threads=1']:.2f}x); "
              f"target < 1x: {'met' if b['hess_ok'] else 'NOT MET'}")
    else:
        print("- (b) JAX not installed: no ratio")
    for note in NOTES:
        print(f"- note: {note}")
    for failure in FAILURES:
        print(f"- CHECK FAILED: {failure}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
