"""Benchmarks for tapegrad.nn (group "nn"): micrograd's moons demo step (MLP 2-16-16-1,
100 points, SVM loss + 1e-4 L2, SGD) eagerly, traced, and in micrograd itself; the trace
of the loss; the traced forward pass on a grid; the demo's 100 traced steps.

Nothing asserts a timing; each benchmark checks its result (the demo's first loss is
micrograd's, 0.8958441028683222). Steps use lr = 0 so that every round computes the same
numbers as the first. Side-by-side ratios and the targets: `python bench/compare.py nn`.

    python -m pytest bench/test_bench_nn.py                       # timings
    python -m pytest bench/test_bench_nn.py --benchmark-disable   # smoke: each runs once
"""
from __future__ import annotations

import compare_nn as C
import numpy as np
import pytest
from harness import collect

import tapegrad.nn as nn
from tapegrad.nn import demo

FIRST_LOSS = 0.8958441028683222


@pytest.fixture(scope="module")
def moons():
    return C.data()


@pytest.mark.benchmark(group="nn")
def test_nn_eager_step(benchmark, moons):
    X, y = moons
    model = nn.MLP(2, [16, 16, 1], seed=C.SEED)
    opt = nn.SGD(model.parameters(), lr=0.0)
    Xl, yl = X.tolist(), y.tolist()

    def step():
        loss = demo.moons_loss(model, Xl, yl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.value

    assert benchmark(step) == pytest.approx(FIRST_LOSS, rel=1e-15)


@pytest.mark.benchmark(group="nn")
def test_nn_traced_step(benchmark, moons):
    X, y = moons
    model = nn.MLP(2, [16, 16, 1], seed=C.SEED)
    loss = nn.compile_loss(model, demo.moons_loss, X, y)
    theta = nn.get_parameters(model)
    opt = nn.SGD(theta, lr=0.0)

    def step():
        value, grad = loss.value_and_grad(theta)
        opt.step(grad)
        return value, grad

    value, grad = benchmark(step)
    assert value == pytest.approx(FIRST_LOSS, rel=1e-15)
    eager = demo.moons_loss(model, X, y)
    eager.backward()
    np.testing.assert_allclose(grad, [p.grad for p in model.parameters()], rtol=1e-12, atol=1e-16)


@pytest.mark.benchmark(group="nn")
def test_nn_compile_loss(benchmark, moons):
    X, y = moons
    model = nn.MLP(2, [16, 16, 1], seed=C.SEED)
    loss = benchmark.pedantic(lambda: nn.compile_loss(model, demo.moons_loss, X, y),
                              setup=collect, rounds=5, warmup_rounds=1)
    assert loss(nn.get_parameters(model)) == pytest.approx(FIRST_LOSS, rel=1e-15)


@pytest.mark.benchmark(group="nn")
def test_nn_forward_grid(benchmark, moons):
    """The decision-boundary plot's work: the traced model on a 100 x 100 grid, batched."""
    X, _ = moons
    model = nn.MLP(2, [16, 16, 1], seed=C.SEED)
    forward = nn.compile_model(model, X[0])
    theta = nn.get_parameters(model)
    g = np.linspace(-2, 2, 100)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    out = benchmark(forward, theta, grid)
    assert out.shape == (10_000,)
    np.testing.assert_allclose(out[::997], [model(p).value for p in grid[::997]], rtol=1e-12,
                               atol=1e-14)


@pytest.mark.benchmark(group="nn")
def test_nn_demo_100_traced_steps(benchmark, moons):
    X, y = moons

    def train():
        system = C.TapegradTraced(X, y)
        return [system.step(k) for k in range(C.STEPS)]

    losses = benchmark.pedantic(train, setup=collect, rounds=5, warmup_rounds=1)
    assert losses[0] == pytest.approx(FIRST_LOSS, rel=1e-15) and losses[-1] < 0.02


@pytest.mark.benchmark(group="nn")
def test_nn_micrograd_step(benchmark, moons):
    pytest.importorskip("micrograd")
    X, y = moons
    system = C.MicrogradDemo(X, y)

    def step():
        total_loss, _ = system.loss()
        system.model.zero_grad()
        total_loss.backward()
        return total_loss.data  # no update: every round the same numbers

    loss = benchmark.pedantic(step, rounds=3, iterations=1)
    assert loss == pytest.approx(FIRST_LOSS, rel=1e-12)
