"""Every op of the table against mpmath at 50 digits (tests/mpmath_oracle.py): values,
first and second derivatives, within per-op ulp bounds, on random points of the op's
domain, at edge points (0, -0, domain ends, poles, +-inf, NaN, 1e300, subnormals) and in
the batched replay (lanes).

- value and first derivative: both backends (tapegrad and tapegrad.reference), eager
  `backward()`; bounds `value` and `grad` of the op's oracle.
- second derivative: C++ only (`F.hessian` of the traced op, forward-over-reverse on dual
  numbers); the reference backend has no second derivatives. Bound `hess`.
- lanes: `F(columns)` and `F.grad(columns)` over 256 points; bounds `lanes` and `grad`.
- edges: where mpmath has a real value (finite, or a limit +-inf) the result is within the
  bound of it (an infinite one exactly); where it has none the result is the op's
  documented IEEE value (`ieee`: numpy's C99 values at signed zeros, infinities and NaN,
  poles), NaN by default. The two backends agree exactly on value and gradient. At kinks
  (`kink`) the derivative is PyTorch's convention, which test_conventions checks.

An op of the table without an oracle fails (`oracle_for`). Derivatives whose exact value
is below the smallest normal double need only be within DBL_MIN of it.
"""
import importlib
import math

import mpmath
import pytest
from helpers import table_ops
from mpmath_oracle import (
    ORACLES,
    batched,
    eager,
    exact,
    exact_values_and_grads,
    hessian_exact,
    oracle_for,
    partial,
    points,
    scaled_ulps,
    traced,
    ulps,
)

tg = importlib.import_module("tapegrad")
ref = importlib.import_module("tapegrad.reference")
BACKENDS = (tg, ref)
OPS = table_ops()
IDS = [op for op, _ in OPS]
inf, nan = math.inf, math.nan

EDGES_1 = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 30.0, -30.0, 710.0, -710.0,
           745.2, -745.2, 1e300, -1e300, 5e-324, -5e-324, 1e-310, -1e-310,
           2.2250738585072014e-308, 1.7976931348623157e308, inf, -inf, nan)
EDGES_2 = (0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e300, 5e-324, inf, -inf, nan)


def edge_points(op, arity):
    o = ORACLES[op]
    if op == "polygamma":
        return ([(float(n), x) for n in range(5) for x in EDGES_1 + o.edges]
                + [(n, x) for n in (nan, -1.0, 0.5, inf) for x in (0.5, 2.0)])
    if arity == 1:
        return [(x,) for x in EDGES_1 + o.edges]
    return [(x, y) for x in EDGES_2 for y in EDGES_2] + list(o.edges)


def identical(a, b):
    """The same double (the sign of a zero too), or both NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def check_grads(o, p, grads, want, bound, where):
    for i, (g, w) in enumerate(zip(grads, want)):
        if w is None and not (i in o.no_grad or o.piecewise_constant):
            continue
        if i in o.no_grad or o.piecewise_constant:
            assert g == 0, (where, p, i, g)
        else:
            err = scaled_ulps(o, g, w, p, i, underflow=True)
            assert err <= bound, (f"{where} d/dx{i} at {p}: {g!r} vs {mpmath.nstr(w, 20)}: "
                                  f"{err:.3g} ulp > {bound}")


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_value_and_gradient_on_the_domain(op, arity):
    o = oracle_for(op)
    pts = points(op, 24, seed=1)
    for p, (v, gs) in zip(pts, exact_values_and_grads(op, pts)):
        for backend in BACKENDS:
            value, grads = eager(backend, op, p)
            err = scaled_ulps(o, value, v, p)
            assert err <= o.value, f"{backend.__name__} {op}{p} = {value!r}: {err:.3g} ulp"
            if not o.grad_exempt(*p):
                check_grads(o, p, grads, gs, o.grad, backend.__name__)


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_edge_points(op, arity):
    o = oracle_for(op)
    for p in edge_points(op, arity):
        (value, grads), (r_value, r_grads) = (eager(b, op, p) for b in BACKENDS)
        if o.same_bits:
            assert identical(value, r_value), (op, p, value, r_value)
        for g, rg in zip(grads, r_grads):
            assert identical(g, rg), (op, p, grads, r_grads)
        documented = o.ieee(*p)
        if documented is not None:
            assert identical(value, documented), (op, p, value, documented)
            assert identical(r_value, documented), (op, p, r_value, documented)
        else:
            v = exact(o.f, p)
            if v is None:
                assert math.isnan(value), (op, p, value, "mpmath has no real value: NaN")
            else:
                for got in (value, r_value):
                    err = scaled_ulps(o, got, v, p)
                    assert err <= max(o.value, 0.5), (
                        f"{op}{p} = {got!r} vs {mpmath.nstr(v, 20)}: {err:.3g} ulp")
        if (o.kink(*p) or not all(math.isfinite(a) for a in p) or o.grad_exempt(*p)
                or exact(o.f, p) is None):
            continue
        want = [exact(o.d[i], p) for i in range(arity)]
        for i, w in enumerate(want):
            if (i in o.no_grad or o.piecewise_constant
                    or (w is not None and math.isfinite(float(w)))):
                check_grads(o, p, grads, [w if j == i else None for j in range(arity)],
                            o.grad, f"edge {op}")


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_second_derivatives(op, arity):
    """C++ only: the reference backend has no second derivatives."""
    o = oracle_for(op)
    F = traced(tg, op, arity)
    for p in points(op, 8, seed=2):
        if (o.hess_exempt or o.grad_exempt)(*p):
            continue
        H = F.hessian(*p)
        H = [[H]] if arity == 1 else H
        want = hessian_exact(o, p)
        for i in range(arity):
            for j in range(arity):
                err = ulps(float(H[i][j]), want[i][j], underflow=True)
                assert err <= o.hess, (f"{op} d2/dx{i}dx{j} at {p}: {H[i][j]!r} vs "
                                       f"{mpmath.nstr(want[i][j], 20)}: {err:.3g} ulp")


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_lanes(op, arity):
    o = oracle_for(op)
    pts = points(op, 256, seed=3)
    values, grads = batched(traced(tg, op, arity), pts)
    worst_value = worst_grad = 0.0
    for k, (p, (v, gs)) in enumerate(zip(pts, exact_values_and_grads(op, pts))):
        worst_value = max(worst_value, scaled_ulps(o, float(values[k]), v, p))
        if not o.grad_exempt(*p):
            for i, w in enumerate(gs):
                if i not in o.no_grad:
                    worst_grad = max(worst_grad,
                                     scaled_ulps(o, float(grads[i][k]), w, p, i, underflow=True))
    assert worst_value <= o.lanes, f"{op} lanes value: {worst_value:.3g} ulp > {o.lanes}"
    assert worst_grad <= o.grad, f"{op} lanes d/dx: {worst_grad:.3g} ulp > {o.grad}"


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_closed_forms_are_the_slopes(op, arity):
    """The oracle's derivatives are its function's (mpmath.diff): no typo in the table."""
    o = oracle_for(op)
    if o.piecewise_constant or o.piecewise_linear:
        return  # their derivatives are 0, +-1 or a whole quotient
    for p in points(op, 3, seed=4):
        for i in range(arity):
            if i not in o.no_grad:
                slope, closed = partial(o.f, p, i), exact(o.d[i], p)
                assert abs(slope - closed) <= mpmath.mpf(10)**-30 * abs(closed), (op, p, i)


def test_every_oracle_is_an_op():
    assert set(ORACLES) == {op for op, _ in OPS}
