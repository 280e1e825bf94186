"""tg.detect_anomaly in traced replays: the line inside the traced function, the first bad
point of a batch (2-d, threads, array arguments), gradient-only anomalies in grad,
jacobian and vjp, and a replay without its Python function.

Lines are never hard-coded: a statement that should be blamed carries a marker comment
``# @name`` (see anomaly_helpers.markers).
"""
import math
import pickle

import numpy as np
import pytest
from anomaly_helpers import markers, same_bits

import tapegrad as tg

inf, nan = math.inf, math.nan

LINES, at, source = markers(__file__)
pytestmark = pytest.mark.usefixtures("detection_starts_off")


# ---------------------------------------------------------------------------- traced replays

def fn(x, y):
    a = x * y
    b = tg.log(a)  # @fnlog
    return b + tg.sqrt(y)  # @fnsqrt


def grad_only(x):
    return tg.sqrt(x) * 3.0


@pytest.fixture(scope="module")
def F():
    return tg.trace(fn, 1.0, 2.0)


def test_replay_at_one_point_names_the_line_inside_fn(F):
    assert math.isinf(F(0.0, 2.0))  # off: the replay's IEEE value
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            F(0.0, 2.0)
    e = info.value
    assert (e.kind, e.op, e.inputs) == ("forward", "log", (0.0,))
    assert e.location.endswith(f"{__file__}:{LINES['fnlog']}")
    assert e.source == source("fnlog")
    assert str(e).startswith("in a replay of fn: log(0) = -inf")


@pytest.mark.parametrize("method", ["__call__", "value_and_grad", "grad"])
def test_replay_of_a_batch_names_the_first_bad_point(F, method):
    x = np.array([1.0, 2.0, 0.0, 3.0, -1.0])  # bad at 2 (log 0) and 4 (log of -2)
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            getattr(F, method)(x, 2.0)
    e = info.value
    assert (e.kind, e.op, e.inputs) == ("forward", "log", (0.0,))
    assert e.location == at("fnlog")
    assert str(e).startswith("in a replay of fn at batch point (2,): ")


def test_replay_of_a_2d_batch_with_threads(F):
    x = np.ones((3, 4))
    y = np.full((3, 4), 2.0)
    y[2, 1] = -1.0  # log(-1) = nan at point (2, 1)
    y[1, 3] = -0.0  # log(-0) = -inf at point (1, 3): the first bad point in C order
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            F.value_and_grad(x, y, threads=2)
    e = info.value
    assert str(e).startswith("in a replay of fn at batch point (1, 3): ")
    assert e.op == "log" and e.location == at("fnlog")


def test_replay_nan_input_is_blamed_on_the_input(F):
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            F.grad(np.array([1.0, nan, 3.0]), 1.0)
    e = info.value
    assert e.kind == "input" and e.op == "mul"
    assert "leaf" in str(e)
    assert str(e).startswith("in a replay of fn at batch point (1,): ")


def test_replay_with_array_arguments_names_the_point():
    def vec(v):
        s = v[0] * v[1]
        return tg.log(s) + v[2]  # @veclog

    V = tg.trace(vec, np.ones(3))
    X = np.ones((2, 3, 3))
    X[1, 2, 0] = 0.0
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            V.grad(X)
    assert info.value.location == at("veclog")
    assert str(info.value).startswith("in a replay of vec at batch point (1, 2): ")


def test_gradient_only_anomaly_in_a_replayed_grad():
    G = tg.trace(grad_only, 1.0)
    x = np.array([1.0, 0.0, 4.0])
    with tg.detect_anomaly():
        values = G(x)  # the values are finite: no anomaly there
        assert same_bits(values, np.array([3.0, 0.0, 6.0]))
        with pytest.raises(tg.AnomalyError) as info:
            G.grad(x)  # @replaygrad
    e = info.value
    assert (e.kind, e.op, e.inputs) == ("backward", "sqrt", (0.0,))
    msg = str(e)
    assert msg.startswith("in a replay of grad_only at batch point (1,): backward: ")
    assert "g / (2 * out)" in msg
    # a backward anomaly is located where backward ran: here the F.grad call
    assert e.location == at("replaygrad")

    with tg.detect_anomaly():  # one point: the C++ fast path is bypassed in anomaly mode
        with pytest.raises(tg.AnomalyError) as info:
            G.value_and_grad(0.0)
    assert str(info.value).startswith("in a replay of grad_only: backward: ")


def test_gradient_only_anomaly_in_a_replayed_jacobian():
    # jacobian is a reverse sweep, like grad: the same sqrt-at-0 edge should be named
    G = tg.trace(grad_only, 1.0)
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError) as info:
            G.jacobian(np.array([1.0, 0.0]))
    e = info.value
    assert (e.kind, e.op) == ("backward", "sqrt"), str(e)
    assert str(e).startswith("in a replay of grad_only at batch point (1,): ")


def two_outputs(x):
    return x * 2.0, tg.sqrt(x)


def test_gradient_anomaly_in_a_second_output_of_a_replayed_jacobian():
    T = tg.trace(two_outputs, 1.0)
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError) as info:
            T.jacobian(np.array([1.0, 0.0]))
    assert (info.value.kind, info.value.op) == ("backward", "sqrt"), str(info.value)
    assert str(info.value).startswith("in a replay of two_outputs at batch point (1,): ")


def test_gradient_anomaly_in_a_second_output_of_a_replayed_vjp():
    T = tg.trace(two_outputs, 1.0)
    with tg.detect_anomaly():
        _, vjp_fn = T.vjp(0.0)
        with pytest.raises(tg.AnomalyError) as info:
            vjp_fn((0.0, 1.0))  # only the sqrt output is pulled back
    assert (info.value.kind, info.value.op) == ("backward", "sqrt"), str(info.value)


def test_zero_adjoint_skipping_holds_in_replays():
    H = tg.trace(lambda x: tg.sqrt(x) * 0.0, 1.0)
    x = np.array([1.0, 0.0])
    with tg.detect_anomaly():
        value, grad = H.value_and_grad(x)
    assert same_bits(grad, np.zeros(2))


def test_a_replay_without_its_python_function_still_reports(F):
    P = pickle.loads(pickle.dumps(F))
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            P(np.array([1.0, 0.0]), 2.0)
    e = info.value
    assert e.kind == "replay" and e.location is None
    assert "batch point (1,)" in str(e)


def test_tracing_with_detection_on_checks_the_traced_example():
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            tg.trace(fn, 0.0, 1.0)
    assert info.value.location == at("fnlog")
