#!/usr/bin/env python
"""What a call costs outside the arithmetic: `python bench/compare.py calls`.

1. Batched F.grad(X, Y, Z) of the 3-input function f(x, y, z) = sin(x y) + exp(-z^2) /
   (1 + x^2) + tanh(y - z) x + log(1 + y^2), traced once, at N = 1 to 1000 points,
   threads=1, numpy in and out, against JAX's jit(vmap(grad)) called the same way (numpy
   in, numpy arrays out). Targets: at most 2 us at one point (the fixed cost), and at most
   0.15x JAX at N = 10.
2. One point: F.grad(x) of a function of a 2-vector against numpy's own np.add on 2
   elements (target: at most 1.25x), and G.grad(1.0, 2.0), G(1.0, 2.0) of a function of
   two scalars (reported).
3. Per-point cost of F.grad at 10^7 points against 10^5 (threads=2), with fresh results
   and with out= (the caller's arrays). Target: at most 1.2x.
4. The eager chain v = sin(v) * 0.5 + v, 10^5 levels, on a fresh tape against a tape that
   already has room (the same thread again). Target: at most 1.2x. Two fresh tapes: a new
   thread's, started after another thread's tape was freed (it takes over that memory),
   and the first tape of a new process (memory the kernel must fault in and zero). Timed
   in the thread's CPU time, which includes its page faults.

Cases of one table run interleaved in one process; figures are medians.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
import time

import numpy as np

import harness as H
import tapegrad as tg

TITLE = "call overhead, output buffers and first-touch memory"
TARGET_FIXED_S = 2e-6
TARGET_VS_JAX = 0.15
TARGET_VS_NP_ADD = 1.25
TARGET_BIG = 1.2
TARGET_FRESH = 1.2
SIZES = {
    "full": dict(points=[1, 10, 100, 1000], repeats=9, sample_s=0.1, big=10**7, small=10**5,
                 big_repeats=5, chain=100_000, chain_rounds=5),
    "quick": dict(points=[1, 10, 100, 1000], repeats=5, sample_s=0.03, big=10**7,
                  small=10**5, big_repeats=3, chain=100_000, chain_rounds=3),
    "smoke": dict(points=[1, 10], repeats=1, sample_s=None, big=2000, small=200,
                  big_repeats=1, chain=200, chain_rounds=1),
}


def f3(x, y, z, np_=None):
    m = np_ or tg
    return m.sin(x * y) + m.exp(-z * z) / (1 + x * x) + m.tanh(y - z) * x + m.log(1 + y * y)


def batched(rep: H.Report, cfg: dict, peers: dict) -> None:
    F = tg.trace(f3, 0.1, 0.2, 0.3)
    jax = peers.get("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy
        jg = jax.jit(jax.vmap(jax.grad(lambda x, y, z: f3(x, y, z, jnp), argnums=(0, 1, 2))))
    rng = np.random.default_rng(0)
    rows, at10 = [], None
    for n in cfg["points"]:
        X, Y, Z = rng.uniform(0.1, 1.0, (3, n))
        want = F.grad(X, Y, Z, threads=1)
        args = (X, Y, Z)
        cases = {"tapegrad": H.Case(lambda a=args: F.grad(*a, threads=1))}
        if jax is not None:
            got = tuple(np.asarray(g) for g in jg(X, Y, Z))
            err = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
            if err > 1e-12:
                rep.fail(f"JAX's gradient differs from tapegrad's by {err:.2e} at N = {n}")
            cases["JAX jit(vmap(grad))"] = H.Case(
                lambda a=args: tuple(np.asarray(g) for g in jg(*a)))
        H.run_cases(cases, cfg["repeats"], 1, cfg["sample_s"], on_error=rep.note)
        t = H.med(cases["tapegrad"].wall)
        j = H.med(cases["JAX jit(vmap(grad))"].wall) if "JAX jit(vmap(grad))" in cases else None
        ratio = t / j if j else None
        if n == 10:
            at10 = ratio
        rows.append([f"{n:,}", H.human(t), H.human(j), H.fmt(ratio) + "x" if ratio else "n/a"])
        rep.data.setdefault("batched", []).append(dict(points=n, tapegrad_s=t, jax_s=j))
    rep.table(["points", "tapegrad F.grad(X, Y, Z)", "JAX jit(vmap(grad))", "ratio"], rows,
              title="1. batched gradient, threads=1, numpy in and out")
    fixed = rep.data["batched"][0]["tapegrad_s"]
    summary = [["fixed cost (one point, batched call)", H.human(fixed),
                f"<= {H.human(TARGET_FIXED_S)}", H.met(fixed <= TARGET_FIXED_S)]]
    if at10 is not None:
        summary.append(["tapegrad / JAX at N = 10", f"{H.fmt(at10)}x", f"<= {TARGET_VS_JAX}x",
                        H.met(at10 <= TARGET_VS_JAX)])
    rep.table(["target", "measured", "target", "met"], summary)


def one_point(rep: H.Report, cfg: dict) -> None:
    V = tg.trace(lambda v: v[0] * v[1] + tg.sin(v[0]), np.array([1.0, 2.0]))
    G = tg.trace(lambda a, b: a * b + tg.sin(a), 1.0, 2.0)
    x, a, b, g = np.array([1.0, 2.0]), np.ones(2), np.ones(2), np.empty(2)
    cases = {
        "np.add on 2 elements": H.Case(lambda: np.add(a, b)),
        "F.grad(x), x a 2-vector": H.Case(lambda: V.grad(x)),
        "F.grad(x, out=g)": H.Case(lambda: V.grad(x, out=g)),
        "G.grad(1.0, 2.0)": H.Case(lambda: G.grad(1.0, 2.0)),
        "G(1.0, 2.0)": H.Case(lambda: G(1.0, 2.0)),
    }
    H.run_cases(cases, cfg["repeats"], 1, cfg["sample_s"])
    base = H.med(cases["np.add on 2 elements"].wall)
    rows = []
    for name, c in cases.items():
        t = H.med(c.wall)
        rows.append([name, H.human(t), f"{H.fmt(t / base)}x"])
    ratio = H.med(cases["F.grad(x), x a 2-vector"].wall) / base
    rep.data["one_point"] = {k: H.med(c.wall) for k, c in cases.items()}
    rep.table(["call", "median", "vs np.add"], rows, title="2. one point")
    rep.table(["target", "measured", "target", "met"],
              [["F.grad(x) / np.add", f"{H.fmt(ratio)}x", f"<= {TARGET_VS_NP_ADD}x",
                H.met(ratio <= TARGET_VS_NP_ADD)]])


def big_batches(rep: H.Report, cfg: dict) -> None:
    F = tg.trace(f3, 0.1, 0.2, 0.3)
    rng = np.random.default_rng(1)
    per_point, rows = {}, []
    for n in (cfg["small"], cfg["big"]):
        X, Y, Z = rng.uniform(0.1, 1.0, (3, n))
        outs = tuple(np.empty(n) for _ in range(3))
        args = (X, Y, Z)
        cases = {"fresh results": H.Case(lambda a=args: F.grad(*a, threads=2)),
                 "out=": H.Case(lambda a=args, o=outs: F.grad(*a, threads=2, out=o))}
        H.run_cases(cases, cfg["big_repeats"], 1, None if n == cfg["big"] else cfg["sample_s"])
        for name, c in cases.items():
            per_point[name, n] = H.med(c.wall) / n
    for name in ("fresh results", "out="):
        small, big = per_point[name, cfg["small"]], per_point[name, cfg["big"]]
        ratio = big / small
        rows.append([name, f"{H.fmt(small * 1e9)} ns", f"{H.fmt(big * 1e9)} ns",
                     f"{H.fmt(ratio)}x", H.met(ratio <= TARGET_BIG)])
    rep.data["big"] = {f"{k[0]} {k[1]}": v for k, v in per_point.items()}
    rep.table(["results", f"per point at {cfg['small']:,}", f"per point at {cfg['big']:,}",
               "ratio", f"target <= {TARGET_BIG}x"], rows,
              title="3. F.grad per point, a big batch against a small one (threads=2)")


def chain_ns_per_op(levels: int) -> float:
    """CPU time of this thread per op: it counts the page faults the kernel serves for the
    thread, and not the other processes on a shared machine, which wall time would."""
    x = tg.Var(0.3)
    v = x
    t0 = time.thread_time()
    for _ in range(levels):
        v = tg.sin(v) * 0.5 + v
    return (time.thread_time() - t0) / (3 * levels) * 1e9


FIRST_TAPE = """
import json, sys, time
sys.path.insert(0, {bench!r})
import compare_calls
first = compare_calls.chain_ns_per_op({levels})
print(json.dumps([first, min(compare_calls.chain_ns_per_op({levels}) for _ in range(2))]))
"""


def first_tape_of_a_process(levels: int) -> tuple[float, float]:
    """(ns/op on the first tape of a new interpreter, then on that tape with room)."""
    code = FIRST_TAPE.format(bench=str(Path(__file__).resolve().parent), levels=levels)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=600).stdout
    first, warm = json.loads(out.strip().splitlines()[-1])
    return first, warm


def fresh_tape(rep: H.Report, cfg: dict) -> None:
    levels = cfg["chain"]
    chain_ns_per_op(levels)  # this thread's tape now has room
    fresh, warm, first, first_warm = [], [], [], []
    for _ in range(cfg["chain_rounds"]):
        out: list[float] = []
        th = threading.Thread(target=lambda o=out: o.append(chain_ns_per_op(levels)))
        th.start()
        th.join()
        fresh.append(out[0])
        warm.append(chain_ns_per_op(levels))
        f1, w1 = first_tape_of_a_process(levels)
        first.append(f1)
        first_warm.append(w1)
    f, w = H.med(fresh), H.med(warm)
    p, pw = H.med(first), H.med(first_warm)
    rep.data["fresh_tape"] = dict(fresh_ns=f, warm_ns=w, first_in_process_ns=p,
                                  first_in_process_warm_ns=pw)
    rep.table(["eager chain, ns per op", "fresh tape", "tape with room", "ratio",
               f"target <= {TARGET_FRESH}x"],
              [["a new thread's tape (another thread's freed before)", H.fmt(f), H.fmt(w),
                f"{H.fmt(f / w)}x", H.met(f / w <= TARGET_FRESH)],
               ["the first tape of a new process", H.fmt(p), H.fmt(pw), f"{H.fmt(p / pw)}x",
                H.met(p / pw <= TARGET_FRESH)]],
              title="4. eager build on a fresh tape")


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = SIZES[mode]
    peers, missing = H.load_peers(opts.peers, allowed=("jax",))
    rep.environment(peers, missing)
    rep.section("batched", batched, rep, cfg, peers)
    rep.section("one point", one_point, rep, cfg)
    rep.section("big batches", big_batches, rep, cfg)
    rep.section("fresh tape", fresh_tape, rep, cfg)


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["calls"] + sys.argv[1:]))
