"""On random graphs and their replays, detection raises exactly when IEEE arithmetic makes
the first NaN or infinity."""
import math

import numpy as np
import pytest
from anomaly_helpers import bits, flat, same_bits
from helpers import leaf_values, programs, run
from hypothesis import event, given, settings
from hypothesis import strategies as st

import tapegrad as tg

OPS = tg.ops()

pytestmark = pytest.mark.usefixtures("detection_starts_off")


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
