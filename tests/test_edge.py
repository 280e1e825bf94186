"""Deep graphs: backward and deallocation without recursion."""
import gc
import math

DEPTH = 10**6


def test_million_deep_chain(backend):
    x, c = backend.Var(1.0), backend.Var(1.0)
    y = x
    for _ in range(DEPTH):
        y = y + c  # c is shared by every node of the chain
    assert y.value == DEPTH + 1.0
    y.backward()
    assert (x.grad, c.grad) == (1.0, float(DEPTH))
    assert y.inputs[0].grad == 1.0 and y.inputs[0].inputs[0].value == DEPTH - 1.0
    del y  # dropping the whole chain must not recurse on the C stack either
    gc.collect()
    assert (x.value, c.value) == (1.0, 1.0)


def test_deep_chain_of_unary_ops(backend):
    # y_{k+1} = sin(y_k) + 0.5: dy/dx is the product of the cos(y_k), in the sweep's order.
    depth = 20_000
    x = backend.Var(0.3)
    y, v, values = x, 0.3, []
    for _ in range(depth):
        values.append(v)
        y = y.sin() + 0.5
        v = math.sin(v) + 0.5
    assert y.value == v
    y.backward()
    g = 1.0
    for v in reversed(values):
        g = g * math.cos(v)
    assert x.grad == g
    del y
    assert x.grad == g
