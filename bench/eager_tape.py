#!/usr/bin/env python
"""The eager tape's cost follows the live graph, not history: three ratios and a memory figure.

    python bench/eager_tape.py           # full run (~1 min on 2 noisy cores)
    python bench/eager_tape.py --quick   # smaller graphs, fewer repeats

1. The training-loop idiom `loss = build(w); loss.backward()` keeps the previous loss alive
   while the next graph is built, so the old graph dies *below* the new one. Its backward()
   is timed against the variant that drops the old loss first (`loss = None`), for graphs
   of 10 to 10^5 nodes. Target: <= 1.3x.
2. A small training step (build + backward, 65 nodes) after large graphs were built and
   dropped, against the same step before them in the same process. Target: <= 1.3x.
3. RSS after building and dropping a 10^7-node graph, against before. Target: within 20 MB.
   Also the RSS growth of 200,000 small steps run after a 10^6-node chain was dropped.

Each pair is measured interleaved in one run (noise hits both alike); figures are medians.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import tapegrad as tg

N_PARAMS = 10


def build(w: list, n_nodes: int):
    """A loss of about n_nodes nodes over the parameters w (each op reuses a parameter)."""
    acc = w[0] * w[1]
    for k in range(max(1, (n_nodes - 1) // 2)):
        acc = acc + w[k % N_PARAMS] * 0.5
    return acc


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def backward_ratio(n_nodes: int, steps: int, rounds: int) -> dict:
    """Median backward() time: the idiom (old loss alive) vs `loss = None` first."""
    w = [tg.Var(0.1 * i) for i in range(N_PARAMS)]
    times: dict[str, list[float]] = {"idiom": [], "dropped": []}
    for r in range(rounds + 1):  # round 0 warms up
        for variant in ("idiom", "dropped"):
            loss = build(w, n_nodes)
            t = []
            for _ in range(steps):
                if variant == "dropped":
                    loss = None
                loss = build(w, n_nodes)
                t0 = time.perf_counter()
                loss.backward()
                t.append(time.perf_counter() - t0)
            loss = None
            if r:
                times[variant].append(med(t))
    idiom, dropped = med(times["idiom"]), med(times["dropped"])
    return {"nodes": n_nodes, "idiom_us": idiom * 1e6, "dropped_us": dropped * 1e6,
            "ratio": idiom / dropped}


def small_step_time(w: list, steps: int) -> float:
    """Mean time of a 65-node step (build + backward): the mean, not the median, since
    garbage makes a run of steps slow until the next compaction."""
    loss = None
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = build(w, 65)
        loss.backward()
    return (time.perf_counter() - t0) / steps


def after_drop_ratio(big: int, steps: int) -> dict:
    """A 65-node step in a fresh tape, and after graphs of `big` nodes were built and dropped
    (one on top of the tape, one below a node that stays alive a little longer). `steps` is
    long enough for whatever garbage the steps leave to reach its steady state."""
    w = [tg.Var(0.1 * i) for i in range(N_PARAMS)]
    before = small_step_time(w, steps)
    keep = build(w, big)
    keep = None  # dies on top of the tape
    keep = build(w, big)
    tiny = w[0] * 2.0
    keep = None  # dies below `tiny`
    del tiny
    after = small_step_time(w, steps)
    return {"big": big, "before_us": before * 1e6, "after_us": after * 1e6,
            "ratio": after / before}


def rss_after_drop(n_nodes: int) -> dict:
    gc.collect()
    before = rss_mb()
    v = tg.Var(1.0)
    x = v
    for _ in range(n_nodes // 2):
        x = x + 1e-9  # two nodes: the constant and the add
    peak = rss_mb()
    x = None
    v = None
    gc.collect()
    after = rss_mb()
    return {"nodes": n_nodes, "before_mb": before, "peak_mb": peak, "after_mb": after,
            "delta_mb": after - before}


def loop_rss_growth(chain: int, steps: int) -> dict:
    w = [tg.Var(0.1 * i) for i in range(N_PARAMS)]
    x = w[0]
    for _ in range(chain):
        x = x + 1e-9
    x = None
    start = rss_mb()
    peak = start
    loss = None
    for s in range(steps):
        loss = build(w, 65)
        loss.backward()
        if s % 1000 == 0:
            peak = max(peak, rss_mb())
    return {"chain": chain, "steps": steps, "growth_mb": max(peak, rss_mb()) - start}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the results to this file")
    a = ap.parse_args(argv)
    sizes = [10, 100, 1000, 10_000] + ([] if a.quick else [100_000])
    out: dict = {"backward": [], "notes": []}
    print("1. backward() with the previous loss alive vs dropped first (target <= 1.3x)")
    for n in sizes:
        steps = max(5, min(200, 200_000 // n))
        r = backward_ratio(n, steps, rounds=3 if a.quick else 7)
        out["backward"].append(r)
        print(f"   {n:>7} nodes: {r['idiom_us']:9.2f} us vs {r['dropped_us']:9.2f} us"
              f"  ratio {r['ratio']:.2f}  {'met' if r['ratio'] <= 1.3 else 'NOT MET'}")
    big = 200_000 if a.quick else 1_000_000
    r = after_drop_ratio(big, steps=3 * big // 65)
    out["after_drop"] = r
    print(f"2. 65-node step after two dropped {big}-node graphs: {r['after_us']:.2f} us vs "
          f"{r['before_us']:.2f} us before  ratio {r['ratio']:.2f}  "
          f"{'met' if r['ratio'] <= 1.3 else 'NOT MET'} (target <= 1.3x)")
    n = 2_000_000 if a.quick else 10_000_000
    r = rss_after_drop(n)
    out["rss"] = r
    print(f"3. RSS around a {n}-node graph: {r['before_mb']:.0f} MB before, "
          f"{r['peak_mb']:.0f} MB built, {r['after_mb']:.0f} MB dropped: "
          f"+{r['delta_mb']:.1f} MB  {'met' if r['delta_mb'] <= 20 else 'NOT MET'} "
          f"(target <= 20 MB)")
    r = loop_rss_growth(200_000 if a.quick else 1_000_000, 20_000 if a.quick else 200_000)
    out["loop_growth"] = r
    print(f"   RSS growth over {r['steps']} 65-node steps after a dropped {r['chain']}-node "
          f"chain: {r['growth_mb']:.1f} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
