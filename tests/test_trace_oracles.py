"""Traced gradients against oracles: finite differences, the closed form of Rosenbrock's
gradient, and PyTorch float64 when it is installed.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import importlib
import math
import random

import numpy as np
import pytest
from trace_helpers import central_difference, f3, rosenbrock

tg = importlib.import_module("tapegrad")

# ---------------------------------------------------------------------------- oracles

def test_f3_gradient_matches_finite_differences():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    r = random.Random(3)
    for _ in range(10):
        p = [r.uniform(-2, 2) for _ in range(3)]
        grad = F.grad(*p)
        for i in range(3):
            def along(t, i=i, p=p):
                q = list(p)
                q[i] = t
                return float(F(*q))
            fd = central_difference(along, p[i])
            assert math.isclose(grad[i], fd, rel_tol=1e-8, abs_tol=1e-8), (p, i, grad[i], fd)


def test_rosenbrock_gradient_matches_finite_differences():
    d = 10
    F = tg.trace(rosenbrock, np.zeros(d))
    rng = np.random.default_rng(10)
    for _ in range(3):
        x = rng.uniform(-2, 2, d)
        grad = F.grad(x)
        assert grad.shape == (d,) and grad.dtype == np.float64
        for i in range(d):
            e = np.eye(d)[i]
            fd = central_difference(lambda t, x=x, i=i, e=e: float(F(x + (t - x[i]) * e)), x[i])
            assert math.isclose(grad[i], fd, rel_tol=1e-8, abs_tol=1e-6), (i, grad[i], fd)
        # and the closed form
        want = np.zeros(d)
        want[:-1] += -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
        want[1:] += 200 * (x[1:] - x[:-1] ** 2)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-9)


def test_f3_matches_torch():
    torch = pytest.importorskip("torch")
    from torch_oracle import value_and_grad as torch_value_and_grad  # imports torch

    F = tg.trace(f3, 0.5, 0.5, 0.5)
    rng = np.random.default_rng(4)
    P = rng.uniform(-2, 2, (50, 3))
    values, grads = F.value_and_grad(*P.T)
    for p, point in enumerate(P):
        tv, tgrads = torch_value_and_grad(lambda *t: f3(*t, lib=torch), *point)
        v, g = F.value_and_grad(*point)
        # terms are O(1): a libm/sleef ulp or two each, so 1e-12 absolute is generous
        assert math.isclose(v, tv, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(values[p], tv, rel_tol=1e-12, abs_tol=1e-12)
        for i in range(3):
            assert math.isclose(g[i], tgrads[i], rel_tol=1e-12, abs_tol=1e-12), (point, i)
            assert math.isclose(grads[i][p], tgrads[i], rel_tol=1e-12, abs_tol=1e-12), (point, i)


@pytest.mark.parametrize("d", [10, 1000])
def test_rosenbrock_matches_torch(d):
    pytest.importorskip("torch")
    from torch_oracle import value_and_grad as torch_value_and_grad  # imports torch

    F = tg.trace(rosenbrock, np.zeros(d))
    rng = np.random.default_rng(d)
    X = rng.uniform(-2, 2, (3, d))

    def torch_rosenbrock(x):
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    values, grads = F.value_and_grad(X)
    assert values.shape == (3,) and grads.shape == (3, d)
    for p, x in enumerate(X):
        tv, (tgrad,) = torch_value_and_grad(torch_rosenbrock, x)
        v, g = F.value_and_grad(x)
        # the value sums d-1 positive terms in another order: n*eps relative at most
        assert math.isclose(v, tv, rel_tol=1e-12) and math.isclose(values[p], tv, rel_tol=1e-12)
        # each component has <= 3 terms of size <= ~1e4: 1e-9 absolute is ~1e4 * 1e-13
        np.testing.assert_allclose(g, tgrad, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(grads[p], tgrad, rtol=1e-12, atol=1e-9)
