"""A Var where Python asks for a number (docs/ops.md, "Python integration"): math.floor,
math.ceil, math.trunc and round() give graph nodes; round(v, n) is numpy's around; //, %
and divmod are Python's float semantics with PyTorch's gradients; int() and float() give
Python numbers; numpy's comparison-based ufuncs select operands on object arrays."""
import math

import numpy as np
import pytest

VALUES = (-3.5, -2.5, -1.7, -0.5, -0.4, -0.0, 0.0, 0.3, 0.5, 1.5, 2.5, 2.7, 1e16 + 2)
# (x, y) pairs for // % divmod, with the float results Python gives for them.
PAIRS = ((1.0, 0.1), (-7.0, 3.0), (7.0, -3.0), (-7.0, -3.0), (7.0, 3.0), (-0.0, 3.0),
         (0.0, -3.0), (0.0, 3.0), (-0.0, -3.0), (5.5, 2.0), (-5.5, 2.0), (5.5, -2.0),
         (3.0, math.inf), (-3.0, math.inf), (3.0, -math.inf), (1e17, 3.0), (0.3, 0.1),
         (-1e-300, 1e300), (6.0, 3.0), (-6.0, 3.0))


def same(got, want):
    """Equal, NaN to NaN, and a zero only to a zero of the same sign."""
    got, want = float(got), float(want)
    if math.isnan(want):
        return math.isnan(got)
    return got == want and math.copysign(1, got) == math.copysign(1, want)


def operand_forms(backend, x, y):
    """(x, y) as (Var, number), (number, Var) and (Var, Var)."""
    return [(backend.Var(x), y), (x, backend.Var(y)), (backend.Var(x), backend.Var(y))]


@pytest.mark.parametrize("fn, op, ref", [(math.floor, "floor", np.floor),
                                         (math.ceil, "ceil", np.ceil),
                                         (math.trunc, "trunc", np.trunc),
                                         (round, "round", np.rint)],
                         ids=["floor", "ceil", "trunc", "round"])
def test_math_rounding_gives_nodes(backend, fn, op, ref):
    for x in VALUES:
        v = backend.Var(x)
        out = fn(v)
        assert isinstance(out, backend.Var) and out.op == op
        assert out.value == fn(x), (op, x, out.value)  # Python's result (an int) ...
        assert same(out.value, ref(x)), (op, x, out.value)  # ... with C's signed zero
        out.backward()
        assert v.grad == 0.0


def test_round_is_half_to_even(backend):
    assert [round(backend.Var(x)).value for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == \
        [0.0, 2.0, 2.0, -0.0, -2.0]


@pytest.mark.parametrize("ndigits", [2, 1, 0, -1, -2])
def test_round_ndigits_is_numpy_around(backend, ndigits):
    for x in (2.675, -1.005, 0.125, 1234.5678, -0.004, 15.0, 25.0, -35.0, 0.0):
        v = backend.Var(x)
        out = round(v, ndigits)
        assert isinstance(out, backend.Var)
        assert same(out.value, np.round(x, ndigits)), (x, ndigits, out.value)
        out.backward()
        assert v.grad == 0.0


def test_round_ndigits_is_not_pythons_decimal_rounding(backend):
    assert round(2.675, 2) == 2.67  # 2.675 is 2.67499999... in binary
    assert round(backend.Var(2.675), 2).value == 2.68  # 267.5 rounded, as np.round


@pytest.mark.parametrize("x, y", PAIRS, ids=[f"{x}_{y}" for x, y in PAIRS])
def test_floordiv_mod_divmod_are_pythons(backend, x, y):
    want_q, want_r = x // y, x % y
    assert divmod(x, y) == (want_q, want_r)
    for a, b in operand_forms(backend, x, y):
        q, r = a // b, a % b
        dq, dr = divmod(a, b)
        for got, want, what in ((q, want_q, "//"), (r, want_r, "%"), (dq, want_q, "divmod[0]"),
                                (dr, want_r, "divmod[1]")):
            assert isinstance(got, backend.Var), (what, a, b)
            assert same(got.value, want), f"{a!r} {what} {b!r} = {got.value!r}, Python {want!r}"


def test_documented_examples(backend):
    V = backend.Var
    assert (V(1.0) // 0.1).value == 9.0 and 1 // 0.1 == 9.0  # 0.1 is a bit over 1/10
    assert (V(-7.0) % 3).value == 2.0
    assert (-7 // V(3.0)).value == -3.0
    assert same((V(-0.0) % 3).value, 0.0)
    assert same((V(0.0) % -3).value, -0.0)


def test_division_by_zero_is_numpys(backend):
    V = backend.Var
    with np.errstate(all="ignore"):
        for x in (1.0, -1.0, 0.0, math.nan):
            for y in (0.0, -0.0):
                assert same((V(x) // y).value, np.floor_divide(x, y)), (x, y)
                assert same((V(x) % y).value, np.remainder(x, y)), (x, y)
                q, r = divmod(x, V(y))
                assert same(q.value, np.floor_divide(x, y)) and same(r.value, np.remainder(x, y))


@pytest.mark.parametrize("x, y", [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (-7.5, -2.0),
                                  (0.3, 0.1), (5.0, 3.0), (-5.0, 3.0), (1.0, 0.1)])
def test_gradients_of_mod_and_floordiv(backend, x, y):
    """PyTorch's: d(x % y)/dx = 1, d(x % y)/dy = -floor(x / y); floor_divide has none."""
    V = backend.Var
    a, b = V(x), V(y)
    (a % b).backward()
    assert (a.grad, b.grad) == (1.0, -math.floor(x / y))
    a, b = V(x), V(y)
    (a // b).backward()
    assert (a.grad, b.grad) == (0.0, 0.0)
    a, b = V(x), V(y)
    q, r = divmod(a, b)
    (q + r).backward()
    assert (a.grad, b.grad) == (1.0, -math.floor(x / y))
    # a number on one side: the Var still gets its partial
    a = V(x)
    (a % y).backward()
    assert a.grad == 1.0
    b = V(y)
    (x % b).backward()
    assert b.grad == -math.floor(x / y)
    b = V(y)
    (x // b).backward()
    assert b.grad == 0.0


def test_int_and_float_are_python_numbers(backend):
    V = backend.Var
    for x in (-2.7, -0.5, 0.0, 2.7, 1e16 + 2):
        assert type(int(V(x))) is int and int(V(x)) == int(x)
        assert type(float(V(x))) is float and same(float(V(x)), x)
    assert int(V(-2.7)) == -2  # truncates, as int(-2.7)


X = [-2.5, -0.7, 0.3, 1.5, 2.0, 3.5]
Y = [2.0, -1.0, 0.3, -3.0, 2.0, 0.5]


def test_np_maximum_selects_operands(backend):
    xs, ys = [backend.Var(x) for x in X], [backend.Var(y) for y in Y]
    for ufunc in (np.maximum, np.minimum, np.fmax, np.fmin):
        out = ufunc(np.array(xs, dtype=object), np.array(ys, dtype=object))
        want = ufunc(np.array(X), np.array(Y))
        for i, o in enumerate(out):
            assert o is xs[i] or o is ys[i], (ufunc.__name__, i)
            assert o.value == want[i], (ufunc.__name__, i, o.value, want[i])
    # the gradient goes to the selected operands
    total = sum(np.maximum(np.array(xs, dtype=object), np.array(ys, dtype=object)))
    total.backward()
    for x, y, vx, vy in zip(X, Y, xs, ys):
        # numpy's object loop takes x where x >= y, so x on a tie
        assert (vx.grad, vy.grad) == ((1.0, 0.0) if x >= y else (0.0, 1.0))


def test_np_clip(backend):
    xs = [backend.Var(x) for x in X]
    lo, hi = -1.0, 1.0
    out = np.clip(np.array(xs, dtype=object), lo, hi)
    want = np.clip(np.array(X), lo, hi)
    for i, o in enumerate(out):
        assert o is xs[i] or o is lo or o is hi, i
        assert float(o) == want[i]
    # bounds that are Vars: each element is the Var that won
    los = [backend.Var(v) for v in (-1.0, 0.0, 0.3, 2.0, -5.0, 0.0)]
    out = np.clip(np.array(xs, dtype=object), np.array(los, dtype=object), 2.5)
    want = np.clip(np.array(X), np.array([float(v) for v in los]), 2.5)
    for i, o in enumerate(out):
        assert o is xs[i] or o is los[i] or o == 2.5, i
        assert float(o) == want[i]
    # tg.clip is a node with PyTorch's clamp gradient (bounds included)
    for x, g in ((-2.0, 0.0), (-1.0, 1.0), (0.5, 1.0), (1.0, 1.0), (3.0, 0.0)):
        v = backend.Var(x)
        c = backend.clip(v, lo, hi)
        assert isinstance(c, backend.Var) and c.value == min(max(x, lo), hi)
        c.backward()
        assert v.grad == g, x


def test_rounding_and_mod_stay_in_a_trace():
    """math.floor, round, // and % give nodes, so a traced function records no guard and
    replays them at any point (as the eager code computes them)."""
    import tapegrad as tg

    def f(x, y):
        return math.floor(x) * y + round(x * 3) + x // y + x % y + math.trunc(-x) + math.ceil(y)

    F = tg.trace(f, 1.3, 0.7)
    for x, y in [(1.3, 0.7), (-2.6, 1.9), (7.5, -0.4), (0.5, 2.5)]:
        want = f(tg.Var(x), tg.Var(y))
        want.backward()
        value, grad = F.value_and_grad(x, y)
        assert value == want.value and math.isclose(value, f(x, y), rel_tol=1e-15)
        # d/dx: 1 from x % y, 0 from the rest; d/dy: floor(x) from floor(x) * y, and
        # -floor(x / y) from x % y
        assert tuple(grad) == (1.0, math.floor(x) - math.floor(x / y))
