"""The tg.Function object: it outlives eager churn, dead closures and the thread that
traced it; bad call and trace arguments; repr, node counts and the op histogram.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import gc
import importlib
import math

import numpy as np
import pytest
from helpers import in_new_thread, programs
from hypothesis import given, settings
from trace_helpers import OPS, assert_bits, replay, trace_program, vec_fn

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")

# ---------------------------------------------------------------------------- independence

def test_function_survives_eager_churn_and_dead_closures():
    in_new_thread(churn)  # a fresh tape, so its compactions are predictable


def churn():
    holder = [tg.Var(1.5)]
    F = tg.trace(lambda x: tg.sin(x * holder[0]) + holder[0] / x, 0.3)
    points = np.linspace(-2.0, 2.0, 9) + 0.05
    before = [replay(F, (x,)) for x in points]
    batched_before = F.value_and_grad(points)

    holder.clear()  # the closure Var dies
    gc.collect()
    live, made = [], 0
    for i in range(60000):  # garbage between live nodes: the tape compacts again and again
        v = tg.Var(float(i)) * 2.0 + 1.0
        made += 3
        if i % 50 == 0:
            live.append(v)
        if i % 20000 == 0:
            other = tg.trace(lambda x: x * x, 1.0)  # more tracing meanwhile
            assert other(3.0) == 9.0
    assert core.tape_stats()["size"] < made // 2  # compaction happened
    del live
    for x, want in zip(points, before):
        assert_bits(replay(F, (x,)), want)
    after = F.value_and_grad(points)
    assert_bits(after[0], batched_before[0])
    assert_bits(after[1], batched_before[1])


def test_function_traced_in_a_thread_outlives_it():
    F = in_new_thread(lambda: tg.trace(lambda x, y: tg.tanh(x) * y, 0.1, 0.2))
    assert_bits(replay(F, (0.5, 2.0)), [math.tanh(0.5) * 2.0, (1 - math.tanh(0.5) ** 2) * 2.0,
                                        math.tanh(0.5)])


# ---------------------------------------------------------------------------- bad input

def two_args(x, v):
    return x * v[0] + v[1]


@pytest.mark.parametrize("args, error, fragment", [
    ((1.0,), TypeError, "takes 2 argument"),
    ((1.0, np.ones(2), 3.0), TypeError, "takes 2 argument"),
    ((1.0, np.ones(3)), ValueError, "trailing shape (2,)"),
    ((np.ones(3), np.ones((2, 2))), ValueError, "batch dimensions do not broadcast"),
    ((np.ones((2, 1)), np.ones((3, 3, 2))), ValueError, "batch dimensions do not broadcast"),
    ((1.0, 5.0), ValueError, "argument 1"),
    ((object(), np.ones(2)), TypeError, "argument 0"),
    (("abc", np.ones(2)), TypeError, "argument 0"),
    (("1.5", np.ones(2)), TypeError, "argument 0"),  # a numeric string is still a string
    ((None, np.ones(2)), TypeError, "argument 0"),
    (([1.0, None], np.ones(2)), TypeError, "argument 0"),
    ((1.0, [[1.0, 2.0], [3.0]]), (TypeError, ValueError), "argument 1"),
    ((1 + 2j, np.ones(2)), TypeError, "argument 0"),
    ((1.0, {"a": 1}), TypeError, "argument 1"),
])
def test_bad_call_arguments(args, error, fragment):
    F = tg.trace(two_args, 1.0, np.ones(2))
    for call in (F, F.grad, F.value_and_grad):
        with pytest.raises(error) as err:
            call(*args)
        assert fragment in str(err.value), str(err.value)


@pytest.mark.parametrize("fn, examples, fragment", [
    (lambda x: "x", (1.0,), "must return a Var"),
    (lambda x: None, (1.0,), "must return a Var"),
    (lambda x: {"out": x}, (1.0,), "must return a Var"),
    (lambda x: [x, "y"], (1.0,), "returned a str"),
    (lambda x: x, (tg.Var(1.0),), "is a Var"),
    (lambda x: x, ("abc",), "example argument 0"),
    (lambda x: x, (None,), "example argument 0"),
    (lambda x: x, (1 + 2j,), "example argument 0"),
    (42, (1.0,), "callable"),
])
def test_bad_trace_arguments(fn, examples, fragment):
    with pytest.raises(TypeError) as err:
        tg.trace(fn, *examples)
    assert fragment in str(err.value), str(err.value)


# ---------------------------------------------------------------------------- insight

def test_repr_node_counts_and_histogram():
    def scaled_sine(x, v):
        t = x * v[0]
        return tg.sin(t) + t * 2.0 + (v[1] if v[1] > 0 else -v[1])

    F = tg.trace(scaled_sine, 0.5, np.ones(3))
    assert F.ops_histogram() == {"mul": 2, "sin": 1, "add": 2}
    assert sum(F.ops_histogram().values()) == F.n_ops == 5
    assert F.n_nodes == 4 + 2 + 5  # inputs (1 + 3), constants (2.0 and the guard's 0), ops
    assert F.n_guards == 1
    assert repr(F) == ("<tapegrad.Function scaled_sine(scalar, 3) -> scalar: "
                       f"{F.n_nodes} nodes, 5 ops, 1 guards>")
    V = tg.trace(vec_fn, np.zeros(3))
    assert "vec_fn(3) -> 4:" in repr(V)
    assert sum(V.ops_histogram().values()) == V.n_ops


@settings(max_examples=60)
@given(program=programs(OPS))
def test_histogram_sums_to_the_op_count(program):
    for cse in (True, False):
        F = trace_program(program, cse=cse)
        h = F.ops_histogram()
        assert sum(h.values()) == F.n_ops and set(h) <= {op for op, _ in OPS}
        assert F.n_nodes >= F.n_ops + len(program[0])
        assert F.n_ops <= len(program[1])


def test_inputs_that_are_outputs_stay_inputs():
    """An input returned as an output (or compared in a guard) is still read from the
    call's arguments, never frozen at its trace-time value."""
    F = tg.trace(lambda x, y: (x, x * y, y), 1.0, 2.0)
    assert_bits(F(3.0, 4.0), [3.0, 12.0, 4.0])
    jx, jy = F.jacobian(3.0, 4.0)
    assert_bits(list(jx) + list(jy), [1.0, 4.0, 0.0, 0.0, 3.0, 1.0])
    G = tg.trace(lambda x: x, np.zeros(3))
    assert_bits(G(np.arange(3.0)), [0.0, 1.0, 2.0])
    H = tg.trace(lambda x: x if x > 0 else -x, 1.0, retrace=True)
    assert H(-2.5) == 2.5 and H(4.0) == 4.0
