"""Benchmarks for tapegrad's trace/replay figures (tg.trace -> tg.Function).

Groups: replay-point (one point: Rosenbrock d=1000 gradient, the MLP step, F3 at one
point), replay-batch (F3 gradient at 1e5 points, per point in extra_info), trace-time
(tg.trace vs eager build of the same graph), replay-threads (F3 at 1e6 points, 1 vs 2
threads) and replay-peers (JAX / CasADi on the same workloads, skipped when absent).
Nothing here asserts a timing; every test checks its result against a float64 reference
(1e-9 relative). Side-by-side ratios with verdicts: `python bench/compare.py replay`.

    python -m pytest bench/test_bench_replay.py                       # timings
    python -m pytest bench/test_bench_replay.py --benchmark-disable   # smoke: each runs once
"""
from __future__ import annotations

import numpy as np
import pytest
import replay_workloads as R
from harness import collect, record_per_unit

REL_TOL = 1e-9


def assert_close(got, want) -> None:
    err = R.rel_err(got, want)
    assert err <= REL_TOL, f"max-norm relative error {err:.3e} > {REL_TOL}"


# ---------------------------------------------------------------- shared, built once


@pytest.fixture(scope="module")
def rosen1000():
    x = R.rosen_point(1000)
    value, grad = R.eager_value_and_grad(R.rosen_loop, x)  # tapegrad eager: the reference
    return x, value, grad


@pytest.fixture(scope="module")
def mlp():
    X, y = R.two_moons()
    p = R.mlp_params()
    t = R.TapegradMLP(X, y, p)
    value, grad = R.eager_value_and_grad(t.loss, p)
    return t, p, value, grad


@pytest.fixture(scope="module")
def f3_data():
    X, Y, Z = R.f3_points(R.F3_N)
    return (X, Y, Z), R.f3_grad_numpy(X, Y, Z)


@pytest.fixture(scope="module")
def f3_tapegrad():
    return R.TapegradF3()


# ---------------------------------------------------------------- one point


@pytest.mark.benchmark(group="replay-point")
@pytest.mark.parametrize("form", ["loop", "slices"])
def test_rosenbrock_grad(benchmark, rosen1000, form):
    """F.grad(x) at a new point, d=1000, numpy in and out."""
    x, value, grad = rosen1000
    t = R.TapegradRosen(1000, form)
    got = benchmark(t.grad, x)
    assert_close(got, grad)
    assert_close(t.F(x), value)
    benchmark.extra_info.update(n_ops=t.F.n_ops)
    record_per_unit(benchmark, "ns_per_op", t.F.n_ops)


@pytest.mark.benchmark(group="replay-point")
def test_mlp_step(benchmark, mlp):
    """micrograd's demo step replayed: value and gradient w.r.t. the 337 parameters."""
    t, p, value, grad = mlp
    v, g = benchmark(t.value_and_grad, p)
    assert_close(v, value)
    assert_close(g, grad)
    benchmark.extra_info.update(n_ops=t.F.n_ops)
    record_per_unit(benchmark, "ns_per_op", t.F.n_ops)


@pytest.mark.benchmark(group="replay-point")
def test_f3_one_point(benchmark, f3_tapegrad):
    """F3's gradient at one point (scalars in, a tuple of floats out): the call overhead."""
    x, y, z = 0.3, -0.7, 1.1
    got = benchmark(f3_tapegrad.F.grad, x, y, z)
    want = R.f3_grad_numpy(np.array(x), np.array(y), np.array(z))
    assert_close(np.array(got), np.array(want))


# ---------------------------------------------------------------- batched


@pytest.mark.benchmark(group="replay-batch")
@pytest.mark.parametrize("threads", [1, 2])
def test_f3_batch(benchmark, f3_tapegrad, f3_data, threads):
    """F3's gradient at 1e5 points (extra_info: ns per point)."""
    args, want = f3_data
    got = benchmark(f3_tapegrad.grad, *args, threads=threads)
    for g, w in zip(got, want):
        assert_close(g, w)
    record_per_unit(benchmark, "ns_per_point", R.F3_N)


@pytest.mark.benchmark(group="replay-batch")
def test_f3_numpy_floor(benchmark, f3_data):
    """The hand-written numpy gradient at the same points: the floor to compare with."""
    args, want = f3_data
    got = benchmark(R.f3_grad_numpy, *args)
    for g, w in zip(got, want):
        assert_close(g, w)
    record_per_unit(benchmark, "ns_per_point", R.F3_N)


# ---------------------------------------------------------------- trace time


def _trace_workload(name):
    if name == "mlp":
        X, y = R.two_moons()
        return R.make_mlp_loss_tapegrad(X, y), R.mlp_params()
    d = int(name.removeprefix("rosen"))
    return R.rosen_loop, R.rosen_point(d)


@pytest.mark.benchmark(group="trace-time")
@pytest.mark.parametrize("workload", ["rosen1000", "rosen10000", "mlp"])
@pytest.mark.parametrize("mode", ["trace", "eager-build", "eager-build+backward"])
def test_trace_time(benchmark, workload, mode):
    """tg.trace(fn, example) vs fn on fresh Var leaves (eager), same graph; GC collected
    (untimed) before each round."""
    import tapegrad as tg

    fn, x = _trace_workload(workload)
    if mode == "trace":
        def run():
            return tg.trace(fn, x)
    elif mode == "eager-build":
        def run():
            return fn(R.var_array(x)).value
    else:
        def run():
            leaves = R.var_array(x)
            fn(leaves).backward()
            return leaves

    out = benchmark.pedantic(run, setup=collect, rounds=5, warmup_rounds=1)
    value, grad = R.eager_value_and_grad(fn, x)
    if mode == "trace":
        v, g = out.value_and_grad(x)
        assert_close(v, value)
        assert_close(g, grad)
        benchmark.extra_info["n_ops"] = out.n_ops
    elif mode == "eager-build":
        assert_close(out, value)
    else:
        assert_close(np.array([leaf.grad for leaf in out]), grad)
    del out


# ---------------------------------------------------------------- threads


@pytest.fixture(scope="module")
def f3_big():
    X, Y, Z = R.f3_points(R.THREADS_N)
    return (X, Y, Z), R.f3_grad_numpy(X, Y, Z)


@pytest.mark.benchmark(group="replay-threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_threads(benchmark, f3_tapegrad, f3_big, threads):
    """F3's gradient at 1e6 points on 1 and 2 threads (speed-up = ratio of the two)."""
    args, want = f3_big
    got = benchmark.pedantic(f3_tapegrad.grad, args=args, kwargs={"threads": threads},
                             rounds=5, warmup_rounds=1)
    for g, w in zip(got, want):
        assert_close(g, w)
    record_per_unit(benchmark, "ns_per_point", R.THREADS_N)


# ---------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def jax_():
    pytest.importorskip("jax")
    return R.jax_setup()


@pytest.fixture(scope="module")
def casadi_():
    return pytest.importorskip("casadi")


@pytest.mark.benchmark(group="replay-peers")
def test_peer_jax_rosenbrock(benchmark, jax_, rosen1000):
    x, _, grad = rosen1000
    j = R.JaxRosen(1000)
    assert_close(benchmark(j.grad, x), grad)
    benchmark.extra_info["compile_s"] = j.compile_s


@pytest.mark.benchmark(group="replay-peers")
@pytest.mark.parametrize("path", ["buffer", "call"])
def test_peer_casadi_rosenbrock(benchmark, casadi_, rosen1000, path):
    x, _, grad = rosen1000
    c = R.CasadiRosen(1000)
    fn = c.grad_buffer if path == "buffer" else c.grad_call
    assert_close(benchmark(fn, x), grad)


@pytest.mark.benchmark(group="replay-peers")
def test_peer_jax_f3(benchmark, jax_, f3_data):
    args, want = f3_data
    j = R.JaxF3(R.F3_N)
    for g, w in zip(benchmark(j.grad, *args), want):
        assert_close(g, w)
    record_per_unit(benchmark, "ns_per_point", R.F3_N)


@pytest.mark.benchmark(group="replay-peers")
def test_peer_casadi_f3(benchmark, casadi_, f3_data):
    args, want = f3_data
    c = R.CasadiF3(R.F3_N)
    got = benchmark.pedantic(c.grad_buffer, args=args, rounds=5)
    for g, w in zip(got, want):
        assert_close(g, w)
    record_per_unit(benchmark, "ns_per_point", R.F3_N)


@pytest.mark.benchmark(group="replay-peers")
def test_peer_jax_mlp(benchmark, jax_, mlp):
    t, p, value, grad = mlp
    j = R.JaxMLP(t.X, t.y)
    v, g = benchmark(j.value_and_grad, p)
    assert_close(v, value)
    assert_close(g, grad)


@pytest.mark.benchmark(group="replay-peers")
def test_peer_casadi_mlp(benchmark, casadi_, mlp):
    t, p, value, grad = mlp
    c = R.CasadiMLP(t.X, t.y)
    v, g = benchmark(c.value_and_grad_buffer, p)
    assert_close(v, value)
    assert_close(g, grad)
