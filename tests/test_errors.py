"""Every bad input of API.md: a TypeError or ValueError that says what went wrong."""
import importlib
import operator
from decimal import Decimal

import numpy as np
import pytest

# Not real numbers. (An ndarray operand is left to numpy: it is not an error for operators.)
BAD = ["a", None, [1.0], 1 + 2j, (1.0,), {"x": 1.0}, object(), Decimal("0.5")]
BAD_IDS = ["str", "None", "list", "complex", "tuple", "dict", "object", "Decimal"]


@pytest.mark.parametrize("bad", BAD + [np.complex128(1 + 2j), np.array([1.0]), np.array(1.0)],
                         ids=BAD_IDS + ["np.complex128", "ndarray", "0-d ndarray"])
def test_var_takes_only_real_numbers(backend, bad):
    with pytest.raises(TypeError, match="real number"):
        backend.Var(bad)


def test_var_of_a_var_is_a_type_error(backend):
    with pytest.raises(TypeError, match="real number"):
        backend.Var(backend.Var(1.0))


def test_var_takes_one_argument(backend):
    with pytest.raises(TypeError):
        backend.Var()
    with pytest.raises(TypeError):
        backend.Var(1.0, 2.0)


OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
             operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_operators_reject_unsupported_operands(backend, op, bad):
    x = backend.Var(1.0)
    with pytest.raises(TypeError):
        op(x, bad)
    with pytest.raises(TypeError):
        op(bad, x)


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_equality_with_a_non_number_is_false(backend, bad):
    x = backend.Var(1.0)
    assert (x == bad) is False and (x != bad) is True


def test_pow_with_modulus(backend):
    with pytest.raises(TypeError, match="modulus"):
        pow(backend.Var(2.0), 3, 5)
    with pytest.raises(TypeError):
        pow(2, backend.Var(3.0), 5)


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_functions_and_methods_reject_non_numbers(backend, bad):
    x = backend.Var(1.0)
    for call in (lambda: backend.sin(bad), lambda: backend.maximum(x, bad),
                 lambda: backend.maximum(bad, x), lambda: backend.add(bad, 1.0),
                 lambda: x.maximum(bad), lambda: x.pow(bad)):
        with pytest.raises(TypeError, match="expected a Var or a real number"):
            call()


def test_functions_check_their_argument_count(backend):
    x = backend.Var(1.0)
    with pytest.raises(TypeError):
        backend.sin(x, x)
    with pytest.raises(TypeError):
        backend.maximum(x)
    with pytest.raises(TypeError):
        x.sin(x)
    with pytest.raises(TypeError):
        x.maximum()


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_setting_value_or_grad_to_a_non_number(backend, bad):
    x = backend.Var(1.0)
    with pytest.raises(TypeError, match="real number"):
        x.value = bad
    if bad is not None:  # grad = None means 0.0
        with pytest.raises(TypeError, match="real number"):
            x.grad = bad
    assert (x.value, x.grad) == (1.0, 0.0)


def test_setting_value_on_a_non_leaf(backend):
    f = backend.Var(1.0).exp()
    with pytest.raises(ValueError, match="non-leaf"):
        f.value = 2.0


def test_read_only_introspection(backend):
    x = backend.Var(1.0)
    for name in ("op", "inputs", "is_leaf", "id"):
        with pytest.raises(AttributeError):
            setattr(x, name, getattr(x, name))


def test_backends_do_not_mix():
    ref = importlib.import_module("tapegrad.reference")
    cpp = importlib.import_module("tapegrad")
    a, b = ref.Var(1.0), cpp.Var(2.0)
    for op in (operator.add, operator.mul, operator.pow, operator.lt):
        with pytest.raises(TypeError):
            op(a, b)
        with pytest.raises(TypeError):
            op(b, a)
    for x, y, module in ((a, b, ref), (b, a, cpp)):
        with pytest.raises(TypeError):
            module.maximum(x, y)
        with pytest.raises(TypeError):
            x.mul(y)
        with pytest.raises(TypeError):
            module.Var(y)
        with pytest.raises(TypeError):
            x.value = y
