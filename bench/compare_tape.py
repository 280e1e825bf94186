#!/usr/bin/env python
"""The eager tape's cost follows the live graph, not history: `python bench/compare.py tape`.

1. The training-loop idiom `loss = build(w); loss.backward()` keeps the previous loss alive
   while the next graph is built, so the old graph dies *below* the new one. Its backward()
   is timed against the variant that drops the old loss first (`loss = None`), for graphs
   of 10 to 10^5 nodes. Target: <= 1.3x.
2. A small training step (build + backward, 65 nodes) after large graphs were built and
   dropped, against the same step before them in the same process. Target: <= 1.3x.
3. RSS after building and dropping a 10^7-node graph, against before. Target: within 20 MB.
   Also the RSS growth of many small steps run after a large chain was dropped.

Each pair is measured in one run (rounds alternate between the two); figures are medians,
except the small step's, which is a mean (garbage makes runs of steps slow until the next
compaction, which a median would hide). Linux only for RSS (/proc/self/statm).
"""
from __future__ import annotations

import gc
import sys
import time

import harness as H
import tapegrad as tg

TITLE = "the eager tape: backward and memory follow the live graph"
TARGET = 1.3
TARGET_RSS_MB = 20.0
SIZES = {  # mode -> graph sizes for (1), the dropped graphs for (2), the graph for (3)
    "full": dict(sizes=[10, 100, 1000, 10_000, 100_000], rounds=7, big=1_000_000,
                 rss_nodes=10_000_000, chain=1_000_000, loop_steps=200_000),
    "quick": dict(sizes=[10, 100, 1000, 10_000, 100_000], rounds=3, big=200_000,
                  rss_nodes=2_000_000, chain=200_000, loop_steps=20_000),
    "smoke": dict(sizes=[10, 100], rounds=1, big=2_000, rss_nodes=20_000, chain=2_000,
                  loop_steps=200),
}

N_PARAMS = 10


def build(w: list, n_nodes: int):
    """A loss of about n_nodes nodes over the parameters w (each op reuses a parameter)."""
    acc = w[0] * w[1]
    for k in range(max(1, (n_nodes - 1) // 2)):
        acc = acc + w[k % N_PARAMS] * 0.5
    return acc


def rss_mb() -> float:
    return H.rss_bytes() / 2**20


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
                times[variant].append(H.med(t))
    idiom, dropped = H.med(times["idiom"]), H.med(times["dropped"])
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
    del keep  # dies below `tiny`
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


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = SIZES[mode]
    rep.environment()
    rows, check = [], mode != "smoke"
    for n in cfg["sizes"]:
        steps = max(5, min(200, 200_000 // n))
        r = backward_ratio(n, steps, rounds=cfg["rounds"])
        rep.data.setdefault("backward", []).append(r)
        rows.append([f"{n:,}", f"{r['idiom_us']:.2f} us", f"{r['dropped_us']:.2f} us",
                     f"{r['ratio']:.2f}x", H.met(r["ratio"] <= TARGET)])
        if check and r["ratio"] > TARGET:
            rep.fail(f"backward with the previous loss alive, {n} nodes: {r['ratio']:.2f}x")
    rep.table(["graph nodes", "previous loss alive", "previous loss dropped", "ratio",
               f"target <= {TARGET:g}x"], rows,
              title="1. backward() in the idiom `loss = build(w)` vs `loss = None` first")

    big = cfg["big"]
    r = after_drop_ratio(big, steps=3 * big // 65)
    rep.data["after_drop"] = r
    rep.table(["step", "fresh tape", "after two dropped graphs", "ratio", f"target <= {TARGET:g}x"],
              [["65 nodes, build + backward", f"{r['before_us']:.2f} us",
                f"{r['after_us']:.2f} us", f"{r['ratio']:.2f}x", H.met(r["ratio"] <= TARGET)]],
              title=f"2. a small step after two dropped {big:,}-node graphs")
    if check and r["ratio"] > TARGET:
        rep.fail(f"small step after dropped graphs: {r['ratio']:.2f}x")

    r = rss_after_drop(cfg["rss_nodes"])
    g = loop_rss_growth(cfg["chain"], cfg["loop_steps"])
    rep.data["rss"], rep.data["loop_growth"] = r, g
    rep.table(["case", "before", "built", "dropped", "change", f"target <= {TARGET_RSS_MB:g} MB"],
              [[f"a {r['nodes']:,}-node graph", f"{r['before_mb']:.0f} MB", f"{r['peak_mb']:.0f} MB",
                f"{r['after_mb']:.0f} MB", f"{r['delta_mb']:+.1f} MB",
                H.met(r["delta_mb"] <= TARGET_RSS_MB)],
               [f"{g['steps']:,} 65-node steps after a dropped {g['chain']:,}-node chain",
                "", "", "", f"{g['growth_mb']:+.1f} MB", ""]],
              title="3. the process's RSS")
    if check and r["delta_mb"] > TARGET_RSS_MB:
        rep.fail(f"RSS after dropping a {r['nodes']}-node graph: {r['delta_mb']:+.1f} MB")


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["tape"] + sys.argv[1:]))
