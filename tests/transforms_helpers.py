"""Shared by the test_transforms_* files: finite differences, comparisons, and the
functions whose derivatives are known in closed form."""
import numpy as np

import tapegrad as tg

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


def x2_plus_xy(x, y):
    """The first worked example, f = x² + xy."""
    return x ** 2 + x * y


def rosen(x):
    """Extended Rosenbrock: sum 100 (x[i+1] - x[i]²)² + (1 - x[i])²."""
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def rosen_hessian(x):
    d = len(x)
    H = np.zeros((d, d))
    for i in range(d - 1):
        H[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        H[i + 1, i + 1] += 200
        H[i, i + 1] = H[i + 1, i] = -400 * x[i]
    return H


def vec_fn(x):
    """R^3 -> R^2 (a vector function for jacobian / jvp / vjp)."""
    return np.array([tg.sin(x[0] * x[1]) + x[2] ** 3, tg.exp(x[0]) * tg.tanh(x[2]) - x[1]])


def scalar_fn(x):
    return tg.log(1 + x[0] ** 2) * tg.cos(x[1]) + x[0] * x[1] * x[2] + tg.sigmoid(x[2] - x[0])


def branchy(x):
    """A Python branch on x, which a trace records as a guard."""
    if x > 0:
        return x ** 3
    return -(x ** 2) + tg.sin(x)
