"""Benchmarks for the core engine's performance targets (eager build, backward, memory, W1).

Groups: eager-build (ns/op), backward (ns/node), memory (bytes/node, in extra_info),
w1-end-to-end (100k-op W1 build + backward on tapegrad, its reference, micrograd, torch).
Nothing here asserts a timing; the assertions check that every system computes the same
thing. Side-by-side ratios with verdicts: `python bench/compare.py core`.
"""
from __future__ import annotations

import gc
import math
import threading
import tracemalloc

import pytest
import workloads as W
from harness import collect, record_per_unit, rss_bytes

W1_OPS = 100_000
REL_TOL = 1e-9


def assert_agrees(got: tuple[float, list[float]], want: tuple[float, list[float]]) -> None:
    (value, grads), (want_value, want_grads) = got, want
    assert W.rel_err(value, want_value) <= REL_TOL, (value, want_value)
    assert len(grads) == len(want_grads)
    for g, w in zip(grads, want_grads):
        assert W.rel_err(g, w) <= REL_TOL, (grads, want_grads)


# ---------------------------------------------------------------- eager build

EAGER_LOOPS = 1_000  # x UNROLL ops per round


@pytest.fixture(params=["python-float", "cpp", "reference"])
def eager_backend(request):
    if request.param == "python-float":
        return request.param, float
    if request.param == "reference":
        pytest.importorskip("tapegrad.reference")
        return request.param, W.system_reference().leaf
    return request.param, W.system_tapegrad().leaf


@pytest.mark.benchmark(group="eager-build")
@pytest.mark.parametrize("op", list(W.EAGER_OPS))
def test_eager_build(benchmark, eager_backend, op):
    """`z = z ⊕ y` chained EAGER_LOOPS * UNROLL times per round, tape append included."""
    name, leaf = eager_backend
    expr, float_expr = W.EAGER_OPS[op]
    kernel = W.make_eager_kernel(float_expr if name == "python-float" else expr)
    n_ops = EAGER_LOOPS * W.UNROLL

    def build():
        return kernel(leaf(1.5), leaf(1.0), EAGER_LOOPS)

    z = benchmark(build)
    want = W.make_eager_kernel(float_expr)(1.5, 1.0, EAGER_LOOPS)
    assert W.rel_err(float(z), want) <= REL_TOL
    benchmark.extra_info["ops_per_round"] = n_ops
    benchmark.extra_info["tape_nodes_per_op"] = 2 if "float" in op and name != "python-float" else 1
    record_per_unit(benchmark, "ns_per_op", n_ops)


# ---------------------------------------------------------------- backward

BACKWARD_GRAPHS = [
    pytest.param("cpp", "W1", 1_000_000, id="cpp-W1-1e6"),
    pytest.param("cpp", "W1", 100_000, id="cpp-W1-1e5"),
    pytest.param("cpp", "chain", 1_000_000, id="cpp-chain-1e6"),
    pytest.param("reference", "W1", 100_000, id="reference-W1-1e5"),
    pytest.param("reference", "chain", 100_000, id="reference-chain-1e5"),
]


@pytest.mark.benchmark(group="backward")
@pytest.mark.parametrize("mode", ["first", "repeated"])
@pytest.mark.parametrize(("which", "graph", "n_ops"), BACKWARD_GRAPHS)
def test_backward(benchmark, which, graph, n_ops, mode, w1_oracle):
    """Backward only. first: a freshly built graph's first backward (build untimed);
    repeated: backward again on one graph (non-leaf adjoints are reset each time)."""
    if which == "reference":
        pytest.importorskip("tapegrad.reference")
    s = W.system_reference() if which == "reference" else W.system_tapegrad()
    if which == "cpp":
        import tapegrad as tg

        # backward(root) sweeps every tape node below root: nothing else may be there
        assert tg._core.tape_stats()["size"] == 0, "an older graph is still alive on the tape"
    n_terms = W.w1_terms(n_ops)
    if graph == "W1":
        nodes, ops = W.w1_tape_nodes(n_terms), W.w1_op_count(n_terms)

        def build():
            return W.w1(s.leaf, s.sin, s.exp, s.tanh, n_terms)
    else:
        nodes, ops = n_ops + 2, n_ops

        def build():
            return W.chain(s.leaf, n_ops)

    if mode == "first":
        built: list = []

        def setup():  # no args returned: pedantic would keep the previous root alive
            built.clear()  # so the new graph is not stacked above the old one
            built.append(build())
            if which == "cpp":
                assert tg._core.tape_stats()["size"] == nodes

        benchmark.pedantic(lambda: built[0][0].backward(), setup=setup,
                           rounds=10 if which == "cpp" else 3)
        (root, xs), runs = built[0], 1
    else:
        root, xs = build()
        benchmark(root.backward)
        runs = None

    if graph == "W1":
        value, grads = s.result(root, xs)
        want_value, want_grads = w1_oracle(n_terms)
        runs = runs or round(grads[0] / want_grads[0])  # leaf grads accumulate over rounds
        assert runs >= 1
        assert_agrees((value, [g / runs for g in grads]), (want_value, want_grads))
    benchmark.extra_info.update(nodes=nodes, ops=ops)
    record_per_unit(benchmark, "ns_per_node", nodes)
    record_per_unit(benchmark, "ns_per_op", ops)


# ---------------------------------------------------------------- memory


def in_fresh_thread(fn):
    """Run fn in a new thread: tapegrad gives it a fresh, empty tape."""
    out: list = []
    th = threading.Thread(target=lambda: out.append(fn()))
    th.start()
    th.join()
    assert out, "the measuring thread failed"
    return out[0]


@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize(
    ("which", "n_ops"),
    [pytest.param("cpp", 1_000_000, id="cpp-W1-1e6"), pytest.param("cpp", 100_000, id="cpp-W1-1e5"),
     pytest.param("reference", 100_000, id="reference-W1-1e5")],
)
def test_memory(benchmark, which, n_ops):
    """Bytes per node of a W1 graph held alive (extra_info; nothing asserted on size)."""
    if which == "reference":
        pytest.importorskip("tapegrad.reference")
    s = W.system_reference() if which == "reference" else W.system_tapegrad()
    n_terms = W.w1_terms(n_ops)
    nodes = W.w1_tape_nodes(n_terms)

    def build():
        gc.collect()
        r0 = rss_bytes()
        root, xs = W.w1(s.leaf, s.sin, s.exp, s.tanh, n_terms)
        info = {"rss_delta_bytes_per_node": (rss_bytes() - r0) / nodes}
        if which == "cpp":
            import tapegrad as tg

            stats = tg._core.tape_stats()
            assert stats["size"] == nodes
            info.update(tape_bytes=stats["bytes"], tape_size=stats["size"],
                        tape_capacity=stats["capacity"],
                        tape_bytes_per_node_allocated=stats["bytes"] / stats["size"],
                        tape_bytes_per_node_used=stats["bytes_per_node"])
        del root, xs
        return info

    def traced():
        gc.collect()
        tracemalloc.start()
        try:
            root, xs = W.w1(s.leaf, s.sin, s.exp, s.tanh, n_terms)
            size, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del root, xs
        return size

    info = benchmark.pedantic(in_fresh_thread, args=(build,), rounds=1, iterations=1)
    info["tracemalloc_python_heap_bytes_per_node"] = in_fresh_thread(traced) / nodes
    info["nodes"] = nodes
    assert all(math.isfinite(v) for v in info.values())
    benchmark.extra_info.update(info)


# ---------------------------------------------------------------- W1 end to end

W1_SYSTEMS = {
    "tapegrad": (None, 20),
    "tapegrad.reference": ("tapegrad.reference", 3),
    "micrograd": ("micrograd", 3),
    "torch": ("torch", 3),
}


@pytest.mark.benchmark(group="w1-end-to-end")
@pytest.mark.parametrize("name", list(W1_SYSTEMS))
def test_w1_end_to_end(benchmark, name, w1_oracle, restore_recursion_limit):
    """W1 (100k ops) built op by op from Python, then backward; GC on (the default)."""
    module, rounds = W1_SYSTEMS[name]
    if module:
        pytest.importorskip(module)
    s = W.SYSTEMS[name]()
    n_terms = W.w1_terms(W1_OPS)
    s.prepare_w1(n_terms)  # micrograd: recursion limit for its recursive topo sort
    root, xs = benchmark.pedantic(s.run_w1, args=(n_terms,), setup=collect,
                                  rounds=rounds, warmup_rounds=1 if rounds > 3 else 0)
    assert_agrees(s.result(root, xs), w1_oracle(n_terms))
    ops = W.w1_op_count(n_terms)
    benchmark.extra_info["ops"] = ops
    record_per_unit(benchmark, "ns_per_op", ops)


@pytest.mark.benchmark(group="w1-end-to-end")
def test_w1_python_float_floor(benchmark, w1_oracle):
    """W1 forward on plain floats: what the interpreter alone costs."""
    s = W.system_python_float()
    n_terms = W.w1_terms(W1_OPS)
    value, _ = benchmark(W.w1, s.leaf, s.sin, s.exp, s.tanh, n_terms)
    assert W.rel_err(value, w1_oracle(n_terms)[0]) <= REL_TOL
    record_per_unit(benchmark, "ns_per_op", W.w1_op_count(n_terms))
