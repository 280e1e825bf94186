"""The eager tape's garbage: backward() and memory follow the live graph, not history.

Mechanism tests through introspection (tape_stats, _sweep_nodes, _tape_check), never timing;
the speed ratios live in bench/eager_tape.py.
"""
import importlib
import math
import sys

import pytest
from helpers import in_new_thread
from hypothesis import given
from hypothesis import strategies as st

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
reference = importlib.import_module("tapegrad.reference")

N_PARAMS = 10


def build(w, n_ops):
    acc = w[0] * w[1]
    for k in range(n_ops):
        acc = acc + w[k % N_PARAMS] * 0.5
    return acc


def graph_nodes(v):
    """Nodes in v's graph but its Var() leaves: what a sweep that visits only the live
    graph would visit."""
    seen, stack = set(), [v]
    while stack:
        u = stack.pop()
        if u.id not in seen and u.op != "leaf":
            seen.add(u.id)
            stack.extend(u.inputs)
    return len(seen)


@pytest.mark.parametrize("n_ops", [5, 100, 5000])
def test_idiom_backward_visits_only_the_new_graph(n_ops):
    # `loss = build(w)` keeps the old loss alive while the new graph is built, so the old
    # graph dies below the new one; backward() must not sweep it.
    def work():
        w = [tg.Var(0.1 * i) for i in range(N_PARAMS)]
        loss = build(w, n_ops)
        sweeps, grads = [], []
        for _ in range(30):
            loss = build(w, n_ops)
            sweeps.append((core._sweep_nodes(loss), graph_nodes(loss)))
            for p in w:
                p.grad = 0.0
            loss.backward()
            grads.append([p.grad for p in w])
            core._tape_check()
        return sweeps, grads, core.tape_stats()

    sweeps, grads, stats = in_new_thread(work)
    assert all(visited <= in_graph for visited, in_graph in sweeps)
    assert all(g == grads[0] for g in grads)  # the same graph each step
    # Compaction starts once garbage reaches twice the live nodes; one more graph may die
    # before the next append.
    assert stats["garbage"] < max(4096, 2 * stats["live"]) + (3 * n_ops + 1)


def test_garbage_is_bounded_by_the_live_graph_after_a_large_graph():
    def work():
        w = [tg.Var(0.1 * i) for i in range(N_PARAMS)]
        big = build(w, 200_000)
        big = None  # dropped on top: the tape empties at once
        after_top_drop = core.tape_stats()
        big = build(w, 200_000)
        above = w[0] * 2.0
        del big  # dropped below a live node: garbage until the next append compacts
        below = core.tape_stats()
        core._tape_check()
        del above
        largest = 0
        loss = None
        for _ in range(2000):
            loss = build(w, 30)
            loss.backward()
            largest = max(largest, core.tape_stats()["size"])
        core._tape_check()
        return after_top_drop, below, largest

    after_top_drop, below, largest = in_new_thread(work)
    assert after_top_drop["size"] == N_PARAMS and after_top_drop["garbage"] == 0
    assert below["garbage"] >= 400_000 - 10  # the whole graph, counted at once
    # Steps of ~62 nodes: the tape never holds more than the floor of 4096 garbage nodes
    # and the graphs in flight (before: up to 3x the largest graph ever compacted).
    assert largest <= 4096 + 4 * 62 + N_PARAMS


def test_capacity_and_pages_are_given_back():
    # The tape's own resident memory (mincore on its mappings), not the process's RSS,
    # which sanitizers' allocators keep high; bench/compare_tape.py measures RSS.
    def work():
        x = tg.Var(1.0)
        v = x
        for _ in range(1_000_000):
            v = v + 1e-9  # 2e6 nodes, ~66 MB of tape
        built = core.tape_stats()
        v = None
        dropped = core.tape_stats()
        y = x * 2.0  # the next append shrinks the capacity
        return built, dropped, core.tape_stats(), y.value

    built, dropped, after, y = in_new_thread(work)
    kept = 1 << 18  # tape::kept_nodes: a loop's working set stays mapped
    kept_mb = kept * built["bytes_per_node"] / 2**20
    assert built["capacity"] >= 2_000_001 and built["resident_bytes"] / 2**20 > 60
    assert dropped["size"] == 1 and dropped["capacity"] == built["capacity"]
    if sys.platform.startswith("linux"):  # pages go back at once where madvise can
        assert dropped["resident_bytes"] / 2**20 < kept_mb + 1
    assert after["capacity"] == kept and after["size"] == 3 and y == 2.0
    assert after["resident_bytes"] / 2**20 < kept_mb + 1


def test_values_ids_and_grads_survive_garbage_compaction():
    def work():
        w = [tg.Var(0.5 + i) for i in range(N_PARAMS)]
        keep = [w[0] * w[1], w[2] + 1.0]
        ids = [(v.id, hash(v), v.value) for v in keep]
        for _ in range(50):
            dead = build(w, 300)  # garbage below the next one
            alive = build(w, 300)
            del dead
            alive.backward()
        stats = core.tape_stats()
        core._tape_check()
        f = keep[0] * keep[1]
        for p in w:
            p.grad = 0.0
        f.backward()
        return ids, [(v.id, hash(v), v.value) for v in keep], [p.grad for p in w[:3]], stats

    before, after, grads, stats = in_new_thread(work)
    assert before == after
    # f = (w0 w1)(w2 + 1) at w = 0.5, 1.5, 2.5
    assert grads == [1.5 * 3.5, 0.5 * 3.5, 0.5 * 1.5]
    assert stats["size"] < 50 * 602  # compacted on the way


def test_intermediate_grads_outside_the_sweep_keep_their_values(backend):
    # backward() resets the non-leaf adjoints it sweeps; an older graph below the new
    # graph's first op is not swept, so its nodes keep the adjoints of their own backward
    # (micrograd never resets; PyTorch keeps no non-leaf grads unless asked).
    x = backend.Var(2.0)
    a = x * 3.0
    a.backward()
    b = x * 5.0
    b.backward()
    assert (a.grad, b.grad, x.grad) == (1.0, 1.0, 8.0)
    b.backward()  # a second call: the same sweep, leaf grads accumulate exactly
    assert (a.grad, b.grad, x.grad) == (1.0, 1.0, 13.0)


OPS = ["add", "mul", "sub", "sin", "tanh", "neg", "detach_", "copy_", "drop", "backward"]


@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 50)),
                min_size=1, max_size=120), st.booleans())
def test_reference_counts_stay_exact(program, no_grad):
    # Random builds, drops and backward sweeps, with and without grad recording: the
    # tape's counts always equal a recount from scratch, and gradients match the reference.
    def run(mod):
        xs = [mod.Var(0.3 * (k + 1)) for k in range(3)]
        live = list(xs)
        grads = []
        for op, i, j in program:
            a, b = live[i % len(live)], live[j % len(live)]
            if op == "drop":
                if len(live) > 3:
                    live.pop(i % len(live))
                continue
            if op == "backward":
                for x in xs:
                    x.grad = 0.0
                a.backward()
                grads.append([x.grad for x in xs])
            elif op == "detach_":
                live.append(a.detach())
            elif op == "copy_":
                live.append(mod.Var(a.value))
            elif op in ("sin", "tanh", "neg"):
                live.append(getattr(mod, op)(a))
            else:
                live.append({"add": a + b, "mul": a * b, "sub": a - b}[op])
            if mod is tg:
                core._tape_check()
        return grads, [v.value for v in live]

    def work():
        if no_grad:  # every op makes a constant: no graph, no gradient
            with tg.no_grad():
                out = run(tg)
        else:
            out = run(tg)
        core._tape_check()
        return out, core.tape_stats()["size"]

    (grads, values), size = in_new_thread(work)
    ref_grads, ref_values = run(reference)
    assert size == 0
    assert all(p == q or math.isclose(p, q, rel_tol=1e-12) or (math.isnan(p) and math.isnan(q))
               for p, q in zip(values, ref_values))
    if no_grad:
        # only a leaf's own seed: one 1.0 when backward() starts at a leaf
        assert all(sorted(g) in ([0.0, 0.0, 0.0], [0.0, 0.0, 1.0]) for g in grads)
    else:
        assert grads == ref_grads


def test_anomaly_error_leaves_counts_exact():
    def work():
        x = tg.Var(-1.0)
        with tg.detect_anomaly():
            with pytest.raises(tg.AnomalyError):
                tg.log(x)
            with tg.no_grad(), pytest.raises(tg.AnomalyError):
                tg.sqrt(x)
        core._tape_check()
        return core.tape_stats()["size"]

    assert in_new_thread(work) == 1
