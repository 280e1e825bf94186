#!/usr/bin/env python
"""The core engine against its performance targets: eager build per op, backward per
node, memory per node, and W1 (a 1e5-op scalar graph built from Python, then
differentiated) against micrograd and PyTorch's 0-dim tensors. A subcommand of
bench/compare.py:

    python bench/compare.py core           # full run (~1-2 min on 2 noisy cores)
    python bench/compare.py core --quick   # fewer repeats (< 1 min)

Every system is measured in the same run, interleaved round-robin (so noise hits all of
them alike), after warm-ups; each figure is the median with the min-max over repeats, and
ratios are taken between medians of the same run. Before any timing, every system's W1
value and leaf gradients are checked against tapegrad's (relative 1e-9); a disagreement is
flagged in the tables and makes the exit status 1. Memory is measured in a fresh
interpreter per system. A missing peer is reported, not fatal.
"""
from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402
import workloads as W  # noqa: E402
from harness import fmt, med, met, rss_bytes, spread  # noqa: E402

TITLE = "tapegrad core performance vs targets"
REL_TOL = 1e-9

TARGET_EAGER_NS = 60.0
TARGET_BACKWARD_NS = 4.0
TARGET_BYTES = 40.0
TARGET_VS_MICROGRAD = 100.0
TARGET_VS_TORCH = 50.0

SIZES = {  # warm-ups are on top of one checking run per case
    "full": dict(eager_loops=10_000, eager_repeats=15, eager_warmup=1, bwd_big=1_000_000,
                 bwd_ref=100_000, bwd_repeats=15, bwd_warmup=1, mem_big=1_000_000,
                 mem_peer=100_000, w1_ops=100_000, w1_repeats=7, w1_warmup=0),
    "quick": dict(eager_loops=10_000, eager_repeats=5, eager_warmup=0, bwd_big=1_000_000,
                  bwd_ref=100_000, bwd_repeats=5, bwd_warmup=0, mem_big=1_000_000,
                  mem_peer=100_000, w1_ops=100_000, w1_repeats=3, w1_warmup=0),
    "smoke": dict(eager_loops=100, eager_repeats=2, eager_warmup=0, bwd_big=3_000,
                  bwd_ref=1_000, bwd_repeats=2, bwd_warmup=0, mem_big=3_000, mem_peer=1_000,
                  w1_ops=600, w1_repeats=2, w1_warmup=0),
}


def timed_cases(cases: dict, repeats: int, warmup: int, note, label: str) -> dict[str, list[float]]:
    """Seconds per run of each self-timed case, interleaved; a case that raises is noted
    and dropped."""
    cases = {name: H.Case(fn, self_timed=True) for name, fn in cases.items()}
    H.run_cases(cases, repeats, warmup, on_error=lambda m: note(f"{label} / {m}"))
    return {name: c.wall for name, c in cases.items()}


# ---------------------------------------------------------------- correctness


def check_w1(systems: dict, n_terms: int, note) -> dict[str, str]:
    """Run W1 once on every system (also a warm-up) and compare with tapegrad.

    A system that fails is noted and removed from `systems`."""
    results = {}
    for name, s in list(systems.items()):
        s.prepare_w1(n_terms)
        gc.collect()
        try:
            root, xs = s.run_w1(n_terms)
            results[name] = s.result(root, xs)
        except Exception as err:
            if name == "tapegrad":
                raise
            note(f"W1 check / {name}: {type(err).__name__}: {err} (not timed)")
            del systems[name]
            continue
        del root, xs
        gc.collect()
    pf = W.system_python_float()
    float_value = W.w1(pf.leaf, pf.sin, pf.exp, pf.tanh, n_terms)[0]
    ref_value, ref_grads = results["tapegrad"]
    verdict = {}
    for name, (value, grads) in results.items():
        err = max([W.rel_err(value, ref_value)] + [W.rel_err(a, b) for a, b in zip(grads, ref_grads)])
        bad = not (err <= REL_TOL) or len(grads) != len(ref_grads)
        verdict[name] = (f"**MISMATCH** (max rel {err:.1e})" if bad else f"ok ({err:.0e})")
    err = W.rel_err(float_value, ref_value)
    verdict["python float"] = (f"**MISMATCH** (rel {err:.1e})" if not err <= REL_TOL
                               else f"value ok ({err:.0e})")
    return verdict


# ---------------------------------------------------------------- eager build


def eager_case(leaf, kernel, loops: int, sink: list):
    def case():
        z, y = leaf(1.5), leaf(1.0)
        t0 = time.perf_counter()
        r = kernel(z, y, loops)
        t1 = time.perf_counter()
        sink.append(float(r))
        del r, z, y
        return t1 - t0

    return case


def cold_tape_case(leaf, kernel, loops: int):
    """The same kernel on a fresh tape (a new thread), so tape growth is included."""

    def case():
        out = []

        def run():
            z, y = leaf(1.5), leaf(1.0)
            t0 = time.perf_counter()
            r = kernel(z, y, loops)
            out.append(time.perf_counter() - t0)
            del r

        th = threading.Thread(target=run)
        th.start()
        th.join()
        return out[0]

    return case


def bench_eager(systems: dict, loops: int, repeats: int, warmup: int, note):
    ops_per_round = loops * W.UNROLL
    pf = W.system_python_float()
    backends = {"python float": pf.leaf}
    for name in ("tapegrad", "tapegrad.reference"):
        if name in systems:
            backends[name] = systems[name].leaf
    results, checks = {}, {}
    for op, (expr, float_expr) in W.EAGER_OPS.items():
        cases, sinks = {}, {}
        for b, leaf in backends.items():
            sinks[b] = []
            kernel = W.make_eager_kernel(float_expr if b == "python float" else expr)
            cases[b] = eager_case(leaf, kernel, loops, sinks[b])
        if op == "Var*Var" and "tapegrad" in systems:
            cases["tapegrad (fresh tape)"] = cold_tape_case(
                systems["tapegrad"].leaf, W.make_eager_kernel(expr), loops)
        times = timed_cases(cases, repeats, warmup, note, f"eager {op}")
        results[op] = {b: [t / ops_per_round * 1e9 for t in ts] for b, ts in times.items()}
        floor = sinks["python float"][-1]
        checks[op] = all(W.rel_err(s[-1], floor) <= REL_TOL for s in sinks.values() if s)
    return results, checks, ops_per_round


# ---------------------------------------------------------------- backward


def backward_case(root):
    def case():
        t0 = time.perf_counter()
        root.backward()
        return time.perf_counter() - t0

    return case


def first_backward_case(build):
    """Build a fresh graph (untimed), then time its first backward."""

    def case():
        root, xs = build()
        t0 = time.perf_counter()
        root.backward()
        t1 = time.perf_counter()
        del root, xs
        return t1 - t0

    return case


def bench_backward(systems: dict, n_big: int, n_ref: int, repeats: int, warmup: int, note):
    """Backward only: the first backward of a freshly built graph (what a build-once,
    differentiate-once loop pays), and backward repeated on one graph (adjoints reset).

    One graph at a time, never interleaved: tapegrad's backward(root) sweeps every tape
    node below root, so another live graph underneath would be timed too."""
    import tapegrad as tg

    rows = []
    graphs = [("tapegrad", "W1", n_big), ("tapegrad", "chain", n_big)]
    if "tapegrad.reference" in systems:
        graphs += [("tapegrad.reference", "W1", n_ref), ("tapegrad.reference", "chain", n_ref)]
    for sysname, kind, n_ops in graphs:
        s = systems[sysname]
        if kind == "W1":
            n_terms = W.w1_terms(n_ops)
            n_nodes, ops = W.w1_tape_nodes(n_terms), W.w1_op_count(n_terms)

            def build(s=s, n_terms=n_terms):
                return W.w1(s.leaf, s.sin, s.exp, s.tanh, n_terms)
        else:
            n_nodes, ops = n_ops + 2, n_ops

            def build(s=s, n_ops=n_ops):
                return W.chain(s.leaf, n_ops)

        gc.collect()
        before = tg._core.tape_stats()["size"]
        try:
            root, xs = build()
        except Exception as err:
            note(f"backward / {sysname} {kind}: building failed: {type(err).__name__}: {err}")
            continue
        if sysname == "tapegrad":
            if before:
                note(f"backward / tapegrad {kind}: {before} older nodes below the graph")
            measured = tg._core.tape_stats()["size"] - before
            assert measured == n_nodes, (measured, n_nodes)
        key = f"{sysname} {kind}"
        repeated = timed_cases({key: backward_case(root)}, repeats, warmup, note, "backward")
        del root, xs
        first = timed_cases({key: first_backward_case(build)}, repeats, warmup, note, "backward")
        for mode, times in (("first", first), ("repeated", repeated)):
            for ts in times.values():
                rows.append((key, mode, n_nodes, ops,
                             [t / n_nodes * 1e9 for t in ts], [t / ops * 1e9 for t in ts]))
    gc.collect()
    return rows


# ---------------------------------------------------------------- memory (fresh processes)


def memory_child(system: str, n_terms: int) -> None:
    """Runs in a fresh interpreter: RSS growth while holding a W1 graph (before backward).

    numpy is imported here (by harness), as it always was: its import changes the heap's
    layout, and with it tapegrad's RSS growth by ~0.25 B/node (measured 33.4 vs 33.7)."""
    s = W.SYSTEMS[system]()
    if system == "micrograd":
        gc.disable()  # everything built stays reachable from the root: GC only costs time
    warm_root, _ = W.w1(s.leaf, s.sin, s.exp, s.tanh, 1)  # import/first-call allocations
    del warm_root, _
    gc.collect()
    out = {}
    if system == "tapegrad":
        import tapegrad as tg

        out["tape_before"] = tg._core.tape_stats()
    r0 = rss_bytes()
    root, xs = W.w1(s.leaf, s.sin, s.exp, s.tanh, n_terms)
    gc.collect()
    out["rss_delta"] = rss_bytes() - r0
    if system == "tapegrad":
        out["tape"] = tg._core.tape_stats()
    print(json.dumps(out))


def run_memory_child(system: str, n_terms: int) -> dict | str:
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            "import compare_core; compare_core.memory_child(sys.argv[1], int(sys.argv[2]))")
    cmd = [sys.executable, "-c", code, system, str(n_terms)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        return f"failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_memory(systems: dict, n_big: int, n_peer: int):
    rows = []
    for name, n_ops in [("tapegrad", n_big)] + [(s, n_peer) for s in systems]:
        n_terms = W.w1_terms(n_ops)
        res = run_memory_child(name, n_terms)
        rows.append((name, n_terms, res))
    return rows


# ---------------------------------------------------------------- W1 end to end


def w1_case(s, n_terms: int, gc_off: bool = False):
    def case():
        gc.collect()  # untimed: start every run from the same heap state
        if gc_off:
            gc.disable()
        t0 = time.perf_counter()
        root, xs = s.run_w1(n_terms)
        t1 = time.perf_counter()
        if gc_off:
            gc.enable()
        del root, xs  # untimed teardown
        return t1 - t0

    return case


def float_w1_case(n_terms: int):
    pf = W.system_python_float()

    def case():
        t0 = time.perf_counter()
        W.w1(pf.leaf, pf.sin, pf.exp, pf.tanh, n_terms)
        return time.perf_counter() - t0

    return case


def bench_w1(systems: dict, n_terms: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    cases = {}
    for name, s in systems.items():
        s.prepare_w1(n_terms)
        cases[name] = w1_case(s, n_terms)
        if name == "micrograd":
            cases["micrograd (GC off)"] = w1_case(s, n_terms, gc_off=True)
    cases["python float (forward only)"] = float_w1_case(n_terms)
    # No trial run here: check_w1 already ran every system once (and dropped failures).
    cases = {name: H.Case(fn, self_timed=True) for name, fn in cases.items()}
    H.run_cases(cases, repeats, warmup, try_first=False)
    return {name: c.wall for name, c in cases.items()}


# ---------------------------------------------------------------- main


def add_arguments(ap) -> None:
    ap.add_argument("--w1-ops", type=int, help="W1 size for the end-to-end race (default 1e5)")


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = dict(SIZES[mode])
    if getattr(opts, "w1_ops", None):
        cfg["w1_ops"] = opts.w1_ops
    names = ["tapegrad", "tapegrad.reference"] + [p for p in ("micrograd", "torch") if p in opts.peers]
    systems, missing = W.load_systems(names)
    if "tapegrad" not in systems:
        raise RuntimeError(f"tapegrad itself is not importable: {missing['tapegrad']}")
    n_terms = W.w1_terms(cfg["w1_ops"])
    n_w1_ops = W.w1_op_count(n_terms)
    frozen = H.freeze_imports()
    peer_modules = {"torch": sys.modules["torch"]} if "torch" in systems else {}
    rep.environment(peer_modules, missing, frozen)
    rep.say(f"- micrograd: sys.setrecursionlimit({W.micrograd_recursion_limit(n_terms)}) for "
            f"W1 (its backward recurses once per level of depth; W1 depth ~{n_terms}); "
            "sin/exp/tanh for micrograd written in its own closure style (0.1.0 has none)")
    rep.say(f"- W1: {n_w1_ops} ops ({n_terms} terms of 11 ops + running sum), 8 shared leaves, "
            f"{W.w1_tape_nodes(n_terms)} tapegrad nodes incl. leaves and lifted constants")
    rep.say(f"- repeats: eager {cfg['eager_repeats']}, backward {cfg['bwd_repeats']}, "
            f"W1 {cfg['w1_repeats']}; each after {cfg['eager_warmup'] + 1}/{cfg['bwd_warmup'] + 1}/"
            f"{cfg['w1_warmup'] + 2} untimed warm-up runs; medians, (min–max)")

    verdict = check_w1(systems, n_terms, rep.note)
    bad = [k for k, v in verdict.items() if "MISMATCH" in v]
    rep.table(["system", "check"], [[k, v] for k, v in verdict.items()],
              title="Agreement (W1 value + 8 leaf grads vs tapegrad, rel 1e-9)")
    for name in bad:
        rep.fail(f"{name} disagrees with tapegrad on W1; its timings are flagged")

    eager, eager_ok, ops_per_round = rep.section("eager", bench_eager, systems, cfg["eager_loops"],
                                                 cfg["eager_repeats"], cfg["eager_warmup"], rep.note)
    bwd = rep.section("backward", bench_backward, systems, cfg["bwd_big"], cfg["bwd_ref"],
                      cfg["bwd_repeats"], cfg["bwd_warmup"], rep.note)
    mem = rep.section("memory", bench_memory, systems, cfg["mem_big"], cfg["mem_peer"])
    w1t = rep.section("W1", bench_w1, systems, n_terms, cfg["w1_repeats"], cfg["w1_warmup"])
    # ---- summary against targets
    summary = []
    for op in W.EAGER_OPS:
        tg_ns = eager[op]["tapegrad"]
        is_target = op in ("Var*Var", "Var+Var", "Var*float", "Var+float", "float*Var")
        summary.append([f"eager build `{op}` (ns/op, tape append incl.)", spread(tg_ns),
                        f"≤ {TARGET_EAGER_NS:.0f}" if is_target else "(info)",
                        met(med(tg_ns) <= TARGET_EAGER_NS) if is_target else "—"])
    for key, sweep, n_nodes, ops, per_node, _ in bwd:
        if key.startswith("tapegrad "):
            verdict_row = sweep == "first"
            summary.append([f"backward ({sweep}), {key.split()[1]} {n_nodes} nodes (ns/node)",
                            spread(per_node), f"≤ {TARGET_BACKWARD_NS:.0f}" if verdict_row else "(info)",
                            met(med(per_node) <= TARGET_BACKWARD_NS) if verdict_row else "—"])
    tg_mem = mem[0][2]
    if isinstance(tg_mem, dict):
        t = tg_mem["tape"]
        used = t["bytes_per_node"]
        rss_pn = tg_mem["rss_delta"] / t["size"]
        alloc_pn = t["bytes"] / t["size"]
        summary.append([f"memory, W1 {t['size']} nodes (bytes/node): RSS growth", fmt(rss_pn),
                        f"≤ {TARGET_BYTES:.0f}", met(rss_pn <= TARGET_BYTES)])
        summary.append(["memory: tape arrays per node (used)", fmt(used), f"≤ {TARGET_BYTES:.0f}",
                        met(used <= TARGET_BYTES)])
        summary.append(["memory: tape capacity / size (growth slack incl.)", fmt(alloc_pn),
                        "(info)", "—"])
    tg_w1 = med(w1t["tapegrad"])
    for peer, target in (("micrograd", TARGET_VS_MICROGRAD), ("torch", TARGET_VS_TORCH)):
        if peer in w1t:
            ratio = med(w1t[peer]) / tg_w1
            summary.append([f"W1 {n_w1_ops} ops build+backward: {peer} / tapegrad",
                            f"{fmt(ratio)}×", f"≥ {target:.0f}×", met(ratio >= target)])
        else:
            summary.append([f"W1 build+backward: {peer} / tapegrad", "peer missing",
                            f"≥ {target:.0f}×", "not measured"])
    rep.table(["target", "tapegrad: median (min–max)", "target", "met"], summary, title="Targets")
    rep.data["targets"] = summary

    # ---- details
    eager_title = (f"Eager build, ns per op ({ops_per_round} ops per round, `z = z ⊕ y` chain "
                   f"unrolled {W.UNROLL}×; tape capacity kept between rounds)")
    cols = ["python float", "tapegrad", "tapegrad.reference"]
    cols = [c for c in cols if c in eager["Var*Var"]]
    rows = []
    for op in W.EAGER_OPS:
        r = eager[op]
        row = [op] + [spread(r[c]) for c in cols]
        row.append(f"{fmt(med(r['tapegrad']) / med(r['python float']))}×")
        if "tapegrad.reference" in r:
            row.append(f"{fmt(med(r['tapegrad.reference']) / med(r['tapegrad']))}×")
        row.append("ok" if eager_ok[op] else "**MISMATCH**")
        rows.append(row)
    if "tapegrad (fresh tape)" in eager["Var*Var"]:
        r = eager["Var*Var"]["tapegrad (fresh tape)"]
        rows.append(["Var*Var, fresh tape each round (growth incl.)", "", spread(r)]
                    + [""] * (len(cols) - 2) + [f"{fmt(med(r) / med(eager['Var*Var']['python float']))}×"]
                    + ([""] if "tapegrad.reference" in cols else []) + [""])
    hdr = ["op"] + [f"{c} ns/op" for c in cols] + ["tapegrad / float"]
    if "tapegrad.reference" in cols:
        hdr.append("reference / tapegrad")
    hdr.append("same value")
    rep.table(hdr, rows, title=eager_title)
    rep.say("\n`Var⊕float` and `float*Var` append 2 nodes (a lifted constant + the op).")

    def tg_per_node(kind, sweep):
        return next((b[4] for b in bwd if b[0] == f"tapegrad {kind}" and b[1] == sweep), [math.nan])

    rows = [[key, sweep, n_nodes, ops, spread(pn), spread(po),
             f"{fmt(med(pn) / med(tg_per_node(key.split()[1], sweep)))}×"]
            for key, sweep, n_nodes, ops, pn, po in bwd]
    rep.table(["graph", "backward", "nodes", "ops", "ns/node", "ns/op",
               "× tapegrad ns/node (same kind)"], rows,
              title="Backward only (first: a freshly built graph's first backward, graph build "
                    "untimed; repeated: backward again on one graph, adjoint reset included)")

    rows = []
    for name, nt, res in mem:
        if isinstance(res, str):
            rows.append([name, W.w1_op_count(nt), res, "", "", ""])
            continue
        ops = W.w1_op_count(nt)
        per_node = res["rss_delta"] / res["tape"]["size"] if "tape" in res else float("nan")
        tape = (f"{res['tape']['bytes']} B for {res['tape']['size']} nodes "
                f"(cap {res['tape']['capacity']}, {res['tape']['bytes_per_node']} B/node used)"
                if "tape" in res else "")
        rows.append([name, ops, fmt(res["rss_delta"] / 2**20), fmt(res["rss_delta"] / ops),
                     fmt(per_node), tape])
    rep.table(["system", "W1 ops", "RSS growth MiB", "bytes/op", "bytes/node", "tape_stats"], rows,
              title="Memory (fresh interpreter per row; RSS growth while holding the W1 graph, "
                    "before backward)")
    rep.say("\nmicrograd's memory row is built with GC disabled (everything stays reachable).")

    rows = []
    for name, ts in w1t.items():
        base = name.split(" (")[0]
        rows.append([name, spread(ts, 1e3), fmt(med(ts) / n_w1_ops * 1e6),
                     f"{fmt(med(ts) / tg_w1)}×", H.paired(ts, w1t["tapegrad"]), verdict.get(base, "")])
    rep.table(["system", "ms median (min–max)", "µs/op", "× tapegrad time (ratio of medians)",
               "per-repeat ratio range", "check"], rows,
              title=f"W1 end to end: build + backward, {n_w1_ops} ops (ms; µs per op)")
    rep.say("\nTimed: leaf creation + graph build + backward. Untimed: a gc.collect() before each "
            "run and freeing the graph after it. micrograd (GC off) disables the cyclic GC "
            "during the timed run only (a note: micrograd's default is GC on).")


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["core"] + sys.argv[1:]))
