"""tg.detect_anomaly in the forward pass and at the loss: the node, op, values and line of
the first NaN or infinity (each kind of op that makes one), NaN inputs and infinite
constants blamed on themselves, a NaN or infinite loss refused before backward.

Lines are never hard-coded: a statement that should be blamed carries a marker comment
``# @name`` (see anomaly_helpers.markers).
"""
import math

import pytest
from anomaly_helpers import bits, markers

import tapegrad as tg

inf, nan = math.inf, math.nan

LINES, at, source = markers(__file__)
pytestmark = pytest.mark.usefixtures("detection_starts_off")


# ---------------------------------------------------------------------------- forward kinds

def log_of_zero():
    x = tg.Var(0.0)
    return tg.log(x)  # @log0


def zero_over_zero():
    x, y = tg.Var(0.0), tg.Var(0.0)
    return x / y  # @div00


def zero_over_constant_zero():
    x = tg.Var(0.0)
    return x / 0.0  # @div0c


def sqrt_of_minus_one():
    x = tg.Var(-1.0)
    return x.sqrt()  # @sqrtm1


def exp_overflow():
    x = tg.Var(710.0)
    return tg.exp(x)  # @exp710


def power_of_a_negative():
    x = tg.Var(-8.0)
    return x ** 0.5  # @pow


def square_overflow():
    x = tg.Var(1e200)
    return x ** 2  # @square


def product_overflow():
    x, y = tg.Var(1e200), tg.Var(-1e200)
    return x * y  # @mul


def reciprocal_of_zero():
    x = tg.Var(0.0)
    return 1.0 / x  # @rdiv


FORWARD_CASES = [
    # builder, marker, op, input values, value
    (log_of_zero, "log0", "log", (0.0,), -inf),
    (zero_over_zero, "div00", "div", (0.0, 0.0), nan),
    (zero_over_constant_zero, "div0c", "div", (0.0, 0.0), nan),
    (sqrt_of_minus_one, "sqrtm1", "sqrt", (-1.0,), nan),
    (exp_overflow, "exp710", "exp", (710.0,), inf),
    (power_of_a_negative, "pow", "pow", (-8.0, 0.5), nan),
    (square_overflow, "square", "square", (1e200,), inf),
    (product_overflow, "mul", "mul", (1e200, -1e200), -inf),
    (reciprocal_of_zero, "rdiv", "div", (1.0, 0.0), inf),
]


@pytest.mark.parametrize("build, marker, op, inputs, value", FORWARD_CASES,
                         ids=[c[1] for c in FORWARD_CASES])
def test_forward_anomaly_names_node_op_values_and_line(build, marker, op, inputs, value):
    plain = build()  # detection off: the IEEE value, no error
    assert plain.op == op
    assert math.isnan(plain.value) if math.isnan(value) else bits(plain.value) == bits(value)

    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            build()
    e = info.value
    assert isinstance(e, ArithmeticError)
    assert e.kind == "forward"
    assert e.op == op and e.node.op == op
    assert e.inputs == inputs
    assert tuple(p.value for p in e.node.inputs) == inputs
    assert bits(e.node.value) == bits(value) if not math.isnan(value) else math.isnan(e.node.value)
    assert e.location.endswith(f"{__file__}:{LINES[marker]}"), e.location
    assert e.location == at(marker)
    assert e.source == source(marker)
    msg = str(e)
    assert msg.startswith(f"{op}(")
    assert "from finite inputs" in msg
    assert at(marker) in msg and source(marker) in msg
    assert ("nan" if math.isnan(value) else repr(value)) in msg


def test_forward_anomaly_stops_at_the_first_bad_node():
    reached = []
    x = tg.Var(0.0)
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            a = x * 2.0 + 1.0           # healthy
            b = tg.log(a - 1.0)  # @first
            reached.append(True)
            tg.sqrt(b)                 # would be the second anomaly
    assert reached == []
    e = info.value
    assert (e.kind, e.op, e.inputs, e.location) == ("forward", "log", (0.0,), at("first"))


def test_underflow_to_zero_is_not_an_anomaly():
    with tg.detect_anomaly():
        x = tg.Var(-800.0)
        y = tg.exp(x)
        assert y.value == 0.0
        with pytest.raises(tg.AnomalyError) as info:
            tg.log(y)  # @logunderflow
    assert info.value.kind == "forward"
    assert info.value.location == at("logunderflow")


def test_inf_minus_inf_blames_the_exp_node_made_before_detection():
    a = tg.exp(tg.Var(1000.0))  # an infinity, made while detection was off
    assert a.value == inf
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            a - a  # @infminusinf
    e = info.value
    assert e.kind == "input"
    assert e.op == "sub" and e.inputs == (inf, inf) and math.isnan(e.node.value)
    assert [p.id for p in e.node.inputs] == [a.id, a.id]
    assert e.node.inputs[0].op == "exp"
    assert e.location.endswith(f"{__file__}:{LINES['infminusinf']}")
    assert e.source == "a - a  # @infminusinf"
    msg = str(e)
    assert "exp node computed before anomaly detection" in msg
    assert "inf" in msg and "sub(inf, inf) = nan" in msg


# ---------------------------------------------------------------------------- NaN inputs

def test_a_nan_input_is_blamed_on_the_input_leaf():
    x = tg.Var(nan)
    w = tg.Var(2.0)
    with tg.detect_anomaly():
        leaf = tg.Var(nan)  # making a NaN leaf is not itself an anomaly
        assert math.isnan(leaf.value)
        with pytest.raises(tg.AnomalyError) as info:
            w * x + 1.0  # @naninput
    e = info.value
    assert e.kind == "input"
    assert e.op == "mul"
    assert e.inputs[0] == 2.0 and math.isnan(e.inputs[1])
    assert e.node.inputs[1].id == x.id and e.node.inputs[1].op == "leaf"
    assert e.location == at("naninput")
    msg = str(e)
    assert "leaf" in msg and "input 1" in msg


def test_an_infinite_constant_is_blamed_on_the_constant():
    x = tg.Var(1.0)
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            x + inf  # @infconst
    e = info.value
    assert (e.kind, e.op, e.inputs, e.location) == ("input", "add", (1.0, inf), at("infconst"))
    assert "constant" in str(e)


# ---------------------------------------------------------------------------- the loss

def test_a_nan_loss_is_refused_before_backward():
    x = tg.Var(-1.0)
    loss = tg.log(x) * 3.0  # NaN, built while detection was off
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            loss.backward()  # @nanloss
    e = info.value
    assert e.kind == "loss"
    assert e.node.id == loss.id and e.op == "mul" and math.isnan(e.node.value)
    assert e.location == at("nanloss")
    assert str(e).startswith("backward() from a non-finite loss")
    assert x.grad == 0.0  # the sweep never ran


def test_an_infinite_loss_and_a_nan_leaf_loss_are_refused():
    big = tg.exp(tg.Var(1000.0))
    leaf = tg.Var(nan)
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError) as info:
            big.backward()
        assert (info.value.kind, info.value.op) == ("loss", "exp")
        with pytest.raises(tg.AnomalyError) as info:
            leaf.backward()
        assert (info.value.kind, info.value.op) == ("loss", "leaf")
