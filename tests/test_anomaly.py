"""tg.detect_anomaly (issue 8): the node, op, values and line of the first NaN or infinity,
in the forward pass, the loss, the backward pass and traced replays; no false positives;
per-thread scope restored on every exit.

Lines are never hard-coded: a statement that should be blamed carries a marker comment
``# @name``, and LINES maps each marker to its line number in this file.
"""
import importlib
import math
import pickle
import re
import struct
import threading

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import tapegrad as tg
from helpers import leaf_values, programs, run

core = importlib.import_module("tapegrad._core")
inf, nan = math.inf, math.nan
OPS = tg.ops()


def _marker_lines():
    found = {}
    with open(__file__, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            m = re.search(r"#\s*@([\w-]+)\s*$", text)
            if m:
                assert m.group(1) not in found, f"marker @{m.group(1)} used twice"
                found[m.group(1)] = number
    return found


LINES = _marker_lines()


def at(marker):
    """What AnomalyError.location should end with: this file and the marked line."""
    return f"{__file__}:{LINES[marker]}"


def source(marker):
    with open(__file__, encoding="utf-8") as f:
        return f.read().splitlines()[LINES[marker] - 1].strip()


def bits(x):
    return struct.pack("<d", float(x))


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool((a.view(np.int64) == b.view(np.int64)).all())


def flat(result):
    """Every array in a (nested) Function result, flattened, for bit comparisons."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in flat(r)]
    return [np.asarray(result, dtype=np.float64)]


@pytest.fixture(autouse=True)
def detection_starts_off():
    assert not core.is_anomaly_enabled()
    yield
    assert not core.is_anomaly_enabled(), "a test left anomaly detection on"


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


# ---------------------------------------------------------------------------- no false positives

def test_seed_examples_are_healthy_and_unchanged():
    with tg.detect_anomaly():
        x, y = tg.Var(3.0), tg.Var(4.0)
        left, right = x * x, x * y
        f = left + right
        f.backward()
        assert (f.value, x.grad, y.grad) == (21.0, 10.0, 3.0)

        w, x = tg.Var(0.5), tg.Var(2.0)
        z = w * x
        s = z.sigmoid()
        s.backward()
        assert round(s.value, 4) == 0.7311
        assert round(z.grad, 4) == 0.1966 and w.grad == z.grad * 2.0

        x, y = tg.Var(3.0), tg.Var(4.0)
        z = x * y
        z.backward()
        assert (x.grad, y.grad) == (4.0, 3.0)


def test_the_seed_walkthrough_runs_under_detection(capsys):
    from tapegrad.__main__ import worked_examples

    with tg.detect_anomaly():
        assert worked_examples()
    assert "MISMATCH" not in capsys.readouterr().out


def sigmoid_chain(x):
    for _ in range(30):
        x = tg.sigmoid(x)
    return x


def softplus_and_friends(x, y):
    sp = tg.log(1.0 + tg.exp(x))
    big = tg.exp(x * 0.0 + 700.0)     # 1e304: large but finite
    tiny = tg.exp(-y * y - 740.0)     # subnormal
    gone = tg.exp(x * 0.0 - 800.0)    # underflows to 0: not an anomaly
    return sp + big * 1e-300 + tiny * 1e300 + gone + tg.tanh(x * y) + abs(x) ** 1.5


def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x ** 2) ** 2


def guarded(x, y):
    safe = tg.where(tg.gt(x, 0.0), tg.sqrt(tg.maximum(x, 1e-300)), 0.0)
    return safe + tg.relu(y) + tg.minimum(x, y) / (1.0 + y * y) + tg.cos(x) * tg.sin(y)


HEALTHY = [(sigmoid_chain, (0.3,)), (softplus_and_friends, (0.7, -1.2)),
           (rosenbrock, (-1.2, 1.0)), (guarded, (0.0, -2.0)), (guarded, (2.5, 0.5))]


def eager_value_and_grads(f, args):
    xs = [tg.Var(a) for a in args]
    out = f(*xs)
    out.backward()
    return [out.value] + [x.grad for x in xs]


@pytest.mark.parametrize("f, args", HEALTHY, ids=[f"{f.__name__}{a}" for f, a in HEALTHY])
def test_healthy_functions_raise_nothing_and_give_identical_bits(f, args):
    off = eager_value_and_grads(f, args)
    assert all(math.isfinite(v) for v in off)
    with tg.detect_anomaly():
        on = eager_value_and_grads(f, args)
    assert [bits(v) for v in on] == [bits(v) for v in off]

    F = tg.trace(f, *args)
    points = [np.linspace(a - 0.25, a + 0.25, 7) if a != 0.0 else np.linspace(0.0, 0.5, 7)
              for a in args]
    off = F.value_and_grad(*points)
    with tg.detect_anomaly():
        on = F.value_and_grad(*points)
        one = F.value_and_grad(*args)
    assert all(same_bits(a, b) for a, b in zip(flat(on), flat(off)))
    assert all(same_bits(a, b) for a, b in zip(flat(one), flat(F.value_and_grad(*args))))


def test_the_moons_demo_trains_identically_under_detection():
    from tapegrad.nn.data import make_moons
    from tapegrad.nn.demo import make_model, train_eager

    X, y = make_moons(30)
    off = train_eager(make_model(), X, y, steps=2)
    with tg.detect_anomaly():
        on = train_eager(make_model(), X, y, steps=2)
    assert [bits(v) for v in on.losses] == [bits(v) for v in off.losses]
    assert same_bits(on.theta, off.theta)


def build(program):
    return run(program, tg)


# Ops with a finite value and an infinite slope somewhere (sqrt at 0, pow(0, 0.5),
# division by a tiny number): gradient-only anomalies are rare with every op in play.
SINGULAR = [(op, arity) for op, arity in OPS
            if op in ("sqrt", "pow", "div", "mul", "add", "sub", "square", "sin", "abs")]


@settings(max_examples=120)
@given(data=st.data())
@pytest.mark.parametrize("ops", [OPS, SINGULAR], ids=["all-ops", "singular-ops"])
def test_random_graphs_detection_agrees_with_ieee(ops, data):
    """Off, build the graph and differentiate its last node; then on: a graph whose values
    and gradients are all finite raises nothing and gives the same bits; a non-finite
    value is caught at the first node that has one; a non-finite gradient (with finite
    values) is caught in backward."""
    program = data.draw(programs(ops), label="program")
    nodes = build(program)
    nodes[-1].backward()
    values = [v.value for v in nodes]
    grads = [v.grad for v in nodes]
    first_bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)

    with tg.detect_anomaly():
        if first_bad is not None:
            with pytest.raises(tg.AnomalyError) as info:
                build(program)
            e = info.value
            assert e.kind == "forward"
            assert e.op == nodes[first_bad].op
            assert bits(e.node.value) == bits(values[first_bad])
            event("non-finite value")
            return
        again = build(program)
        if not all(math.isfinite(g) for g in grads):
            with pytest.raises(tg.AnomalyError) as info:
                again[-1].backward()
            assert info.value.kind == "backward"
            event("non-finite gradient")
            return
        again[-1].backward()
    event("healthy graph")
    assert [bits(v.value) for v in again] == [bits(v) for v in values]
    assert [bits(v.grad) for v in again] == [bits(g) for g in grads]


@settings(max_examples=60)
@given(data=st.data())
@pytest.mark.parametrize("ops", [OPS, SINGULAR], ids=["all-ops", "singular-ops"])
def test_random_replays_detection_agrees_with_ieee(ops, data):
    """A batched replay (no CSE, so bit-for-bit the eager tape) with detection on: finite
    results come back bit-identical; otherwise the error names the first bad point and
    the eager re-run finds the node (never the 'replay' fallback)."""
    program = data.draw(programs(ops, max_steps=10), label="program")
    n = len(program[0])
    F = tg.trace(lambda *xs: run(program, tg, xs)[-1], *program[0], cse=False)
    cols = [np.array(data.draw(st.lists(leaf_values, min_size=4, max_size=4)))
            for _ in range(n)]
    off = F.value_and_grad(*cols)
    finite = np.all([np.isfinite(a) for a in flat(off)], axis=0)
    with tg.detect_anomaly():
        if finite.all():
            on = F.value_and_grad(*cols)
            assert all(same_bits(a, b) for a, b in zip(flat(on), flat(off)))
            event("healthy replay")
            return
        with pytest.raises(tg.AnomalyError) as info:
            F.value_and_grad(*cols)
    first = int(np.flatnonzero(~finite)[0])
    e = info.value
    event(f"replay anomaly: {e.kind}")
    assert e.kind in ("forward", "input", "backward"), str(e)
    assert f"at batch point ({first},): " in str(e)


# ---------------------------------------------------------------------------- scope

def test_on_inside_off_after_and_after_an_exception():
    assert not core.is_anomaly_enabled()
    with tg.detect_anomaly() as d:
        assert isinstance(d, tg.detect_anomaly)
        assert core.is_anomaly_enabled()
    assert not core.is_anomaly_enabled()

    with pytest.raises(tg.AnomalyError):
        with tg.detect_anomaly():
            tg.log(tg.Var(0.0))
    assert not core.is_anomaly_enabled()

    with pytest.raises(KeyError):
        with tg.detect_anomaly():
            raise KeyError("unrelated")
    assert not core.is_anomaly_enabled()
    assert tg.log(tg.Var(0.0)).value == -inf  # off again: no error


def test_nested_use_restores_the_outer_state():
    outer = tg.detect_anomaly()
    with outer:
        with tg.detect_anomaly():
            assert core.is_anomaly_enabled()
        assert core.is_anomaly_enabled()  # the inner exit keeps the outer one on
        with outer:  # the same object, re-entered
            assert core.is_anomaly_enabled()
        assert core.is_anomaly_enabled()
        with pytest.raises(tg.AnomalyError):
            with tg.detect_anomaly():
                tg.sqrt(tg.Var(-1.0))
        assert core.is_anomaly_enabled()
    assert not core.is_anomaly_enabled()


def test_decorator_turns_detection_on_for_the_call_only():
    seen = []

    @tg.detect_anomaly()
    def step(v):
        """docstring kept"""
        seen.append(core.is_anomaly_enabled())
        return tg.log(v)  # @decorated

    assert step.__name__ == "step" and step.__doc__ == "docstring kept"
    assert not core.is_anomaly_enabled()
    assert step(tg.Var(1.0)).value == 0.0
    assert not core.is_anomaly_enabled()
    with pytest.raises(tg.AnomalyError) as info:
        step(tg.Var(0.0))
    assert info.value.location == at("decorated")
    assert not core.is_anomaly_enabled()
    with tg.detect_anomaly():
        step(tg.Var(2.0))
        assert core.is_anomaly_enabled()  # a decorated call inside keeps the outer on
    assert seen == [True, True, True]


def test_detection_is_per_thread():
    ready, checked = threading.Event(), threading.Event()
    out = {}

    def other():
        try:
            ready.wait(5)
            out["other_enabled"] = core.is_anomaly_enabled()
            out["other_value"] = tg.log(tg.Var(0.0)).value  # no error on this thread
            with tg.detect_anomaly():
                out["other_on"] = core.is_anomaly_enabled()
                checked.set()
                try:
                    tg.log(tg.Var(0.0))
                except tg.AnomalyError as e:
                    out["other_error"] = e.kind
        except BaseException as e:  # pragma: no cover - reported below
            out["crash"] = e
        finally:
            checked.set()

    t = threading.Thread(target=other)
    t.start()
    with tg.detect_anomaly():
        ready.set()
        checked.wait(5)
        with pytest.raises(tg.AnomalyError):
            tg.log(tg.Var(0.0))
    t.join(10)
    assert "crash" not in out, out
    assert out["other_enabled"] is False and out["other_value"] == -inf
    assert out["other_on"] is True and out["other_error"] == "forward"
    # the other thread's detection did not leak here
    assert not core.is_anomaly_enabled()
    assert tg.log(tg.Var(0.0)).value == -inf


def test_a_decorated_function_on_another_thread_leaves_this_one_alone():
    @tg.detect_anomaly()
    def worker(box):
        box.append(core.is_anomaly_enabled())

    box = []
    t = threading.Thread(target=worker, args=(box,))
    t.start()
    t.join(10)
    assert box == [True]
    assert not core.is_anomaly_enabled()
