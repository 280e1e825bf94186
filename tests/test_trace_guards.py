"""Guards: a Python branch, bool() or a value escaping into Python is recorded as a guard;
a replay that would take another branch raises TraceError naming the user's line, or
retraces; while loops; guards survive tape compaction.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import importlib
import math

import numpy as np
import pytest
from helpers import in_new_thread
from trace_helpers import assert_bits

tg = importlib.import_module("tapegrad")

# ---------------------------------------------------------------------------- guards

def test_abs_written_as_a_branch_names_the_comparison():
    f = lambda x: x if x > 0 else -x  # noqa: E731 - a lambda, as users write it
    F = tg.trace(f, 1)
    assert F(2.5) == 2.5 and F.grad(2.5) == 1.0 and F.n_guards == 1
    where = f"{__file__}:{f.__code__.co_firstlineno}"
    for call in (F, F.grad, F.value_and_grad):
        with pytest.raises(tg.TraceError) as err:
            call(-1)
        assert where in str(err.value), str(err.value)
        assert "x if x > 0 else -x" in str(err.value)  # the source line is shown


def test_retrace_evaluates_both_branches():
    f = lambda x: x if x > 0 else -x  # noqa: E731
    F = tg.trace(f, 1.0, retrace=True)
    assert (F(-1.0), F.grad(-1.0)) == (1.0, -1.0)
    assert (F(3.0), F.grad(3.0)) == (3.0, 1.0)
    X = np.array([[-1.5, 2.0, -3.0], [0.5, -0.25, 4.0]])
    values, grads = F.value_and_grad(X)
    assert_bits(values, np.abs(X))
    assert_bits(grads, np.sign(X))
    assert_bits(F(X[::-1, ::2]), np.abs(X[::-1, ::2]))


def test_batch_that_leaves_the_branch_lists_the_points():
    f = lambda x: x if x > 0 else -x  # noqa: E731
    F = tg.trace(f, 1.0)
    with pytest.raises(tg.TraceError) as err:
        F.grad(np.array([1.0, -2.0, 3.0, -4.0]))
    msg = str(err.value)
    assert "2 of 4 points" in msg and "indices 1, 3" in msg, msg
    assert f"{__file__}:{f.__code__.co_firstlineno}" in msg
    X = -np.ones((3, 5))
    X[1, 2] = 1.0
    with pytest.raises(tg.TraceError) as err:
        F(X)
    msg = str(err.value)
    assert "14 of 15 points" in msg and "indices 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, ..." in msg, msg
    assert_bits(F(np.array([1.0, 2.0])), [1.0, 2.0])  # still fine on the traced branch


def test_bool_of_a_var_is_a_guard():
    F = tg.trace(lambda x: x * 2.0 if x else x * 3.0, 2.0)  # bool(x): x != 0
    assert F(-5.0) == -10.0
    with pytest.raises(tg.TraceError):
        F(0.0)
    G = tg.trace(lambda x: x * 2.0 if x else x * 3.0, 0.0)
    assert G(0.0) == 0.0 and G.grad(0.0) == 3.0
    with pytest.raises(tg.TraceError):
        G(1.0)


ESCAPES = {
    "float": float,
    "int": int,
    "value": lambda v: v.value,
    "data": lambda v: v.data,
    "item": lambda v: v.item(),
    "numpy.float64": np.float64,
    "format": lambda v: float(format(v, ".17g")),
}


@pytest.mark.parametrize("escape", list(ESCAPES.values()), ids=list(ESCAPES))
def test_values_escaping_into_python_are_guards(escape):
    def fn(x):
        return x * escape(x * 1.0) + 1.0

    F = tg.trace(fn, 2.0)
    assert (F(2.0), F.grad(2.0)) == (5.0, 2.0)  # the escaped number is a constant: d/dx 2x
    with pytest.raises(tg.TraceError):
        F(3.0)  # the escaped value would differ: never silently reuse 2.0


def test_escaped_nan_value_is_guarded():
    """float() of a NaN while tracing: the recorded guard compares `v == nan`, which is
    False at the trace AND at every replay, so it never fails and the NaN constant is
    silently reused at inputs where v is an ordinary number."""
    def fn(x):
        return x * float(tg.log(x))

    F = tg.trace(fn, -1.0)  # log(-1) = nan escapes
    try:
        got = F(math.e)
    except tg.TraceError:
        return  # detected: fine
    assert got == math.e * float(tg.log(math.e)), f"F(e) = {got}, eager gives e * 1 = {math.e}"


def test_while_loop():
    def doubling(x):
        while x < 10:
            x = x * 2
        return x

    loop_line = doubling.__code__.co_firstlineno + 1
    F = tg.trace(doubling, 1.0)  # 1, 2, 4, 8, 16: four doublings
    assert (F(1.2), F.grad(1.2)) == (1.2 * 16, 16.0)
    with pytest.raises(tg.TraceError, match=f"{__file__}:{loop_line}"):
        F(3.0)  # two doublings
    R = tg.trace(doubling, 1.0, retrace=True)
    X = np.array([1.0, 3.0, 6.0, 20.0, 1.2])
    values, grads = R.value_and_grad(X)
    assert_bits(values, [16.0, 12.0, 12.0, 20.0, 1.2 * 16])
    assert_bits(grads, [16.0, 4.0, 2.0, 1.0, 16.0])


def test_guard_survives_tape_compaction_during_trace():
    """A long fn leaves garbage below live nodes, so the tape compacts while tracing and
    nodes move; the comparison recorded before that must still guard the same node."""
    def fn(x):
        a, b = x.sin(), x.cos()
        del a  # garbage below a live node: compaction will move everything above it
        out = x * 2.0 if x - 1.0 > 0 else x * 3.0
        acc = b
        for _ in range(10000):  # > 4096 appends on a fresh tape: at least one compaction
            junk = x.exp()  # noqa: F841 - garbage between live nodes
            acc = acc + 1.0
        return out + acc * 0.0

    F = in_new_thread(tg.trace, fn, 2.0)
    assert F(2.0) == 4.0
    assert F.n_guards == 1, f"{F.n_guards} guards after tracing one comparison"
    with pytest.raises(tg.TraceError):
        F(0.5)  # x - 1 < 0: the other branch (eager: 0.5 * 3)
