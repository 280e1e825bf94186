"""Second order in closed form: f = x² + xy (the first worked example) exactly, and the
Rosenbrock Hessian.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import numpy as np
import pytest
from transforms_helpers import close, rosen, rosen_hessian, x2_plus_xy

import tapegrad as tg

# ---------------------------------------------------------------------------- worked example


@pytest.mark.parametrize("x, y", [(1.0, 2.0), (-3.5, 0.25), (0.0, 0.0)])
def test_worked_example_hessian_is_exact(x, y):
    H = tg.hessian(lambda v: x2_plus_xy(v[0], v[1]))(np.array([x, y]))
    assert isinstance(H, np.ndarray) and H.dtype == np.float64
    np.testing.assert_array_equal(H, [[2.0, 1.0], [1.0, 0.0]])
    assert tg.hessian(x2_plus_xy, argnums=(0, 1))(x, y) == ((2.0, 1.0), (1.0, 0.0))
    assert tg.hessian(x2_plus_xy, argnums=0)(x, y) == 2.0
    assert tg.hessian(x2_plus_xy, argnums=1)(x, y) == 0.0
    assert tg.hessian(x2_plus_xy, argnums=(1,))(x, y) == ((0.0,),)
    F = tg.trace(x2_plus_xy, 0.3, 0.4)
    assert F.hessian(x, y) == ((2.0, 1.0), (1.0, 0.0))


def test_worked_example_jvp_vjp_hvp_are_exact():
    x, y, tx, ty = 1.5, -2.0, 0.5, 4.0
    value, tout = tg.jvp(x2_plus_xy, (x, y), (tx, ty))
    assert value == x * x + x * y
    assert tout == (2 * x + y) * tx + x * ty
    value, vjp_fn = tg.vjp(x2_plus_xy, x, y)
    assert value == x * x + x * y
    assert vjp_fn(3.0) == (3.0 * (2 * x + y), 3.0 * x)
    assert tg.hvp(x2_plus_xy, (x, y), (tx, ty)) == (2 * tx + ty, tx)
    # the array form
    v, t = np.array([x, y]), np.array([tx, ty])
    value, tout = tg.jvp(lambda a: x2_plus_xy(a[0], a[1]), (v,), (t,))
    assert (value, tout) == (x * x + x * y, (2 * x + y) * tx + x * ty)
    np.testing.assert_array_equal(tg.hvp(lambda a: x2_plus_xy(a[0], a[1]), (v,), (t,)),
                                  [2 * tx + ty, tx])
    value, vjp_fn = tg.vjp(lambda a: x2_plus_xy(a[0], a[1]), v)
    (g,) = vjp_fn(2.0)
    np.testing.assert_array_equal(g, [2.0 * (2 * x + y), 2.0 * x])
    # and on a traced Function
    F = tg.trace(x2_plus_xy, 0.0, 0.0)
    assert F.jvp(x, y, (tx, ty)) == (x * x + x * y, (2 * x + y) * tx + x * ty)
    assert F.hvp(x, y, (tx, ty)) == (2 * tx + ty, tx)
    value, vjp_fn = F.vjp(x, y)
    assert value == x * x + x * y and vjp_fn(1.0) == (2 * x + y, x)


# ---------------------------------------------------------------------------- Rosenbrock


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
