"""The transforms of a traced tg.Function over batches and guards: shapes and
broadcasting, guard failures and retracing in second order, where(), pickling, threads,
planned and dense Hessian columns, and the one-point jvp/hvp path.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import math

import numpy as np
import pytest
from transforms_helpers import branchy, close, rosen, rosen_hessian, scalar_fn

import tapegrad as tg

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
