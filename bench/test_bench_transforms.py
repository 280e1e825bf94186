"""Benchmarks for the second-order transforms, group "transforms": small HVP and
Hessian cases on traced tg.Functions and the eager tg.hessian. Cheap on purpose (CI runs
`pytest bench --benchmark-disable` as a smoke test). Nothing here asserts a timing; every
test checks its result against Rosenbrock's closed form. The target ratios (HVP vs
gradient at d = 1000, batched Hessian vs JAX) are measured by
`python bench/compare.py transforms`.

    python -m pytest bench/test_bench_transforms.py                       # timings
    python -m pytest bench/test_bench_transforms.py --benchmark-disable   # smoke
"""
from __future__ import annotations

import numpy as np
import pytest
from compare_transforms import rosen, rosen_grad, rosen_hessians, rosen_hvp
from harness import record_per_unit

import tapegrad as tg

RTOL = 1e-12


def point(d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + d).uniform(-1.5, 1.5, d)


@pytest.mark.benchmark(group="transforms")
@pytest.mark.parametrize("d", [100])
def test_hvp_one_point(benchmark, d):
    F = tg.trace(rosen, np.zeros(d))
    x, v = point(d), point(d, 1)
    hv = benchmark(F.hvp, x, v)
    np.testing.assert_allclose(hv, rosen_hvp(x, v), rtol=RTOL, atol=1e-9)


@pytest.mark.benchmark(group="transforms")
@pytest.mark.parametrize("d", [100])
def test_grad_one_point_baseline(benchmark, d):
    """The gradient the HVP is measured against (same function, same point)."""
    F = tg.trace(rosen, np.zeros(d))
    x = point(d)
    g = benchmark(F.grad, x)
    np.testing.assert_allclose(g, rosen_grad(x), rtol=RTOL, atol=1e-9)


@pytest.mark.benchmark(group="transforms")
@pytest.mark.parametrize("n_points", [1000])
def test_hessian_batched(benchmark, n_points):
    F = tg.trace(rosen, np.zeros(10))
    X = np.random.default_rng(2).uniform(-1.5, 1.5, (n_points, 10))
    H = benchmark(F.hessian, X)
    assert H.shape == (n_points, 10, 10)
    np.testing.assert_allclose(H, rosen_hessians(X), rtol=RTOL, atol=1e-9)
    record_per_unit(benchmark, "ns_per_point", n_points)


@pytest.mark.benchmark(group="transforms")
def test_hvp_batched(benchmark):
    F = tg.trace(rosen, np.zeros(10))
    rng = np.random.default_rng(3)
    X, V = rng.uniform(-1.5, 1.5, (1000, 10)), rng.normal(size=(1000, 10))
    hv = benchmark(F.hvp, X, V)
    want = np.einsum("nij,nj->ni", rosen_hessians(X), V)
    np.testing.assert_allclose(hv, want, rtol=RTOL, atol=1e-9)
    record_per_unit(benchmark, "ns_per_point", 1000)


@pytest.mark.benchmark(group="transforms")
def test_eager_hessian(benchmark):
    """tg.hessian(fn)(x): records fn, then n HVPs (d = 10)."""
    x = point(10)
    H = benchmark(tg.hessian(rosen), x)
    np.testing.assert_allclose(H, rosen_hessians(x)[0], rtol=RTOL, atol=1e-9)
