"""tg.no_grad (context manager, decorator, per thread, ignored by the transforms) and
detach, eager and inside a trace."""
import math
import threading

import numpy as np
import pytest

import tapegrad as tg

# ---------------------------------------------------------------------------- no_grad / detach


def test_no_grad_context_manager():
    x = tg.Var(2.0)
    assert tg.is_grad_enabled()
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = x * 3 + tg.sin(x)
    assert tg.is_grad_enabled()
    assert y.value == 6.0 + math.sin(2.0) and y.op == "const" and y.is_leaf
    z = x * y
    z.backward()
    assert x.grad == y.value  # y took no gradient path back to x


def test_no_grad_decorator_nested_and_exceptions():
    @tg.no_grad()
    def evaluate(v):
        assert not tg.is_grad_enabled()
        return v * v

    x = tg.Var(3.0)
    out = evaluate(x)
    assert out.value == 9.0 and out.op == "const"
    assert tg.is_grad_enabled()
    assert evaluate.__name__ == "evaluate"
    ng = tg.no_grad()
    with ng:
        with tg.no_grad():
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()  # the inner exit restores the outer state
        with ng:  # the same instance, re-entered
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
        assert evaluate(x).op == "const"
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    with pytest.raises(KeyError):
        with tg.no_grad():
            raise KeyError("boom")
    assert tg.is_grad_enabled()


def test_no_grad_is_thread_local():
    started, release, seen = threading.Event(), threading.Event(), {}

    def other():
        started.wait()
        seen["enabled"] = tg.is_grad_enabled()
        a = tg.Var(2.0)
        b = a * a
        b.backward()
        seen["op"], seen["grad"] = b.op, a.grad
        release.set()

    t = threading.Thread(target=other)
    t.start()
    try:
        with tg.no_grad():
            started.set()
            assert release.wait(10)
            assert not tg.is_grad_enabled()
    finally:
        started.set()
        t.join()
    assert seen == {"enabled": True, "op": "mul", "grad": 4.0}
    # and a thread's no_grad leaves this one alone
    flags = []

    def disabled():
        with tg.no_grad():
            flags.append(tg.is_grad_enabled())

    t = threading.Thread(target=disabled)
    t.start()
    t.join()
    assert flags == [False] and tg.is_grad_enabled()


def test_transforms_ignore_an_outer_no_grad():
    """As torch.func: a function transform computes its derivatives even when called
    inside no_grad (the outer no_grad is not the transformed function's); no_grad inside
    fn still stops the gradient there. tests/test_transforms_torch.py checks torch.func
    does this. Never a silent 0."""
    def cube(x):
        return x * x * x

    with tg.no_grad():
        assert tg.grad(cube)(2.0) == 12.0
        assert tg.value_and_grad(cube)(2.0) == (8.0, 12.0)
        assert tg.hessian(cube)(2.0) == 12.0
        assert tg.jvp(cube, (2.0,), (1.0,)) == (8.0, 12.0)
        assert tg.hvp(cube, (2.0,), (1.0,)) == 12.0
        assert tg.vjp(cube, 2.0)[1](1.0) == (12.0,)
        assert tg.jacobian(cube)(2.0) == 12.0
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_detach_eagerly():
    x = tg.Var(2.0)
    c = x.detach()  # PyTorch's detach: a new constant
    assert c.value == 2.0 and c.op == "const" and c.is_leaf
    d = tg.detach(x)  # the op: the value, no gradient
    assert d.value == 2.0 and d.op == "detach"
    z = x * c + x * d + x
    z.backward()
    assert x.grad == 2.0 + 2.0 + 1.0
    assert tg.grad(lambda a: a * tg.detach(a) ** 2)(3.0) == 9.0
    assert tg.hessian(lambda a: a ** 2 * tg.detach(a))(3.0) == 6.0


@pytest.mark.parametrize("how", ["op", "method", "no_grad"])
def test_detach_inside_trace_recomputes_on_replay(how):
    def stopped(x):
        if how == "op":
            return tg.detach(x * x)
        if how == "method":
            return (x * x).detach()
        with tg.no_grad():
            return x * x

    def f(x):
        return x * stopped(x) + x

    F = tg.trace(f, 2.0)
    assert F.ops_histogram().get("detach") == 1
    for x in (3.0, -0.5):
        assert F(x) == x ** 3 + x  # the detached value recomputed at the new point
        assert F.grad(x) == x * x + 1  # no gradient through it
        assert F.hessian(x) == 0.0  # d/dx of the gradient (x*x stopped) is 0
        assert F.jvp(x, 2.0) == (x ** 3 + x, 2 * (x * x + 1))
    np.testing.assert_array_equal(F.hessian(np.array([1.0, 2.0])), [0.0, 0.0])
    assert tg.is_grad_enabled()
