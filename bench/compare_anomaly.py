#!/usr/bin/env python
"""What tg.detect_anomaly() costs (target: on <= 3x off), side by side in one run. A
subcommand of bench/compare.py:

    python bench/compare.py anomaly            # ~3 s
    python bench/compare.py anomaly --quick    # fewer repeats (~1 s)

Workloads (defined here; bench/test_bench_anomaly.py times the same ones):
  eager   build + backward of a 1e5-node healthy graph: the mixed loop of
          `python -m tapegrad`'s speed check (mul, add, sin, constants), built op by op
          from Python, so per-op checks and the post-sweep edge scan are both included.
          Also (info, no target) backward() alone on the prebuilt graph: the sweep plus
          anomaly mode's edge scan, without Python's per-op cost to hide it.
  replay  a traced batched F.value_and_grad of F3 (bench/replay_workloads.py) at 1e5
          points, one thread: the replay plus the anomaly-mode NaN/Inf scan of the results.

Before timing, both modes must give bit-identical results (detection must not change
numbers). Off and on run interleaved round-robin after warm-ups; each figure is the
median over repeats (min-max in brackets), and the ratio is of the medians from the
same run, with the range of per-round ratios. Exit status 1 if a ratio misses the target
or the results differ (at --smoke sizes, only if the results differ: fixed costs dominate
such small workloads, so their ratio says nothing about the target).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402
import numpy as np  # noqa: E402
import replay_workloads as R  # noqa: E402

import tapegrad as tg  # noqa: E402

TITLE = "what detect_anomaly() costs"
TARGET = 3.0  # on / off
EAGER_STEPS = 33_334  # 3 new nodes per step (2 leaves + 100,002 nodes)
REPLAY_POINTS = 100_000
SIZES = {
    "full": dict(eager_steps=EAGER_STEPS, replay_points=REPLAY_POINTS, repeats=41, warmup=4),
    "quick": dict(eager_steps=EAGER_STEPS, replay_points=REPLAY_POINTS, repeats=7, warmup=2),
    "smoke": dict(eager_steps=300, replay_points=1_000, repeats=2, warmup=0),
}


# ---------------------------------------------------------------- workloads

def eager_graph(steps: int = EAGER_STEPS) -> tuple[Any, Any, Any]:
    """The speed() loop of tapegrad/__main__.py (mul, add, sin, constants): 3 nodes a
    step. Returns (root, x, y)."""
    x, y = tg.Var(0.5), tg.Var(-0.25)
    s = x
    for i in range(steps):
        s = tg.sin(s * y + x) if i % 2 else s * 0.5 + x
    return s, x, y


def eager_mixed(steps: int = EAGER_STEPS) -> tuple[float, float, float]:
    """Build the speed() graph and differentiate it. Returns (value, dx, dy)."""
    s, x, y = eager_graph(steps)
    s.backward()
    return s.value, x.grad, y.grad


def eager_backward(graph: tuple[Any, Any, Any]) -> tuple[float, float, float]:
    """backward() alone on a prebuilt graph (leaf grads zeroed first)."""
    s, x, y = graph
    x.zero_grad()
    y.zero_grad()
    s.backward()
    return s.value, x.grad, y.grad


def with_detection(fn: Callable[..., Any]) -> Callable[..., Any]:
    def on(*args: Any, **kwargs: Any) -> Any:
        with tg.detect_anomaly():
            return fn(*args, **kwargs)

    on.__name__ = f"{getattr(fn, '__name__', 'fn')}_with_detection"
    return on


def replay_setup(n: int = REPLAY_POINTS):
    """(F, points): F3 traced once, and n points."""
    return tg.trace(R.f3_tapegrad, 0.5, 0.5, 0.5), R.f3_points(n)


def replay_value_and_grad(F, points) -> tuple[Any, Any]:
    return F.value_and_grad(*points, threads=1)


def bit_identical(a: Any, b: Any) -> bool:
    """Same structure, every float the same bits."""
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(bit_identical(x, y) for x, y in zip(a, b)))
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool((a.view(np.int64) == b.view(np.int64)).all())


# ---------------------------------------------------------------- measuring


def measure(cfg: dict) -> dict[str, dict]:
    """Off and on for each workload, sampled round-robin in alternating order (on, off,
    off, on, ...) after checking that both give bit-identical results."""
    results: dict[str, dict] = {}
    F, points = replay_setup(cfg["replay_points"])
    graph = eager_graph(cfg["eager_steps"])
    workloads = {
        "eager build+backward, 1e5 nodes": (lambda: eager_mixed(cfg["eager_steps"]), True),
        "traced F3 value_and_grad, 1e5 points": (lambda: replay_value_and_grad(F, points), False),
        "(info) eager backward() alone, 1e5 nodes": (lambda: eager_backward(graph), False),
    }
    for title, (fn, fresh) in workloads.items():
        off_result, on_result = fn(), with_detection(fn)()
        same = bit_identical(off_result, on_result)
        cases = {"off": H.Case(fn, fresh=fresh), "on": H.Case(with_detection(fn), fresh=fresh)}
        H.run_cases(cases, cfg["repeats"], cfg["warmup"], try_first=False, alternate=True)
        off, on = cases["off"], cases["on"]
        rounds = [b / a for a, b in zip(off.wall, on.wall)]
        results[title] = {"off": off.wall, "on": on.wall, "ratio": H.med(on.wall) / H.med(off.wall),
                          "rounds": (min(rounds), max(rounds)), "same": same,
                          "min_ratio": min(on.wall) / min(off.wall),
                          "cpu_ratio": statistics.median(on.cpu) / statistics.median(off.cpu)}
    return results


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = SIZES[mode]
    rep.environment()
    results = measure(cfg)
    rows = []
    for title, r in results.items():
        info = title.startswith("(info)")
        lo, hi = r["rounds"]
        rows.append([title, H.human_spread(r["off"]), H.human_spread(r["on"]),
                     f"{r['ratio']:.2f}x ({lo:.2f}-{hi:.2f})", f"{r['min_ratio']:.2f}x",
                     f"{r['cpu_ratio']:.2f}x", H.met(r["ratio"] <= TARGET), H.met(r["same"])])
        if not r["same"]:
            rep.fail(f"{title}: results differ with detection on")
        if not (r["ratio"] <= TARGET or info) and mode != "smoke":
            rep.fail(f"{title}: on/off {r['ratio']:.2f}x misses the target <= {TARGET:g}x")
    rep.say("")
    rep.table(["workload", "detection off", "detection on", "on/off: median (per-round range)",
               "min/min", "CPU median", f"target <= {TARGET:g}x", "results identical"], rows)
    rep.say(f"\nwall-clock medians of {cfg['repeats']} interleaved repeats (min-max in brackets); "
            "the verdict uses the median ratio")
    rep.data["results"] = results


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["anomaly"] + sys.argv[1:]))
