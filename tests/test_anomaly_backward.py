"""tg.detect_anomaly in the backward pass: the first edge where a finite gradient turns
infinite or NaN, blamed on its root cause; zero adjoints skipped; nothing raised with
detection off.

Lines are never hard-coded: a statement that should be blamed carries a marker comment
``# @name`` (see anomaly_helpers.markers).
"""
import math

import pytest
from anomaly_helpers import markers

import tapegrad as tg

inf = math.inf

LINES, at, source = markers(__file__)
pytestmark = pytest.mark.usefixtures("detection_starts_off")


# ---------------------------------------------------------------------------- backward

def test_backward_names_the_first_edge_where_a_finite_gradient_turns_infinite():
    x = tg.Var(0.0)
    with tg.detect_anomaly():
        r = tg.sqrt(x)   # sqrt(0) = 0: a finite value, an infinite slope
        y = r * 3.0
        with pytest.raises(tg.AnomalyError) as info:
            y.backward()  # @sqrtbackward
    e = info.value
    assert e.kind == "backward"
    assert e.node.id == r.id and e.op == "sqrt" and e.inputs == (0.0,)
    assert e.location == at("sqrtbackward")
    msg = str(e)
    assert "g / (2 * out)" in msg  # the rule, as the op table writes it
    assert "the finite gradient 3" in msg and "became inf" in msg
    assert "x = 0" in msg and "out = 0" in msg


def test_backward_anomaly_on_the_second_input_of_a_binary_op():
    x, y = tg.Var(1.0), tg.Var(1e-200)
    z = x / y  # 1e200: finite; dz/dy = -z / y overflows
    assert math.isfinite(z.value)
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            z.backward()
    e = info.value
    assert (e.kind, e.op, e.inputs) == ("backward", "div", (1.0, 1e-200))
    msg = str(e)
    assert "-g * out / y" in msg and "input 1" in msg and "d/dy" in msg and "-inf" in msg


def test_backward_blames_the_root_cause_not_the_edges_after_it():
    # sqrt at 0 sends inf into a; every edge below then carries inf (or NaN), and none of
    # those is blamed: only the first finite -> non-finite edge is.
    x = tg.Var(0.0)
    a = x * 1.0
    b = tg.sin(a) + a
    y = tg.sqrt(b) * 2.0
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            y.backward()
    assert info.value.op == "sqrt" and info.value.kind == "backward"


def test_zero_adjoints_are_skipped_so_sqrt0_times_0_is_not_an_anomaly():
    x = tg.Var(0.0)
    with tg.detect_anomaly():
        y = tg.sqrt(x) * 0.0
        y.backward()
        assert x.grad == 0.0
        z = tg.Var(0.0)
        w = tg.sqrt(z) * tg.Var(0.0)
        w.backward()
        assert z.grad == 0.0
        # the usual guard: where() sends no gradient into the branch it did not take
        u = tg.Var(0.0)
        v = tg.where(tg.gt(u, 0.0), tg.sqrt(u), u * 0.5)
        v.backward()
        assert u.grad == 0.5


def test_without_detection_nothing_is_raised():
    x = tg.Var(0.0)
    assert tg.log(x).value == -inf
    y = tg.sqrt(x) * 3.0
    y.backward()
    assert x.grad == inf
    nan_loss = tg.log(tg.Var(-1.0))
    nan_loss.backward()
