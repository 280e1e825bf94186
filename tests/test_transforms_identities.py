"""Identities between the transforms: jvp = J t, vjp = ct J, hvp = H v (and finite
differences of the gradient), and the blocks of several arguments.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import numpy as np
from transforms_helpers import close, fd, scalar_fn, vec_fn

import tapegrad as tg

# ---------------------------------------------------------------------------- identities


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
