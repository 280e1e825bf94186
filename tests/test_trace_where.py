"""tg.where: branch-free selection that replays correctly at any point, with the gradient
on the chosen side only and no NaN leaking from the other.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import importlib
import math

import numpy as np
import pytest
from trace_helpers import assert_bits, replay

tg = importlib.import_module("tapegrad")

# ---------------------------------------------------------------------------- where

def test_where_is_branch_free_with_gradient_on_the_chosen_side():
    def fn(x):
        return tg.where(tg.gt(x, 0), x * x, 3.0 * x)

    F = tg.trace(fn, 1.0)
    assert F.n_guards == 0
    for x in (2.0, -2.0, 0.0, 1e-300):
        X = tg.Var(x)
        out = fn(X)
        out.backward()
        want = (x * x, 2 * x) if x > 0 else (3.0 * x, 3.0)
        assert_bits(replay(F, (x,)), want)
        assert_bits(replay(F, (x,)), [out.value, X.grad])
    # where() is if_true(c, a) + if_false(c, b): the unchosen half is +0.0, so a chosen -0.0
    # comes back as +0.0 (equal, not bit-equal)
    assert F(-0.0) == 0.0 and F.grad(-0.0) == 3.0
    X = np.array([2.0, -2.0, 0.0, 0.5])
    values, grads = F.value_and_grad(X)
    assert_bits(values, np.where(X > 0, X * X, 3.0 * X))
    assert_bits(grads, np.where(X > 0, 2 * X, 3.0))


@pytest.mark.parametrize("cmp, numpy_cmp", [(tg.lt, np.less), (tg.le, np.less_equal),
                                           (tg.gt, np.greater), (tg.ge, np.greater_equal)])
def test_where_with_each_comparison(cmp, numpy_cmp):
    F = tg.trace(lambda x, y: tg.where(cmp(x, y), x - y, y * 2.0), 0.0, 0.0)
    X = np.array([-1.0, 0.0, 1.0, 2.0, np.nan])[:, None]
    Y = np.array([0.0, 1.0, np.inf])
    values, (gx, gy) = F.value_and_grad(X, Y)
    chosen = numpy_cmp(X, Y)
    assert_bits(values, np.where(chosen, X - Y, Y * 2.0))
    assert_bits(gx, np.broadcast_to(np.where(chosen, 1.0, 0.0), values.shape))
    assert_bits(gy, np.where(chosen, -1.0, 2.0))


def test_where_does_not_leak_nan_from_the_unchosen_side():
    """where(x > 0, sqrt(x), 0) at x = -1: sqrt(-1) = nan is computed but not chosen. The
    engine gives value 0 AND grad 0: if_true's rule hands the sqrt node an adjoint of
    exactly 0 (no NaN arithmetic), and zero adjoints are skipped, so sqrt's rule
    1/(2*nan) never runs. (PyTorch's where gives grad nan here: 0 * nan.)"""
    def fn(x):
        return tg.where(tg.gt(x, 0), tg.sqrt(x), 0.0) + tg.where(tg.lt(x, 0), x, tg.log(x))

    F = tg.trace(fn, 4.0)
    X = tg.Var(-1.0)
    out = fn(X)
    out.backward()
    assert (out.value, X.grad) == (-1.0, 1.0)  # eager: the same
    assert (F(-1.0), F.grad(-1.0)) == (-1.0, 1.0)
    values, grads = F.value_and_grad(np.array([-1.0, 4.0, -4.0, 0.0]))
    assert_bits(values, [-1.0, 2.0 + math.log(4.0), -4.0, -math.inf])
    assert_bits(grads, [1.0, 0.25 + 0.25, 1.0, math.inf])


def test_where_with_a_python_bool_is_a_guard():
    # bool(x > 0) asks Python for the truth value: control flow, so a guard
    F = tg.trace(lambda x: tg.where(bool(x > 0), x, -x), 1.0)
    assert F.n_guards == 1
    with pytest.raises(tg.TraceError):
        F(-1.0)


def test_where_with_a_traced_comparison_is_branch_free():
    F = tg.trace(lambda x: tg.where(x > 0, x, -x), 1.0)  # a Condition: the gt node
    assert F.n_guards == 0 and F.ops_histogram()["gt"] == 1
    assert (F(-1.5), F.grad(-1.5)) == (1.5, -1.0)
    assert (F(2.0), F.grad(2.0)) == (2.0, 1.0)
