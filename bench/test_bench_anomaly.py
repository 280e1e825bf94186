"""Benchmarks for tg.detect_anomaly()'s overhead (target: on <= 3x off).

Group "anomaly": eager build + backward of the 1e5-node speed() graph, backward() alone
on it, and a traced batched F3 value_and_grad at 1e5 points, each with detection off and
on. Nothing here asserts a timing; every test checks that its result is bit-identical to
the detection-off result. Side-by-side ratios from one run: `python bench/compare.py anomaly`.

    python -m pytest bench/test_bench_anomaly.py                       # timings
    python -m pytest bench/test_bench_anomaly.py --benchmark-disable   # smoke: each runs once
"""
from __future__ import annotations

import compare_anomaly as A
import pytest
from harness import collect, record_per_unit

import tapegrad as tg

DETECTION = pytest.mark.parametrize("detection", ["off", "on"])


def maybe_detect(fn, detection):
    return A.with_detection(fn) if detection == "on" else fn


@pytest.fixture(scope="module")
def eager_expected():
    return A.eager_mixed()


@pytest.fixture(scope="module")
def replay():
    F, points = A.replay_setup()
    return F, points, A.replay_value_and_grad(F, points)


@pytest.fixture(scope="module")
def graph():
    return A.eager_graph()


@pytest.mark.benchmark(group="anomaly")
@DETECTION
def test_eager_build_and_backward(benchmark, eager_expected, detection):
    """The speed() loop: 100,002 nodes built from Python, then backward."""
    got = benchmark.pedantic(maybe_detect(A.eager_mixed, detection), setup=collect,
                             rounds=5, iterations=1, warmup_rounds=1)
    assert A.bit_identical(got, eager_expected)
    assert not tg._core.is_anomaly_enabled()
    record_per_unit(benchmark, "ns_per_node", 3 * A.EAGER_STEPS)


@pytest.mark.benchmark(group="anomaly")
@DETECTION
def test_eager_backward_alone(benchmark, graph, eager_expected, detection):
    """backward() on the prebuilt graph: the sweep plus, when on, the edge scan."""
    got = benchmark(maybe_detect(A.eager_backward, detection), graph)
    assert A.bit_identical(got, eager_expected)
    record_per_unit(benchmark, "ns_per_node", 3 * A.EAGER_STEPS)


@pytest.mark.benchmark(group="anomaly")
@DETECTION
def test_replay_value_and_grad_batch(benchmark, replay, detection):
    """F3 traced once; value_and_grad at 1e5 points, one thread."""
    F, points, expected = replay
    got = benchmark(maybe_detect(A.replay_value_and_grad, detection), F, points)
    assert A.bit_identical(got, expected)
    record_per_unit(benchmark, "ns_per_point", A.REPLAY_POINTS)
