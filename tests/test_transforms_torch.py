"""PyTorch torch.func (jacrev, hessian, jvp, vjp) in float64 as an oracle for tapegrad's
functional transforms: every op in the table (through tests/torch_oracle.py's TORCH map)
and a few multi-op functions, at one point and batched. Skipped when torch is not
installed (`pip install torch==2.13.0`)."""
import random
import warnings

import numpy as np
import pytest
from helpers import spec_for, table_ops

torch = pytest.importorskip("torch")

from torch import func as tf  # noqa: E402
from torch_oracle import tensor as T  # noqa: E402
from torch_oracle import torch_fn, torch_rel  # noqa: E402

import tapegrad as tg  # noqa: E402

# torch.func.jvp's first call imports torch._decomp.decompositions_for_jvp, which
# torch.jit.script's the decompositions: a DeprecationWarning in torch 2.13, an error under
# filterwarnings = error. Importing it once here, warnings off, makes the later import a no-op.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch._decomp.decompositions_for_jvp  # noqa: E402, F401

OPS = table_ops()
N_POINTS = 6
REL, ABS = 1e-10, 1e-12


def close(got, want, rel=REL, abs_=ABS):
    got = np.asarray(got, dtype=np.float64)
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rel, atol=abs_)


def as_matrix(H, n):
    return np.array(H if n > 1 else [[H]], dtype=np.float64)


# ---------------------------------------------------------------------------- every op


@pytest.mark.parametrize("op, arity", OPS, ids=[op for op, _ in OPS])
def test_op_transforms_match_torch_func(op, arity):
    """Per op, on its domain: F.jvp, F.vjp, F.grad (jacrev) and F.hessian against
    torch.func on the op's PyTorch counterpart, as a function of a vector of operands."""
    spec, fn = spec_for(op), torch_fn(op)
    r = random.Random(f"torch-transforms-{op}")
    points = [tuple(float(a) for a in spec.domain(r)) for _ in range(N_POINTS)]
    F = tg.trace(getattr(tg, op), *points[0])

    def tfn(v):
        return fn(*v.unbind())

    rel = torch_rel(op, REL)
    for args in points:
        x = T(args)
        t = [r.uniform(-2.0, 2.0) for _ in range(arity)]
        value, tout = F.jvp(*args, tuple(t) if arity == 2 else t[0])
        t_value, t_tout = tf.jvp(tfn, (x,), (T(t),))
        close([value, tout], [t_value.item(), t_tout.item()], rel)
        ct = r.uniform(-2.0, 2.0)
        _, vjp_fn = F.vjp(*args)
        _, t_vjp = tf.vjp(tfn, x)
        close(np.atleast_1d(vjp_fn(ct)), t_vjp(T(ct))[0], rel)
        close(np.atleast_1d(F.grad(*args)), tf.jacrev(tfn)(x), rel)
        H = as_matrix(F.hessian(*args), arity)
        t_H = tf.hessian(tfn)(x)
        scale = max(1.0, float(t_H.abs().max()))
        close(H, t_H, rel, abs_=ABS * scale)


# ---------------------------------------------------------------------------- multi-op functions
# Each written once over a module-like namespace, so tapegrad and torch run the same ops.


class TgNS:
    sin, cos, exp, log, tanh, sigmoid, sqrt = tg.sin, tg.cos, tg.exp, tg.log, tg.tanh, \
        tg.sigmoid, tg.sqrt
    maximum, relu = tg.maximum, tg.relu

    @staticmethod
    def stack(xs):
        return np.array(xs, dtype=object)


class TorchNS:
    sin, cos, exp, log, tanh, sigmoid, sqrt = torch.sin, torch.cos, torch.exp, torch.log, \
        torch.tanh, torch.sigmoid, torch.sqrt
    maximum, relu = torch.maximum, torch.relu
    stack = staticmethod(torch.stack)


def rosen(m, x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def mixed(m, x):
    return (m.log(1 + x[0] ** 2) * m.cos(x[1]) + x[0] * x[1] * x[2]
            + m.sigmoid(x[2] - x[0]) + m.exp(-x[3] * x[3]) / (1 + m.sqrt(1 + x[1] ** 2)))


def softplus_net(m, x):
    """A tiny two-layer net with shared weights (reuse of intermediates)."""
    h = [m.tanh(x[0] * 0.5 - x[1] + 0.1 * k) * x[2] for k in range(3)]
    return sum(hk * hk for hk in h) + m.log(1 + m.exp(h[0] - h[2])) + x[3] ** 3 * h[1]


def vec(m, x):
    return m.stack([m.sin(x[0] * x[1]) + x[2] ** 3, m.exp(x[0]) * m.tanh(x[3]) - x[1],
                    x[0] / (2 + x[3] * x[3])])


SCALAR_FNS = {"rosen": rosen, "mixed": mixed, "softplus_net": softplus_net}
N_IN = 4


@pytest.mark.parametrize("name", SCALAR_FNS)
def test_scalar_functions_match_torch_func(name):
    f = SCALAR_FNS[name]
    rng = np.random.default_rng(len(name))
    F = tg.trace(lambda x: f(TgNS, x), np.zeros(N_IN))

    def tfn(x):
        return f(TorchNS, x)

    X = rng.uniform(-1.5, 1.5, (5, N_IN))
    V = rng.normal(size=(5, N_IN))
    HB, VB = F.hessian(X), F.hvp(X, V)
    assert HB.shape == (5, N_IN, N_IN) and VB.shape == (5, N_IN)
    for x, v, Hb, hvb in zip(X, V, HB, VB):
        t_H = tf.hessian(tfn)(T(x))
        scale = max(1.0, float(t_H.abs().max()))
        close(F.hessian(x), t_H, abs_=ABS * scale)
        close(tg.hessian(lambda a: f(TgNS, a))(x), t_H, abs_=ABS * scale)
        close(Hb, t_H, rel=1e-10, abs_=ABS * scale)
        t_hvp = tf.jvp(tf.grad(tfn), (T(x),), (T(v),))[1]
        close(F.hvp(x, v), t_hvp, abs_=ABS * scale)
        close(hvb, t_hvp, abs_=ABS * scale)
        close(F.grad(x), tf.jacrev(tfn)(T(x)))
        value, tout = F.jvp(x, v)
        t_value, t_tout = tf.jvp(tfn, (T(x),), (T(v),))
        close([value, tout], [t_value.item(), t_tout.item()])


def test_vector_function_matches_torch_func():
    rng = np.random.default_rng(7)
    F = tg.trace(lambda x: vec(TgNS, x), np.zeros(N_IN))

    def tfn(x):
        return vec(TorchNS, x)

    X = rng.uniform(-1.5, 1.5, (4, N_IN))
    Tn = rng.normal(size=(4, N_IN))
    C = rng.normal(size=(4, 3))
    values, touts = F.jvp(X, Tn)
    assert values.shape == touts.shape == (4, 3)
    _, vjp_fn = F.vjp(X)
    pulled = vjp_fn(C)
    assert pulled.shape == (4, N_IN)
    for i, (x, t, c) in enumerate(zip(X, Tn, C)):
        close(F.jacobian(x), tf.jacrev(tfn)(T(x)))
        close(tg.jacobian(lambda a: vec(TgNS, a))(x), tf.jacrev(tfn)(T(x)))
        t_value, t_tout = tf.jvp(tfn, (T(x),), (T(t),))
        close(values[i], t_value)
        close(touts[i], t_tout)
        _, t_vjp = tf.vjp(tfn, T(x))
        close(pulled[i], t_vjp(T(c))[0])
        value, eager_vjp = tg.vjp(lambda a: vec(TgNS, a), x)
        close(value, t_value)
        (g,) = eager_vjp(c)
        close(g, t_vjp(T(c))[0])


def test_two_argument_hessian_blocks_match_torch_func():
    def f(m, s, v):
        return s * s * v[0] + m.sin(s * v[1]) + v[0] * v[1] * v[2] + m.exp(s) * v[2] ** 2

    F = tg.trace(lambda s, v: f(TgNS, s, v), 0.5, np.ones(3))
    s, v = 0.7, np.array([0.3, -1.2, 2.0])
    H = F.hessian(s, v)
    t_H = tf.hessian(lambda a, b: f(TorchNS, a, b), argnums=(0, 1))(T(s), T(v))
    for a in range(2):
        for b in range(2):
            close(H[a][b], t_H[a][b])
    blocks = tg.hessian(lambda a, b: f(TgNS, a, b), argnums=(0, 1))(s, v)
    for a in range(2):
        for b in range(2):
            close(blocks[a][b], t_H[a][b])


# Not y = 0: torch's pow backward masks d/dx to 0 where y == 0 (masked_fill), so its own
# Hessian there lacks the mixed term 1/x (asymmetric); tests/test_transforms_ops.py checks
# y = 0 against the closed form instead.
@pytest.mark.parametrize("y", [0.5, 1.0, 2.0, 3.0])
def test_pow_hessian_at_integer_exponents_matches_torch_func(y):
    """pow(x, y) with both operands inputs, at the exponents its rule special-cases."""
    F = tg.trace(tg.pow, 1.2, 0.7)
    x = 1.5
    t_H = tf.hessian(lambda v: torch.pow(v[0], v[1]))(T([x, y]))
    close(as_matrix(F.hessian(x, y), 2), t_H)


def test_outer_no_grad_is_ignored_by_transforms_as_in_torch_func():
    """torch.func.grad / hessian inside torch.no_grad still differentiate; tg's too."""
    def cube_t(x):
        return x * x * x

    def cube(x):
        return x * x * x

    x = T(2.0)
    with torch.no_grad():
        t_g, t_h = tf.grad(cube_t)(x), tf.hessian(cube_t)(x)
    with tg.no_grad():
        g, h = tg.grad(cube)(2.0), tg.hessian(cube)(2.0)
    assert (t_g.item(), t_h.item()) == (12.0, 12.0)
    assert (g, h) == (t_g.item(), t_h.item())
