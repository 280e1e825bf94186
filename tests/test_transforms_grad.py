"""tg.grad and tg.value_and_grad: argnums, result types, arrays, has_aux, and eager
control flow evaluated at each call.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import math

import numpy as np
import pytest
from transforms_helpers import branchy, close, fd, scalar_fn

import tapegrad as tg

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


def test_every_transform_gives_floats_for_a_scalar_function_of_scalars():
    f = lambda x, y: x * y + tg.sin(x)  # noqa: E731
    out, vjp_fn = tg.vjp(f, 2.0, 3.0)
    assert type(out) is float and all(type(g) is float for g in vjp_fn(1.0))
    assert type(tg.grad(f)(2.0, 3.0)) is float
    assert all(type(v) is float for v in tg.jvp(f, (2.0, 3.0), (1.0, 0.0)))
    assert type(tg.value_and_grad(f)(2.0, 3.0)[0]) is float
