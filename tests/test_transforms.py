"""Functional transforms and second order (issue 5): tg.grad / value_and_grad / jacobian /
hessian / jvp / vjp / hvp, the same methods on a traced tg.Function, no_grad and detach.

Oracles: central finite differences (the 6-point stencil) of values and of the C++
gradient, the reference backend's tangent column (``reference.tangent``), closed forms
(f = x² + xy, Rosenbrock), and identities between the transforms (hvp = H v,
jvp = J t, vjp = ct J, H = Hᵀ). Every op in the table is enumerated: an op without a
spec in tests/helpers.py fails here.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import importlib
import math
import random
import threading

import numpy as np
import pytest
from helpers import CONVENTIONS, SPECS, programs, run, same, spec_for, table_ops
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tapegrad as tg

ref = importlib.import_module("tapegrad.reference")

OPS = table_ops()
OP_IDS = [op for op, _ in OPS]
# Ops whose value is piecewise constant in every operand: tangent 0, Hessian 0.
COMPARISONS = {"lt", "le", "gt", "ge"}
N_POINTS = 6  # random points per op (from its SPECS domain)

# ---------------------------------------------------------------------------- helpers

STENCIL = ((-3, -1.0), (-2, 9.0), (-1, -45.0), (1, 45.0), (2, -9.0), (3, 1.0))


def fd(f, x, direction, h=1e-3):
    """Central 6-point finite difference of f (numbers or arrays) at x along direction:
    d/dt f(x + t direction) at t = 0 (error O(h^6) + O(eps / h))."""
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    return sum(c * np.asarray(f(x + k * h * d), dtype=np.float64) for k, c in STENCIL) / (60 * h)


def close(got, want, rel=1e-8, abs_=1e-8):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rel, atol=abs_)


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
        want = np.stack([fd(gradient, x, e) for e in np.eye(arity)], axis=1)
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


# ---------------------------------------------------------------------------- seed example


def seed_f(x, y):
    return x ** 2 + x * y


@pytest.mark.parametrize("x, y", [(1.0, 2.0), (-3.5, 0.25), (0.0, 0.0)])
def test_seed_hessian_is_exact(x, y):
    H = tg.hessian(lambda v: seed_f(v[0], v[1]))(np.array([x, y]))
    assert isinstance(H, np.ndarray) and H.dtype == np.float64
    np.testing.assert_array_equal(H, [[2.0, 1.0], [1.0, 0.0]])
    assert tg.hessian(seed_f, argnums=(0, 1))(x, y) == ((2.0, 1.0), (1.0, 0.0))
    assert tg.hessian(seed_f, argnums=0)(x, y) == 2.0
    assert tg.hessian(seed_f, argnums=1)(x, y) == 0.0
    assert tg.hessian(seed_f, argnums=(1,))(x, y) == ((0.0,),)
    F = tg.trace(seed_f, 0.3, 0.4)
    assert F.hessian(x, y) == ((2.0, 1.0), (1.0, 0.0))


def test_seed_jvp_vjp_hvp_are_exact():
    x, y, tx, ty = 1.5, -2.0, 0.5, 4.0
    value, tout = tg.jvp(seed_f, (x, y), (tx, ty))
    assert value == x * x + x * y
    assert tout == (2 * x + y) * tx + x * ty
    value, vjp_fn = tg.vjp(seed_f, x, y)
    assert value == x * x + x * y
    assert vjp_fn(3.0) == (3.0 * (2 * x + y), 3.0 * x)
    assert tg.hvp(seed_f, (x, y), (tx, ty)) == (2 * tx + ty, tx)
    # the array form
    v, t = np.array([x, y]), np.array([tx, ty])
    value, tout = tg.jvp(lambda a: seed_f(a[0], a[1]), (v,), (t,))
    assert (value, tout) == (x * x + x * y, (2 * x + y) * tx + x * ty)
    np.testing.assert_array_equal(tg.hvp(lambda a: seed_f(a[0], a[1]), (v,), (t,)),
                                  [2 * tx + ty, tx])
    value, vjp_fn = tg.vjp(lambda a: seed_f(a[0], a[1]), v)
    (g,) = vjp_fn(2.0)
    np.testing.assert_array_equal(g, [2.0 * (2 * x + y), 2.0 * x])
    # and on a traced Function
    F = tg.trace(seed_f, 0.0, 0.0)
    assert F.jvp(x, y, (tx, ty)) == (x * x + x * y, (2 * x + y) * tx + x * ty)
    assert F.hvp(x, y, (tx, ty)) == (2 * tx + ty, tx)
    value, vjp_fn = F.vjp(x, y)
    assert value == x * x + x * y and vjp_fn(1.0) == (2 * x + y, x)


# ---------------------------------------------------------------------------- Rosenbrock


def rosen(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def rosen_hessian(x):
    d = len(x)
    H = np.zeros((d, d))
    for i in range(d - 1):
        H[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        H[i + 1, i + 1] += 200
        H[i, i + 1] = H[i + 1, i] = -400 * x[i]
    return H


@pytest.mark.parametrize("d", [5, 50])
def test_rosenbrock_hessian_closed_form(d):
    rng = np.random.default_rng(d)
    x = rng.uniform(-1.5, 1.5, d)
    want = rosen_hessian(x)
    H = tg.hessian(rosen)(x)
    assert H.shape == (d, d)
    close(H, want, rel=1e-13, abs_=1e-11)
    F = tg.trace(rosen, np.zeros(d))
    X = rng.uniform(-1.5, 1.5, (3, d))
    HB = F.hessian(X)
    assert HB.shape == (3, d, d)
    for Xi, Hi in zip(X, HB):
        close(Hi, rosen_hessian(Xi), rel=1e-13, abs_=1e-11)
        np.testing.assert_array_equal(F.hessian(Xi), Hi)
    v = rng.normal(size=d)
    close(F.hvp(x, v), want @ v, rel=1e-12, abs_=1e-10)
    close(tg.hvp(rosen, (x,), (v,)), want @ v, rel=1e-12, abs_=1e-10)


# ---------------------------------------------------------------------------- random graphs

# Smooth ops on all of their domain (no kinks, no singular points away from / 0 and log 0).
SMOOTH = [(op, a) for op, a in OPS if op in
          {"add", "sub", "mul", "div", "square", "neg", "sin", "cos", "tanh", "sigmoid",
           "exp"}]


def traced_program(program):
    values, _ = program
    return tg.trace(lambda *xs: run(program, tg, leaves=xs)[-1], *values)


def matrix_of(H, n):
    """F.hessian of n scalar arguments as an (n, n) array."""
    return np.array(H if n > 1 else [[H]], dtype=np.float64)


@settings(max_examples=60)
@given(programs(OPS, max_steps=10), st.data())
def test_hessians_of_random_graphs_are_symmetric(program, data):
    """Any graph over the whole table (shared leaves and intermediates)."""
    values, _ = program
    n = len(values)
    F = traced_program(program)
    H = matrix_of(F.hessian(*values), n)
    assume(np.all(np.isfinite(H)))
    scale = max(1.0, float(np.max(np.abs(H))))
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-10 * scale)
    v = data.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n))
    hv = np.atleast_1d(np.array(F.hvp(*values, tuple(v) if n > 1 else v[0])))
    np.testing.assert_allclose(hv, H @ np.array(v), rtol=1e-10, atol=1e-10 * scale)


def reference_jvp(program, tangents):
    """Forward mode over the program on the reference backend: each node's tangent by
    reference.tangent, the reference's tangent column (constants have tangent 0)."""
    values, steps = program
    nodes = run(program, ref)
    tan = list(tangents)
    for (op, _, args), _node in zip(steps, nodes[len(values):]):
        xs = [nodes[a].value if isinstance(a, int) else float(a) for a in args]
        ts = [tan[a] if isinstance(a, int) else 0.0 for a in args]
        if op == "pow" and not isinstance(args[1], int) and float(args[1]) == 2.0:
            op, xs, ts = "square", xs[:1], ts[:1]  # x ** 2 with a number 2 records square
        y, ty = (xs[1], ts[1]) if len(xs) == 2 else (0.0, 0.0)
        tan.append(ref.tangent(op, xs[0], y, ts[0], ty))
    return nodes[-1].value, tan[-1]


@settings(max_examples=60)
@given(programs(OPS, max_steps=10), st.data())
def test_jvp_of_random_graphs_matches_reference_forward_mode(program, data):
    values, _ = program
    n = len(values)
    t = data.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n))
    want_value, want_tangent = reference_jvp(program, t)
    assume(math.isfinite(want_value) and math.isfinite(want_tangent))
    F = traced_program(program)
    value, tout = F.jvp(*values, tuple(t) if n > 1 else t[0])
    assert math.isclose(value, want_value, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(tout, want_tangent, rel_tol=1e-9, abs_tol=1e-9), (tout, want_tangent)
    # forward mode and reverse mode agree: J t = grad . t
    g = np.atleast_1d(np.array(F.grad(*values), dtype=np.float64))
    assume(np.all(np.isfinite(g)))
    assert math.isclose(tout, float(g @ np.array(t)), rel_tol=1e-9,
                        abs_tol=1e-9 * max(1.0, float(np.max(np.abs(g)))))


@settings(max_examples=40)
@given(programs(SMOOTH, max_leaves=3, max_steps=8))
def test_hessians_of_smooth_random_graphs_match_finite_differences(program):
    values, _ = program
    n = len(values)
    F = traced_program(program)
    x = np.array(values, dtype=np.float64)

    def gradient(v):
        return np.atleast_1d(np.array(F.grad(*v.tolist()), dtype=np.float64))

    # keep away from poles of div and overflow of exp: moderate values and derivatives
    g = gradient(x)
    assume(np.all(np.isfinite(g)) and np.max(np.abs(g), initial=0.0) < 1e3)
    H = matrix_of(F.hessian(*values), n)
    assume(np.all(np.isfinite(H)) and np.max(np.abs(H)) < 1e4)
    want = np.stack([fd(gradient, x, e, h=1e-3) for e in np.eye(n)], axis=1)
    assume(np.all(np.isfinite(want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(H, want, rtol=1e-6, atol=1e-6 * scale)


# ---------------------------------------------------------------------------- identities


def vec_fn(x):
    """R^3 -> R^2 (a vector function for jacobian / jvp / vjp)."""
    return np.array([tg.sin(x[0] * x[1]) + x[2] ** 3, tg.exp(x[0]) * tg.tanh(x[2]) - x[1]])


def scalar_fn(x):
    return tg.log(1 + x[0] ** 2) * tg.cos(x[1]) + x[0] * x[1] * x[2] + tg.sigmoid(x[2] - x[0])


def test_jvp_equals_jacobian_times_tangent():
    rng = np.random.default_rng(1)
    F = tg.trace(vec_fn, np.zeros(3))
    for _ in range(5):
        x, t = rng.normal(size=3), rng.normal(size=3)
        J = F.jacobian(x)
        assert J.shape == (2, 3)
        close(J, np.stack([fd(F, x, e) for e in np.eye(3)], axis=1), rel=1e-8, abs_=1e-9)
        value, tout = F.jvp(x, t)
        np.testing.assert_array_equal(value, F(x))
        close(tout, J @ t, rel=1e-12, abs_=1e-13)
        value, tout = tg.jvp(vec_fn, (x,), (t,))
        close(tout, J @ t, rel=1e-12, abs_=1e-13)
        close(tg.jacobian(vec_fn)(x), J, rel=1e-13, abs_=0)


def test_vjp_equals_cotangent_times_jacobian():
    rng = np.random.default_rng(2)
    F = tg.trace(vec_fn, np.zeros(3))
    for _ in range(5):
        x, ct = rng.normal(size=3), rng.normal(size=2)
        J = F.jacobian(x)
        value, vjp_fn = F.vjp(x)
        np.testing.assert_array_equal(value, F(x))
        close(vjp_fn(ct), ct @ J, rel=1e-12, abs_=1e-13)
        value, vjp_fn = tg.vjp(vec_fn, x)
        (g,) = vjp_fn(ct)
        close(g, ct @ J, rel=1e-12, abs_=1e-13)


def test_hvp_equals_hessian_times_vector_and_fd_of_grad():
    rng = np.random.default_rng(3)
    F = tg.trace(scalar_fn, np.ones(3))
    for _ in range(5):
        x, v = rng.normal(size=3), rng.normal(size=3)
        H = F.hessian(x)
        close(H, H.T, rel=1e-13, abs_=1e-13)
        close(H, np.stack([fd(F.grad, x, e) for e in np.eye(3)], axis=1), rel=1e-8, abs_=1e-9)
        close(F.hvp(x, v), H @ v, rel=1e-12, abs_=1e-13)
        close(tg.hvp(scalar_fn, (x,), (v,)), H @ v, rel=1e-12, abs_=1e-13)
        close(tg.hessian(scalar_fn)(x), H, rel=1e-13, abs_=1e-14)


def test_multi_argument_blocks():
    """F(s, v) with a scalar and a vector argument: Hessian blocks, hvp and jvp parts."""
    def f(s, v):
        return s * s * v[0] + tg.sin(s * v[1]) + v[0] * v[1] * v[2]

    F = tg.trace(f, 0.5, np.ones(3))
    s, v = 0.7, np.array([0.3, -1.2, 2.0])
    H = F.hessian(s, v)
    assert isinstance(H[0][0], float)
    assert H[0][1].shape == (3,) and H[1][0].shape == (3,) and H[1][1].shape == (3, 3)
    full = np.block([[np.array([[H[0][0]]]), H[0][1][None, :]], [H[1][0][:, None], H[1][1]]])

    def flat_grad(z):
        gs, gv = F.grad(z[0], z[1:])
        return np.concatenate([[gs], gv])

    z = np.concatenate([[s], v])
    close(full, np.stack([fd(flat_grad, z, e) for e in np.eye(4)], axis=1), rel=1e-8, abs_=1e-9)
    close(full, full.T, rel=1e-13, abs_=1e-13)
    blocks = tg.hessian(f, argnums=(0, 1))(s, v)
    for a in range(2):
        for b in range(2):
            close(blocks[a][b], H[a][b], rel=1e-13, abs_=0)
    ts, tv = 0.4, np.array([1.0, -0.5, 0.25])
    hs, hv = F.hvp(s, v, (ts, tv))
    close(np.concatenate([[hs], hv]), full @ np.concatenate([[ts], tv]), rel=1e-12, abs_=1e-13)
    value, tout = F.jvp(s, v, (ts, tv))
    assert value == F(s, v)
    close(tout, flat_grad(z) @ np.concatenate([[ts], tv]), rel=1e-12, abs_=1e-13)
    # batched: blocks get the batch dims in front
    S, V = np.array([0.1, 0.7]), np.stack([v, v + 1])
    HB = F.hessian(S, V)
    assert HB[0][0].shape == (2,) and HB[0][1].shape == (2, 3) and HB[1][1].shape == (2, 3, 3)
    for i in range(2):
        Hi = F.hessian(S[i], V[i])
        for a in range(2):
            for b in range(2):
                close(HB[a][b][i], Hi[a][b], rel=1e-13, abs_=1e-300)


# ---------------------------------------------------------------------------- batching


def test_batched_shapes_and_broadcasting():
    d = 4
    F = tg.trace(rosen, np.zeros(d))
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (7, d))
    H = F.hessian(X)
    assert H.shape == (7, d, d)
    for i in range(7):
        close(H[i], rosen_hessian(X[i]), rel=1e-13, abs_=1e-11)
    H3 = F.hessian(X[:6].reshape(2, 3, d))
    assert H3.shape == (2, 3, d, d)
    np.testing.assert_array_equal(H3.reshape(6, d, d), H[:6])
    v = rng.normal(size=d)
    hv = F.hvp(X, v)  # one v for every point
    assert hv.shape == (7, d)
    close(hv, np.einsum("nij,j->ni", H, v), rel=1e-12, abs_=1e-10)
    V = rng.normal(size=(7, d))  # one v per point
    close(F.hvp(X, V), np.einsum("nij,nj->ni", H, V), rel=1e-12, abs_=1e-10)
    hv1 = F.hvp(X[0], V)  # one point, many v
    assert hv1.shape == (7, d)
    close(hv1, V @ H[0].T, rel=1e-12, abs_=1e-10)
    value, tout = F.jvp(X, V)
    assert value.shape == tout.shape == (7,)
    close(tout, np.einsum("ni,ni->n", F.grad(X), V), rel=1e-12, abs_=1e-10)
    value, vjp_fn = F.vjp(X)
    ct = rng.normal(size=7)
    close(vjp_fn(ct), ct[:, None] * F.grad(X), rel=1e-13, abs_=0)
    assert vjp_fn(2.0).shape == (7, d)
    with pytest.raises(ValueError, match="broadcast"):
        F.hvp(X, np.ones((3, d)))


def test_batched_scalar_function_of_scalars():
    F = tg.trace(lambda a, b: tg.sin(a) * b ** 3, 0.1, 0.2)
    A, B = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5)
    H = F.hessian(A, B)
    assert H[0][0].shape == H[0][1].shape == H[1][1].shape == (5,)
    close(H[0][0], -np.sin(A) * B ** 3, rel=1e-13, abs_=1e-15)
    close(H[0][1], 3 * np.cos(A) * B ** 2, rel=1e-13, abs_=1e-15)
    close(H[1][1], 6 * np.sin(A) * B, rel=1e-13, abs_=1e-15)
    hA, hB = F.hvp(A, 0.5, (1.0, np.zeros(5)))  # b broadcast, tangents broadcast
    close(hA, -np.sin(A) * 0.125, rel=1e-13, abs_=1e-15)
    close(hB, 3 * np.cos(A) * 0.25, rel=1e-13, abs_=1e-15)


# ---------------------------------------------------------------------------- guards


def branchy(x):
    if x > 0:
        return x ** 3
    return -(x ** 2) + tg.sin(x)


def test_guard_failure_raises_in_second_order():
    F = tg.trace(branchy, 1.0)
    assert F.hessian(2.0) == pytest.approx(12.0, rel=1e-14)
    for call in (lambda: F.hessian(-1.0), lambda: F.hvp(-1.0, 1.0),
                 lambda: F.jvp(-1.0, 1.0), lambda: F.vjp(-1.0)[1](1.0),
                 lambda: F.hessian(np.array([1.0, -1.0])),
                 lambda: F.hvp(np.array([1.0, -1.0]), 1.0)):
        with pytest.raises(tg.TraceError, match="x > 0"):
            call()


def test_retrace_gives_the_other_branch():
    F = tg.trace(branchy, 1.0, retrace=True)
    neg = -2.0 - math.sin(-1.0)  # d²/dx² (-x² + sin x) at -1
    assert F.hessian(-1.0) == pytest.approx(neg, rel=1e-14)
    assert F.hvp(-1.0, 3.0) == pytest.approx(3 * neg, rel=1e-14)
    _, tout = F.jvp(-1.0, 2.0)
    assert tout == pytest.approx(2 * (2.0 + math.cos(-1.0)), rel=1e-14)
    X = np.array([2.0, -1.0, 0.5, -3.0])
    H = F.hessian(X)
    close(H, [12.0, neg, 3.0, -2.0 - math.sin(-3.0)], rel=1e-13, abs_=0)
    close(F.hvp(X, np.full(4, 2.0)), 2 * H, rel=1e-13, abs_=0)
    G = tg.trace(lambda v: branchy(v[0]) * v[1], np.array([1.0, 1.0]), retrace=True)
    HB = G.hessian(np.array([[2.0, 1.0], [-1.0, 2.0]]))
    assert HB.shape == (2, 2, 2)
    close(HB[1], [[2 * neg, 2.0 + math.cos(-1.0)], [2.0 + math.cos(-1.0), 0.0]],
          rel=1e-13, abs_=1e-15)
    close(HB[0], [[12.0, 12.0], [12.0, 0.0]], rel=1e-13, abs_=0)


def test_where_select_has_branchwise_second_derivatives():
    """tg.where records a branch-free select (if_true + if_false): no guard, and each
    point of a batch gets its own branch's Hessian."""
    def f(x):
        return tg.where(tg.gt(x, 0), x ** 3, tg.sin(x) - x * x)

    F = tg.trace(f, 1.0)
    assert F.n_guards == 0
    X = np.array([2.0, -1.0, 0.5, -3.0])
    close(F.hessian(X), np.where(X > 0, 6 * X, -np.sin(X) - 2), rel=1e-13, abs_=1e-15)
    _, tout = F.jvp(X, 1.0)
    close(tout, np.where(X > 0, 3 * X * X, np.cos(X) - 2 * X), rel=1e-13, abs_=1e-15)


def test_second_order_after_pickling():
    import pickle

    F = tg.trace(rosen, np.zeros(6))
    G = pickle.loads(pickle.dumps(F))
    x, v = np.linspace(-1, 1, 6), np.arange(6.0)
    np.testing.assert_array_equal(G.hessian(x), F.hessian(x))
    np.testing.assert_array_equal(G.hvp(x, v), F.hvp(x, v))
    np.testing.assert_array_equal(G.jvp(x, v)[1], F.jvp(x, v)[1])


# ---------------------------------------------------------------------------- grad / value_and_grad


def test_grad_argnums_and_result_types():
    def f(x, y, z):
        return x * y ** 2 + tg.exp(z) * x

    x, y, z = 1.5, -2.0, 0.3
    g = tg.grad(f)(x, y, z)
    assert type(g) is float and g == pytest.approx(y * y + math.exp(z), rel=1e-14)
    assert tg.grad(f, argnums=1)(x, y, z) == pytest.approx(2 * x * y, rel=1e-14)
    assert tg.grad(f, argnums=-1)(x, y, z) == pytest.approx(math.exp(z) * x, rel=1e-14)
    gs = tg.grad(f, argnums=(0, 2))(x, y, z)
    assert isinstance(gs, tuple) and len(gs) == 2
    assert gs == pytest.approx((y * y + math.exp(z), math.exp(z) * x), rel=1e-14)
    value, gs = tg.value_and_grad(f, argnums=(2, 1))(x, y, z)
    assert type(value) is float and value == pytest.approx(x * y * y + math.exp(z) * x)
    assert gs == pytest.approx((math.exp(z) * x, 2 * x * y), rel=1e-14)
    assert tg.grad(lambda a: 3.0)(1.0) == 0.0  # a constant function
    assert tg.grad(lambda a, k=1.0: a * k)(2.0, k=5.0) == 5.0  # kwargs pass through


def test_grad_of_array_arguments_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.normal(size=3)
    g = tg.grad(scalar_fn)(x)
    assert isinstance(g, np.ndarray) and g.shape == (3,) and g.dtype == np.float64
    F = tg.trace(scalar_fn, np.zeros(3))
    close(g, [fd(F, x, e) for e in np.eye(3)], rel=1e-8, abs_=1e-9)
    np.testing.assert_allclose(g, F.grad(x), rtol=1e-14, atol=0)
    M = rng.normal(size=(2, 3))
    gm = tg.grad(lambda m: (m ** 2).sum() * m[1, 2])(M)
    assert gm.shape == (2, 3)
    want = 2 * M * M[1, 2]
    want[1, 2] += (M ** 2).sum()
    close(gm, want, rel=1e-13, abs_=1e-15)
    ga, gb = tg.grad(lambda a, b: (a * b).sum(), argnums=(0, 1))(x, 2 * x)
    close(ga, 2 * x, rel=1e-15, abs_=0)
    close(gb, x, rel=1e-15, abs_=0)


def test_has_aux():
    def f(x, y):
        loss = x * y + tg.sin(x)
        return loss, {"loss": loss.value, "note": "aux"}

    value, g = tg.value_and_grad(f, has_aux=True)(2.0, 3.0)
    v, aux = value
    assert v == 6.0 + math.sin(2.0) and aux == {"loss": v, "note": "aux"}
    assert g == pytest.approx(3.0 + math.cos(2.0), rel=1e-14)
    g, aux = tg.grad(f, argnums=(0, 1), has_aux=True)(2.0, 3.0)
    assert g == pytest.approx((3.0 + math.cos(2.0), 2.0), rel=1e-14)
    assert aux["note"] == "aux"
    with pytest.raises(TypeError, match="pair"):
        tg.grad(lambda x: x * 2, has_aux=True)(1.0)


def test_grad_is_eager_control_flow_re_evaluated():
    assert tg.grad(branchy)(2.0) == pytest.approx(12.0)
    assert tg.grad(branchy)(-1.0) == pytest.approx(2.0 + math.cos(-1.0))
    assert tg.hessian(branchy)(-1.0) == pytest.approx(-2.0 - math.sin(-1.0))


# ---------------------------------------------------------------------------- no_grad / detach


def test_no_grad_context_manager():
    x = tg.Var(2.0)
    assert tg.is_grad_enabled()
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = x * 3 + tg.sin(x)
    assert tg.is_grad_enabled()
    assert y.value == 6.0 + math.sin(2.0) and y.op == "const" and y.is_leaf
    z = x * y
    z.backward()
    assert x.grad == y.value  # y took no gradient path back to x


def test_no_grad_decorator_nested_and_exceptions():
    @tg.no_grad()
    def evaluate(v):
        assert not tg.is_grad_enabled()
        return v * v

    x = tg.Var(3.0)
    out = evaluate(x)
    assert out.value == 9.0 and out.op == "const"
    assert tg.is_grad_enabled()
    assert evaluate.__name__ == "evaluate"
    ng = tg.no_grad()
    with ng:
        with tg.no_grad():
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()  # the inner exit restores the outer state
        with ng:  # the same instance, re-entered
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
        assert evaluate(x).op == "const"
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    with pytest.raises(KeyError):
        with tg.no_grad():
            raise KeyError("boom")
    assert tg.is_grad_enabled()


def test_no_grad_is_thread_local():
    started, release, seen = threading.Event(), threading.Event(), {}

    def other():
        started.wait()
        seen["enabled"] = tg.is_grad_enabled()
        a = tg.Var(2.0)
        b = a * a
        b.backward()
        seen["op"], seen["grad"] = b.op, a.grad
        release.set()

    t = threading.Thread(target=other)
    t.start()
    try:
        with tg.no_grad():
            started.set()
            assert release.wait(10)
            assert not tg.is_grad_enabled()
    finally:
        started.set()
        t.join()
    assert seen == {"enabled": True, "op": "mul", "grad": 4.0}
    # and a thread's no_grad leaves this one alone
    flags = []

    def disabled():
        with tg.no_grad():
            flags.append(tg.is_grad_enabled())

    t = threading.Thread(target=disabled)
    t.start()
    t.join()
    assert flags == [False] and tg.is_grad_enabled()


def test_transforms_ignore_an_outer_no_grad():
    """As torch.func: a function transform computes its derivatives even when called
    inside no_grad (the outer no_grad is not the transformed function's); no_grad inside
    fn still stops the gradient there. tests/test_transforms_torch.py checks torch.func
    does this. Never a silent 0."""
    def cube(x):
        return x * x * x

    with tg.no_grad():
        assert tg.grad(cube)(2.0) == 12.0
        assert tg.value_and_grad(cube)(2.0) == (8.0, 12.0)
        assert tg.hessian(cube)(2.0) == 12.0
        assert tg.jvp(cube, (2.0,), (1.0,)) == (8.0, 12.0)
        assert tg.hvp(cube, (2.0,), (1.0,)) == 12.0
        assert tg.vjp(cube, 2.0)[1](1.0) == (12.0,)
        assert tg.jacobian(cube)(2.0) == 12.0
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_detach_eagerly():
    x = tg.Var(2.0)
    c = x.detach()  # PyTorch's detach: a new constant
    assert c.value == 2.0 and c.op == "const" and c.is_leaf
    d = tg.detach(x)  # the op: the value, no gradient
    assert d.value == 2.0 and d.op == "detach"
    z = x * c + x * d + x
    z.backward()
    assert x.grad == 2.0 + 2.0 + 1.0
    assert tg.grad(lambda a: a * tg.detach(a) ** 2)(3.0) == 9.0
    assert tg.hessian(lambda a: a ** 2 * tg.detach(a))(3.0) == 6.0


@pytest.mark.parametrize("how", ["op", "method", "no_grad"])
def test_detach_inside_trace_recomputes_on_replay(how):
    def stopped(x):
        if how == "op":
            return tg.detach(x * x)
        if how == "method":
            return (x * x).detach()
        with tg.no_grad():
            return x * x

    def f(x):
        return x * stopped(x) + x

    F = tg.trace(f, 2.0)
    assert F.ops_histogram().get("detach") == 1
    for x in (3.0, -0.5):
        assert F(x) == x ** 3 + x  # the detached value recomputed at the new point
        assert F.grad(x) == x * x + 1  # no gradient through it
        assert F.hessian(x) == 0.0  # d/dx of the gradient (x*x stopped) is 0
        assert F.jvp(x, 2.0) == (x ** 3 + x, 2 * (x * x + 1))
    np.testing.assert_array_equal(F.hessian(np.array([1.0, 2.0])), [0.0, 0.0])
    assert tg.is_grad_enabled()


# ---------------------------------------------------------------------------- errors


def test_errors_on_arguments_and_shapes():
    F = tg.trace(scalar_fn, np.zeros(3))
    x = np.ones(3)
    with pytest.raises(TypeError, match="1 argument"):
        F.hvp(x)  # no v
    with pytest.raises(TypeError, match="1 argument"):
        F.hvp(x, x, x)
    with pytest.raises(TypeError, match="1 argument"):
        F.jvp(x)
    with pytest.raises(TypeError, match="argument"):
        F.hessian(x, x)
    with pytest.raises(TypeError, match="argument"):
        F.hessian()
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.hessian(np.ones(4))
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.hvp(x, np.ones(2))
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.jvp(x, np.ones((3, 2)))
    G = tg.trace(seed_f, 0.0, 0.0)
    with pytest.raises(TypeError, match="tuple of 2"):
        G.jvp(1.0, 2.0, (1.0,))
    with pytest.raises(TypeError, match="tuple of 2"):
        G.hvp(1.0, 2.0, 1.0)
    V = tg.trace(vec_fn, np.zeros(3))
    _, vjp_fn = V.vjp(x)
    with pytest.raises(ValueError, match="cotangent"):
        vjp_fn(np.ones(3))
    with pytest.raises(TypeError):
        F.hessian("abc")


def test_errors_on_non_scalar_functions():
    with pytest.raises(ValueError, match="scalar"):
        tg.hessian(vec_fn)(np.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        tg.hvp(vec_fn, (np.ones(3),), (np.ones(3),))
    V = tg.trace(vec_fn, np.zeros(3))
    for call in (lambda: V.hessian(np.ones(3)), lambda: V.hvp(np.ones(3), np.ones(3)),
                 lambda: V.grad(np.ones(3))):
        with pytest.raises(ValueError, match="scalar"):
            call()
    with pytest.raises(TypeError, match="scalar"):
        tg.grad(vec_fn)(np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        tg.value_and_grad(lambda x: "nope")(1.0)


def test_errors_on_functional_arguments():
    with pytest.raises(TypeError, match="Vars"):
        tg.grad(seed_f)(tg.Var(1.0), 2.0)
    with pytest.raises(TypeError, match="Vars"):
        tg.grad(lambda v: v.sum())(np.array([tg.Var(1.0), tg.Var(2.0)], dtype=object))
    with pytest.raises(TypeError, match="Vars"):
        tg.hessian(seed_f)(tg.Var(1.0), 2.0)
    with pytest.raises(TypeError, match="Vars"):
        tg.jvp(seed_f, (tg.Var(1.0), 2.0), (1.0, 0.0))
    with pytest.raises(TypeError, match="Vars"):
        tg.grad(lambda x: tg.grad(seed_f)(x, 1.0))(2.0)  # nesting grad: a clear message
    for bad in (2, -3, (0, 5)):
        with pytest.raises(ValueError, match="out of range"):
            tg.grad(seed_f, argnums=bad)(1.0, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        tg.hessian(seed_f, argnums=2)(1.0, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        tg.jacobian(seed_f, argnums=(3,))(1.0, 2.0)
    for bad in ((), (0.5,), "0"):
        with pytest.raises(TypeError, match="argnums"):
            tg.grad(seed_f, argnums=bad)(1.0, 2.0)
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        tg.jvp(seed_f, (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match="1 primals but 2 tangents"):
        tg.hvp(lambda a: a * a, (1.0,), (1.0, 2.0))
    with pytest.raises(TypeError, match="tuple"):
        tg.jvp(seed_f, 1.0, 1.0)
    with pytest.raises(TypeError, match="tuple"):
        tg.hvp(lambda a: a * a, 1.0, (1.0,))
    with pytest.raises(TypeError, match="callable"):
        tg.grad(3.0)
    with pytest.raises(TypeError, match="real numbers"):
        tg.grad(seed_f)("x", 1.0)


def test_threads_do_not_change_results():
    F = tg.trace(scalar_fn, np.zeros(3))
    rng = np.random.default_rng(6)
    X, V = rng.normal(size=(1500, 3)), rng.normal(size=(1500, 3))
    np.testing.assert_array_equal(F.hessian(X, threads=1), F.hessian(X, threads=2))
    np.testing.assert_array_equal(F.hvp(X, V, threads=1), F.hvp(X, V, threads=2))
    np.testing.assert_array_equal(F.jvp(X, V, threads=1)[1], F.jvp(X, V, threads=2)[1])
    H = F.hessian(X, threads=2)
    for i in (0, 511, 512, 1499):  # block edges
        close(H[i], F.hessian(X[i]), rel=1e-13, abs_=1e-15)


def test_planned_and_dense_hessian_columns_agree():
    """A batched Hessian visits, per column, only the slots that column can touch; past a
    memory cap it runs every slot instead (TAPEGRAD_HESSIAN_PLAN=dense forces that). Both
    must give the same Hessians, here on a function mixing linear, select and nonlinear
    ops, where some columns touch little of the graph."""
    import os
    import pickle
    import subprocess
    import sys

    def f(v):
        s = tg.where(tg.gt(v[0], 0.0), v[0] * v[1], -v[1])
        return (tg.sin(v[2]) * tg.exp(v[3] * 0.5) + s * s + tg.sqrt(v[4] * v[4] + 1.0)
                - 3.0 * v[1] + tg.tanh(v[0] - v[4]) / (2.0 + v[3] * v[3]))

    F = tg.trace(f, np.ones(5))
    X = np.random.default_rng(7).uniform(-2, 2, (37, 5))
    planned = F.hessian(X)
    code = ("import pickle, sys, numpy as np; F, X = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.buffer.write(pickle.dumps(F.hessian(X)))")
    env = dict(os.environ, TAPEGRAD_HESSIAN_PLAN="dense")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((F, X)),
                         capture_output=True, env=env, check=True).stdout
    dense = pickle.loads(out)
    np.testing.assert_allclose(planned, dense, rtol=1e-13, atol=1e-13)
    assert np.abs(planned).max() > 0.1 and np.allclose(planned, planned.transpose(0, 2, 1))


def test_one_point_jvp_hvp_equal_a_batch_of_one_and_fall_back_on_guards():
    """F.jvp / F.hvp at one point take a short path (Program.point_tangent); it runs the
    same sweeps as a batch of one point, so the numbers are the same bits. A point whose
    guard fails goes through the batch path, which retraces or raises."""
    def f(x, y):
        return tg.sin(x * y) * tg.exp(-y * y) + x ** 3 / (1 + y * y)

    F = tg.trace(f, 0.3, 0.8)
    for x, y, tx, ty in [(0.3, 0.8, 1.0, -2.0), (-1.5, 0.25, 0.5, 0.5), (2.0, -1.0, 0.0, 1.0)]:
        value, tangent = F.jvp(x, y, (tx, ty))
        bv, bt = F.jvp(np.array([x]), np.array([y]), (np.array([tx]), np.array([ty])))
        assert (value, tangent) == (bv[0], bt[0])
        assert isinstance(value, float) and isinstance(tangent, float)
        hx, hy = F.hvp(x, y, (tx, ty))
        bx, by = F.hvp(np.array([x]), np.array([y]), (np.array([tx]), np.array([ty])))
        assert (hx, hy) == (bx[0], by[0])
        H = F.hessian(x, y)
        assert math.isclose(hx, H[0][0] * tx + H[0][1] * ty, rel_tol=1e-12, abs_tol=1e-12)

    V = tg.trace(lambda v: v * v * 2.0, np.zeros(3))  # vector in, vector out
    value, tangent = V.jvp(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, -1.0]))
    assert value.shape == (3,) and np.array_equal(tangent, [4.0, 0.0, -12.0])

    def g(x):
        return x * x if x > 0 else -x * x * x

    G = tg.trace(g, 1.0)
    with pytest.raises(tg.TraceError, match="another branch"):
        G.hvp(-2.0, 1.0)
    R = tg.trace(g, 1.0, retrace=True)
    assert R.hvp(3.0, 1.0) == 2.0 and R.hvp(-2.0, 1.0) == 12.0  # -6x at x = -2
    assert R.jvp(-2.0, 1.0) == (8.0, -12.0)
