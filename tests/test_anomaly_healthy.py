"""No false positives: the worked examples, healthy functions near overflow and underflow,
and the moons demo run identically, bit for bit, with detection on."""
import math

import numpy as np
import pytest
from anomaly_helpers import bits, flat, same_bits

import tapegrad as tg

pytestmark = pytest.mark.usefixtures("detection_starts_off")


# ---------------------------------------------------------------------------- no false positives

def test_worked_examples_are_healthy_and_unchanged():
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


def test_the_worked_examples_walkthrough_runs_under_detection(capsys):
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
