"""The C++ tape's memory and threading contract (tape per thread, reclamation, limits),
plus a concurrency check that runs on both backends."""
import gc
import importlib
import math
import random
import sys
import threading
import time

import pytest
from helpers import in_new_thread

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
reference = importlib.import_module("tapegrad.reference")


def size():
    return core.tape_stats()["size"]


DATA = [(i / 10, 3 * i / 10 - 1) for i in range(10)]  # y = 3x - 1


def test_tape_stats():
    def fresh():
        before = core.tape_stats()
        x = tg.Var(1.0)
        y = x * 2.0
        return before, core.tape_stats(), y.value
    before, after, _ = in_new_thread(fresh)
    assert before["size"] == 0  # a new thread starts a new, empty tape
    assert after["size"] == 3 and after["capacity"] >= 3 and after["bytes"] > 0


def test_a_new_threads_tape_starts_on_the_memory_of_a_freed_one():
    def build():
        v = tg.Var(0.5)
        for _ in range(20_000):
            v = tg.sin(v)
        return core.tape_stats()["capacity"]

    def start():
        before = core.tape_stats()["capacity"]  # (the first Var frees the finished tape)
        x = tg.Var(2.0)
        y = x * x
        y.backward()
        return before, core.tape_stats()["capacity"], y.value, x.grad

    built = in_new_thread(build)  # the thread ends and its last Var is gone
    assert built > 20_000
    # Thread.join() returns before the finished thread's C++ thread-exit code has handed
    # its tape over, so the next thread or two may start before it arrives (their own
    # smaller memories then go to the spare, which keeps the larger).
    for _ in range(200):
        _, capacity, value, grad = in_new_thread(start)
        assert (value, grad) == (4.0, 4.0)
        if capacity >= built:  # (or a larger one freed earlier)
            break
        time.sleep(0.01)
    assert capacity >= built


def test_training_loop_memory_is_bounded():
    def train(steps):
        w, b = tg.Var(0.0), tg.Var(0.0)  # the parameters, made once

        def step(x, y):
            loss = (w * x + b - y) ** 2
            loss.backward()
            for p in (w, b):
                p.value -= 0.05 * p.grad
                p.grad = 0.0
            return loss.value, size()

        largest = 0
        for k in range(steps):
            loss, n = step(*DATA[k % len(DATA)])
            largest = max(largest, n)
        return largest, size(), w.value, b.value, loss

    largest, final, w, b, loss = in_new_thread(train, 100_000)
    assert largest <= 2 + 7  # the parameters and one step's graph
    assert final == 2
    assert math.isclose(w, 3.0, rel_tol=1e-9) and math.isclose(b, -1.0, rel_tol=1e-9)
    assert loss < 1e-20


def test_training_loop_that_keeps_the_last_loss_is_bounded():
    # The usual loop keeps `loss` alive until the next step has built its graph on top.
    # The previous step's nodes are then unreachable from any live Var but sit below a
    # live one, so the top-of-tape trim cannot drop them: compaction does, once the tape
    # has grown by max(2 x what survived the last compaction, 4096) nodes. So the tape
    # stays under (live nodes) + 4096 however many steps run.
    def train(steps):
        w, b = tg.Var(0.0), tg.Var(0.0)
        largest = 0
        for k in range(steps):
            x, y = DATA[k % len(DATA)]
            loss = (w * x + b - y) ** 2
            loss.backward()
            for p in (w, b):
                p.value -= 0.05 * p.grad
                p.grad = 0.0
            largest = max(largest, size())
        return largest, loss.value

    largest, loss = in_new_thread(train, 10_000)  # 70,000 nodes without compaction
    assert loss < 1e-10
    assert largest <= 4096 + 2 + 2 * 7  # slack, parameters, the kept loss, the new graph


def test_nodes_are_reclaimed_when_vars_die():
    def work():
        x, c = tg.Var(1.0), tg.Var(2.0)
        y = x
        for _ in range(1000):
            y = y * c
        grown = size()
        keep = y
        for _ in range(1000):
            y = y + c
        both = size()
        del y
        after_top = size()  # only keep's graph remains
        del keep
        return grown, both, after_top, size(), x.value
    grown, both, after_top, final, x = in_new_thread(work)
    assert grown >= 1002 and both >= grown + 1000
    assert after_top == grown
    assert final == 2 and x == 1.0


def test_vars_are_not_tracked_by_the_gc():
    x = tg.Var(1.0)
    y = x * 2.0 + x.sin()
    assert not gc.is_tracked(x)
    assert not gc.is_tracked(y)
    assert not any(gc.is_tracked(p) for p in y.inputs)


def test_vars_from_different_tapes_do_not_mix():
    a = tg.Var(1.0)
    b = in_new_thread(lambda: tg.Var(2.0) * 1.0)  # outlives its thread
    for combine in (lambda: a + b, lambda: b * a, lambda: a.maximum(b),
                    lambda: tg.mul(a, b), lambda: a ** b, lambda: b / a):
        with pytest.raises(ValueError, match="different tapes"):
            combine()
    c = b * 3.0  # an op with one Var goes on that Var's tape, from any thread
    c.backward()
    assert (c.value, b.grad, b.inputs[0].grad) == (6.0, 3.0, 3.0)


def test_tape_node_limit():
    tg.Var(0.0)  # the calling thread's tape exists before the limit changes
    previous = core._set_max_nodes(100)
    try:
        def fill():
            keep = [tg.Var(float(i)) for i in range(100)]
            with pytest.raises(OverflowError, match="tape is full"):
                tg.Var(0.0)
            with pytest.raises(OverflowError, match="tape is full"):
                keep[0] * keep[1]
            del keep[-1]  # the top node dies: one free slot
            with pytest.raises(OverflowError, match="tape is full"):
                keep[0] + 1.0  # needs two nodes: the constant and the sum
            z = keep[0] + keep[1]
            z.backward()
            return z.value, keep[0].grad, size()
        assert in_new_thread(fill) == (1.0, 1.0, 100)
        big = [tg.Var(1.0) for _ in range(200)]  # this thread's tape keeps its own limit
        assert len(big) == 200
    finally:
        assert core._set_max_nodes(previous) == 100
    assert in_new_thread(lambda: len([tg.Var(1.0) for _ in range(200)])) == 200


def random_graph(backend, seed, steps=1500):
    """A deterministic random graph with shared nodes: repr of (value, leaf grads)."""
    r = random.Random(seed)
    table = backend.ops()
    leaves = [backend.Var(r.uniform(-2, 2)) for _ in range(5)]
    nodes = list(leaves)
    for _ in range(steps):
        op, arity = r.choice(table)
        pool = nodes[-20:] + leaves
        args = [r.choice(pool).sigmoid() + 0.1 for _ in range(arity)]  # in (0.1, 1.1)
        if arity == 2 and r.random() < 0.2:
            args[1] = r.choice((0.5, 1.5))
        out = getattr(backend, op)(*args)
        if math.isfinite(out.value):  # outside an op's domain (acosh(0.5), ...): not used
            nodes.append(out)
    root = (sum(nodes[-10:], nodes[-11]) * 0.05).tanh()
    root.backward()
    return repr([root.value] + [x.grad for x in leaves])


def test_threads_get_the_same_results_as_serial_runs(backend):
    seeds = range(4)
    serial = [random_graph(backend, s) for s in seeds]
    results = [None] * len(seeds)
    barrier = threading.Barrier(len(seeds))

    def work(i):
        barrier.wait()
        results[i] = [random_graph(backend, seeds[i]) for _ in range(3)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads often
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(seeds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert results == [[s] * 3 for s in serial]
    assert len(set(serial)) == len(serial) and "nan" not in "".join(serial)


def test_the_backends_expose_the_same_api():
    assert tg.ops() == reference.ops()
    # Tracing, transforms, pictures and diagnostics are built on the C++ engine only.
    assert sorted(set(tg.__all__) - set(tg._ENGINE_ONLY)) == sorted(reference.__all__)

    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")}
    assert public(tg.Var) == public(reference.Var)


def test_ids_hashes_and_values_survive_compaction():
    # Garbage below a live node makes the tape compact (once it has grown by 4096 nodes):
    # the live nodes move down, and every Var must still see its own node, with the same
    # id and hash, so dicts keyed by Vars keep working.
    def work():
        x = tg.Var(2.0)
        dead = [x * float(k) for k in range(10)]  # garbage below `keep`
        keep = [x * 3.0, x + 1.0]
        before = {v: (v.id, hash(v), v.value) for v in keep}
        top_before = core.tape_stats()["size"]
        del dead
        for _ in range(3000):  # ~6000 appends: past the compaction threshold
            t = x * 1.5
            del t
            z = keep[0] + 1.0  # a live node above, so the trim alone cannot drop garbage
        shrunk = core.tape_stats()["size"] < top_before + 6000
        after = {v: (v.id, hash(v), v.value) for v in keep}
        f = keep[0] * keep[1]
        f.backward()
        return before == after, shrunk, x.grad, z.value, before[keep[0]] == after[keep[0]]
    same, shrunk, grad, z, lookup = in_new_thread(work)
    assert same and lookup and shrunk
    assert grad == 6 * 2.0 + 3  # d/dx (3x)(x + 1) = 6x + 3 at x = 2
    assert z == 7.0
