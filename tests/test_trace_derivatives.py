"""Derivatives taken inside a traced function: a trace records values, not the derivatives
computed inside it, so each such idiom raises TraceError at trace time, naming the user's
line, instead of replaying a number frozen at the traced point. Eagerly they all work."""
import importlib
import re

import numpy as np
import pytest

tg = importlib.import_module("tapegrad")


def inner_backward(x):
    y = tg.Var(3.0)
    (y * x).backward()
    return y.grad + x


IDIOMS = {  # each f(x) == 2x + 0 * ... eagerly: the inner derivative is x (or 2x for hessian)
    "grad": lambda x: tg.grad(lambda y: y * x)(3.0) + x,
    "value_and_grad": lambda x: tg.value_and_grad(lambda y: y * x)(3.0)[1] + x,
    "jacobian": lambda x: tg.jacobian(lambda y: [y * x, y])(3.0)[0] + x,
    "hessian": lambda x: tg.hessian(lambda y: 0.5 * y * y * x)(3.0) + x,
    "jvp": lambda x: tg.jvp(lambda y: y * x, (3.0,), (1.0,))[1] + x,
    "vjp": lambda x: tg.vjp(lambda y: y * x, 3.0)[1](1.0)[0] + x,
    "hvp": lambda x: tg.hvp(lambda y: 0.5 * y * y * x, (3.0,), (1.0,)) + x,
    "inner trace, called": lambda x: tg.trace(lambda y: y * x, 1.0)(1.0) + x,
    "inner trace, .grad": lambda x: tg.trace(lambda y: y * x, 1.0).grad(3.0) + x,
    "backward, then .grad": inner_backward,
    "local_grads": lambda x: tg.local_grads(tg.Var(3.0) * x, 1.0)[0] + x,
}


@pytest.mark.parametrize("name", IDIOMS)
def test_eagerly_the_idiom_works(name):
    assert float(IDIOMS[name](tg.Var(2.0))) == 4.0


@pytest.mark.parametrize("name", IDIOMS)
def test_tracing_the_idiom_raises_and_names_the_users_line(name):
    with pytest.raises(tg.TraceError) as err:
        tg.trace(IDIOMS[name], 1.0)
    message = str(err.value)
    assert "inside a traced function" in message
    assert "frozen" in message  # says why
    assert re.search(r"test_trace_derivatives\.py:\d+", message)  # the user's line
    assert "/tapegrad/" not in message.split("(at ")[1].split(")")[0]


def test_after_a_refused_derivative_the_thread_traces_again():
    with pytest.raises(tg.TraceError):
        tg.trace(IDIOMS["grad"], 1.0)
    assert not tg._core.is_tracing()
    F = tg.trace(lambda x: x * x, 1.0)
    assert F.grad(3.0) == 6.0
    x = tg.Var(2.0)
    (x * x).backward()  # backward works again outside the trace
    assert x.grad == 4.0


def test_functions_traced_beforehand_may_be_called_with_numbers_inside_a_trace():
    # Their result does not depend on the outer trace's inputs: a constant of the trace.
    G = tg.trace(lambda y: y * y, 1.0)
    F = tg.trace(lambda x: x * G(3.0), 1.0)
    assert F(2.0) == 18.0 and F.grad(2.0) == 9.0


def test_differentiating_the_traced_function_is_the_way():
    F = tg.trace(lambda x: x * x * x, 1.0)
    assert F.grad(2.0) == 12.0 and F.hessian(2.0) == 12.0
    assert F.jvp(2.0, 1.0) == (8.0, 12.0)
    assert np.isclose(F.hvp(2.0, 1.0), 12.0)
