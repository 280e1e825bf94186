#!/usr/bin/env python
"""What tg.detect_anomaly() costs (issue 8 target: on <= 3x off), side by side in ONE run.

    python bench/compare_anomaly.py            # ~3 s
    python bench/compare_anomaly.py --quick    # fewer repeats (~1 s)

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
or the results differ.
"""
from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import replay_workloads as R  # noqa: E402

import tapegrad as tg  # noqa: E402

TARGET = 3.0  # on / off
EAGER_STEPS = 33_334  # 3 new nodes per step (2 leaves + 100,002 nodes)
REPLAY_POINTS = 100_000


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

def measure(pair: dict[str, Callable[[], Any]], repeats: int, warmup: int,
            fresh: bool) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall, process CPU) seconds per call, sampled round-robin (off, on, off, on, ...).
    `fresh` workloads (graph building) get an untimed gc.collect() before each call."""
    wall: dict[str, list[float]] = {k: [] for k in pair}
    cpu: dict[str, list[float]] = {k: [] for k in pair}
    for r in range(warmup + repeats):
        for name, fn in (pair.items() if r % 2 else reversed(pair.items())):
            if fresh:
                gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            if r >= warmup:
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    return wall, cpu


def fmt_ms(xs: list[float]) -> str:
    return (f"{statistics.median(xs) * 1e3:8.2f} ms "
            f"({min(xs) * 1e3:.2f}-{max(xs) * 1e3:.2f})")


def run(repeats: int, warmup: int, log: Callable[[str], None] = print) -> dict[str, dict]:
    results: dict[str, dict] = {}

    F, points = replay_setup()
    graph = eager_graph()
    workloads = {
        "eager build+backward, 1e5 nodes": (eager_mixed, True),
        "traced F3 value_and_grad, 1e5 points": (lambda: replay_value_and_grad(F, points), False),
        "(info) eager backward() alone, 1e5 nodes": (lambda: eager_backward(graph), False),
    }
    for title, (fn, fresh) in workloads.items():
        off_result, on_result = fn(), with_detection(fn)()
        same = bit_identical(off_result, on_result)
        times, cpu = measure({"off": fn, "on": with_detection(fn)}, repeats, warmup, fresh)
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        rounds = [b / a for a, b in zip(times["off"], times["on"])]
        results[title] = {"off": times["off"], "on": times["on"], "ratio": on / off,
                          "rounds": (min(rounds), max(rounds)), "same": same,
                          "min_ratio": min(times["on"]) / min(times["off"]),
                          "cpu_ratio": statistics.median(cpu["on"]) / statistics.median(cpu["off"])}
    return results


def report(results: dict[str, dict], repeats: int) -> tuple[str, bool]:
    lines = [f"| workload | detection off | detection on | on/off: median (per-round range) "
             f"| min/min | CPU median | target <= {TARGET:g}x | results identical |",
             "|---|---|---|---|---|---|---|---|"]
    ok = True
    for title, r in results.items():
        good = (r["ratio"] <= TARGET or title.startswith("(info)")) and r["same"]
        ok &= good
        lo, hi = r["rounds"]
        lines.append(f"| {title} | {fmt_ms(r['off'])} | {fmt_ms(r['on'])} | "
                     f"{r['ratio']:.2f}x ({lo:.2f}-{hi:.2f}) | {r['min_ratio']:.2f}x | "
                     f"{r['cpu_ratio']:.2f}x | {'yes' if r['ratio'] <= TARGET else '**NO**'} "
                     f"| {'yes' if r['same'] else '**NO**'} |")
    lines.append(f"\nwall-clock medians of {repeats} interleaved repeats (min-max in brackets); "
                 "the verdict uses the median ratio; "
                 f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
                 f"numpy {np.__version__}, tapegrad {tg.__version__}")
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats, warmup = (7, 2) if args.quick else (41, 4)
    print(f"$ python bench/compare_anomaly.py{' --quick' if args.quick else ''}")
    text, ok = report(run(repeats, warmup), repeats)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
