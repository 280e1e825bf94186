"""Every op in the table through the functional transforms: its tangent rule and its
second derivative against finite differences, batched against pointwise, and at its
kinks the documented conventions. An op without a spec in tests/helpers.py fails here.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import importlib
import math
import random

import numpy as np
import pytest
from helpers import CONVENTIONS, SPECS, same, smooth, spec_for, table_ops
from transforms_helpers import close, fd

import tapegrad as tg

ref = importlib.import_module("tapegrad.reference")

OPS = table_ops()
OP_IDS = [op for op, _ in OPS]
# Ops whose value is piecewise constant in every operand: tangent 0, Hessian 0.
COMPARISONS = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not"}
N_POINTS = 6  # random points per op (from its SPECS domain)


def op_fn(op):
    """The single-op function traced in the per-op tests."""
    f = getattr(tg, op)
    return lambda *a: f(*a)


def trace_op(op, args):
    F = tg.trace(op_fn(op), *args)
    assert F.ops_histogram() == {op: 1}  # the op's own row runs, nothing rewritten
    return F


def as_vector(F, arity):
    """F of a flat float vector -> value; and the gradient of F as a flat vector."""
    def value(v):
        return F(*v.tolist())

    def gradient(v):
        g = F.grad(*v.tolist())
        return np.array(g if arity == 2 else [g], dtype=np.float64)

    return value, gradient


def jvp_of(F, args, t):
    """F.jvp at one point with tangent vector t (one entry per argument)."""
    return F.jvp(*args, tuple(t) if len(args) == 2 else t[0])


def hessian_matrix(F, args):
    H = F.hessian(*args)
    return np.array(H if len(args) == 2 else [[H]], dtype=np.float64)


def smooth_mask(spec, arity):
    return np.array([1.0 if smooth(spec, k) else 0.0 for k in range(arity)])


def op_points(op):
    r = random.Random(f"transforms-{op}")
    return [tuple(float(a) for a in spec_for(op).domain(r)) for _ in range(N_POINTS)]


# ---------------------------------------------------------------------------- every op


@pytest.mark.parametrize("op, arity", OPS, ids=OP_IDS)
def test_tangent_rule_of_every_op(op, arity):
    """F.jvp of the single-op function: per-argument unit tangents and a random tangent,
    against finite differences of the value, reference.tangent and the C++ gradient."""
    spec = spec_for(op)
    r = random.Random(f"tangent-{op}")
    points = op_points(op)
    F = trace_op(op, points[0])
    value, gradient = as_vector(F, arity)
    for args in points:
        x = np.array(args)
        tangents = [np.eye(arity)[k] for k in range(arity)]
        tangents.append(np.array([r.uniform(-2.0, 2.0) for _ in range(arity)]))
        # no tangent along an argument finite differences cannot move (polygamma's n)
        tangents = [t * smooth_mask(spec, arity) for t in tangents]
        grad = gradient(x)
        for t in tangents:
            val, tout = jvp_of(F, args, t)
            assert isinstance(tout, float)
            assert val == spec.oracle(*args) or math.isclose(val, spec.oracle(*args),
                                                             rel_tol=1e-13, abs_tol=1e-15)
            y, ty = (args[1], t[1]) if arity == 2 else (0.0, 0.0)
            want_ref = ref.tangent(op, args[0], y, float(t[0]), float(ty))
            close(tout, want_ref, rel=1e-12, abs_=1e-14)
            close(tout, grad @ t, rel=1e-12, abs_=1e-14)
            if op in COMPARISONS or not spec.differentiable:
                assert tout == 0.0, (args, t, tout)  # exactly, not just close
            else:
                close(tout, fd(value, x, t), rel=1e-8, abs_=1e-9)


@pytest.mark.parametrize("op, arity", OPS, ids=OP_IDS)
def test_second_derivative_of_every_op(op, arity):
    """F.hessian of the single-op function against central finite differences of the
    C++ gradient (F.grad), column by column; symmetric; F.hvp = H v."""
    spec = spec_for(op)
    r = random.Random(f"hessian-{op}")
    points = op_points(op)
    F = trace_op(op, points[0])
    _, gradient = as_vector(F, arity)
    for args in points:
        x = np.array(args)
        H = hessian_matrix(F, args)
        assert H.shape == (arity, arity)
        if op in COMPARISONS or not spec.differentiable:
            assert np.all(H == 0.0), (args, H)
        # (an argument finite differences cannot move, polygamma's n: a zero column)
        mask = smooth_mask(spec, arity)
        want = np.stack([fd(gradient, x, e * mask) for e in np.eye(arity)], axis=1)
        scale = max(1.0, float(np.max(np.abs(want))))
        close(H, want, rel=1e-7, abs_=1e-8 * scale)
        np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-13 * scale)
        v = np.array([r.uniform(-2.0, 2.0) for _ in range(arity)])
        hv = F.hvp(*args, tuple(v) if arity == 2 else v[0])
        close(np.atleast_1d(hv), H @ v, rel=1e-12, abs_=1e-13 * scale)


@pytest.mark.parametrize("op, arity", OPS, ids=OP_IDS)
def test_every_op_batched_matches_pointwise(op, arity):
    """The same transforms over all the points at once (one batch) as one by one: within
    a few ulp (rel 1e-13), as batched replays use libmvec (README "Batching")."""
    points = op_points(op)
    F = trace_op(op, points[0])
    cols = [np.array([p[k] for p in points]) for k in range(arity)]
    t = [np.linspace(-1.0, 1.5, len(points)) + k for k in range(arity)]
    values, touts = F.jvp(*cols, tuple(t) if arity == 2 else t[0])
    H = F.hessian(*cols)
    for i, args in enumerate(points):
        ti = [tk[i] for tk in t]
        v, tout = jvp_of(F, args, ti)
        close([values[i], touts[i]], [v, tout], rel=1e-13, abs_=1e-300)
        Hi = hessian_matrix(F, args)
        Hb = [[H[i]]] if arity == 1 else [[H[a][b][i] for b in range(2)] for a in range(2)]
        close(Hb, Hi, rel=1e-13, abs_=1e-300)


@pytest.mark.parametrize("op, args, value, grads", CONVENTIONS,
                         ids=[f"{k[0]}{k[1]}" for k in CONVENTIONS])
def test_tangents_at_kinks_follow_the_documented_conventions(op, args, value, grads):
    """At kinks and singular points, where finite differences cannot go: the tangent
    along each unit direction is the documented partial derivative, exactly (also NaN and
    infinities), and the reference's tangent column gives the same."""
    F = trace_op(op, args)
    for k in range(len(args)):
        t = [0.0] * len(args)
        t[k] = 1.0
        v, tout = F.jvp(*args, tuple(t) if len(args) == 2 else t[0])
        y, ty = (args[1], t[1]) if len(args) == 2 else (0.0, 0.0)
        assert same(v, value), (v, value)
        assert same(tout, grads[k]), (k, tout, grads[k])
        assert same(tout, ref.tangent(op, args[0], y, t[0], ty))


def test_specs_cover_the_table():
    assert {op for op, _ in OPS} <= set(SPECS)


@pytest.mark.parametrize("y", [0.0, 1.0, 2.0, 3.0, 0.5, -1.0])
def test_pow_second_derivatives_at_integer_exponents(y):
    """pow(x, y) with both operands inputs is smooth at every y for x > 0, also at the
    exponents its rule special-cases (y == 0, y == 2): the full Hessian in closed form."""
    x = 1.5
    F = tg.trace(lambda a, b: tg.pow(a, b), 1.2, 0.7)
    L = math.log(x)
    want = np.array([
        [y * (y - 1) * x ** (y - 2), x ** (y - 1) * (1 + y * L)],
        [x ** (y - 1) * (1 + y * L), x ** y * L * L],
    ])
    close(hessian_matrix(F, (x, y)), want, rel=1e-12, abs_=1e-14)
    close(tg.hessian(lambda a, b: tg.pow(a, b), argnums=(0, 1))(x, y), want,
          rel=1e-12, abs_=1e-14)
