"""Traced vector functions: values and Jacobians, several arguments, 2-d outputs, and
batched Jacobians against one point at a time.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import importlib

import numpy as np
import pytest
from trace_helpers import assert_bits, central_difference, vec_fn, within

tg = importlib.import_module("tapegrad")

# ---------------------------------------------------------------------------- vector functions

def test_vector_function_values_and_jacobian():
    F = tg.trace(vec_fn, np.zeros(3), cse=False)
    rng = np.random.default_rng(6)
    for x in rng.uniform(-2, 2, (4, 3)):
        values = F(x)
        assert values.shape == (4,) and values.dtype == np.float64
        jac = F.jacobian(x)
        assert jac.shape == (4, 3) and jac.dtype == np.float64
        # against per-output eager gradients: the same sweep, seeded at one output
        for k in range(4):
            leaves = np.array([tg.Var(float(v)) for v in x], dtype=object)
            out = vec_fn(leaves)[k]
            out.backward()
            assert_bits(values[k], out.value)
            assert_bits(jac[k], [leaf.grad for leaf in leaves], f"row {k}")
        # against finite differences, column by column
        for i in range(3):
            e = np.eye(3)[i]
            fd = central_difference(lambda t, x=x, i=i, e=e: F(x + (t - x[i]) * e), x[i])
            np.testing.assert_allclose(jac[:, i], fd, rtol=1e-8, atol=1e-8)
        with pytest.raises(ValueError, match="scalar function"):
            F.grad(x)
        with pytest.raises(ValueError, match="scalar function"):
            F.value_and_grad(x)


def test_vector_function_of_several_arguments_and_2d_output():
    def fn(s, v):
        return [[s * v[0], v[1] / s], [tg.tanh(v[0] * v[1]), 1.5]]  # 1.5: a constant output

    F = tg.trace(fn, 1.0, np.ones(2))
    s, v = 0.7, np.array([-1.2, 0.4])
    values = F(s, v)
    assert values.shape == (2, 2)
    js, jv = F.jacobian(s, v)
    assert js.shape == (2, 2) and jv.shape == (2, 2, 2)
    assert values[1, 1] == 1.5 and js[1, 1] == 0 and (jv[1, 1] == 0).all()
    np.testing.assert_allclose(js[0], [v[0], -v[1] / s ** 2], rtol=1e-15)
    assert_bits(jv[0, 0], [s, 0.0])
    for i in range(2):
        e = np.eye(2)[i]
        fd = central_difference(lambda t, i=i, e=e: F(s, v + (t - v[i]) * e), v[i])
        np.testing.assert_allclose(jv[..., i], fd, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(js, central_difference(lambda t: F(t, v), s), rtol=1e-8, atol=1e-8)


def test_batched_jacobian_matches_per_point():
    F = tg.trace(vec_fn, np.zeros(3))
    X = np.random.default_rng(7).uniform(-2, 2, (2, 3, 3))
    values, jac = F(X), F.jacobian(X)
    assert values.shape == (2, 3, 4) and jac.shape == (2, 3, 4, 3)
    for idx in np.ndindex(2, 3):
        # entries combine at most one libm result (<= 4 ulp in libmvec) with O(1) inputs
        point, point_jac = F(X[idx]), F.jacobian(X[idx])
        assert within(values[idx], point, 1e-13 * np.maximum(np.abs(point), 1)).all()
        assert within(jac[idx], point_jac, 1e-13 * np.maximum(np.abs(point_jac), 1)).all()
