"""The Var API of API.md: operators, introspection, Python protocols, numpy object arrays."""
import copy
import math
import operator
import pickle
from fractions import Fraction

import numpy as np
import pytest

NUMBERS = [2, 2.0, True, np.float64(2.0), np.float32(2.0), np.int64(2)]
BINARY = [("+", operator.add, "add"), ("-", operator.sub, "sub"),
          ("*", operator.mul, "mul"), ("/", operator.truediv, "div"),
          ("**", operator.pow, "pow")]


def plain(op, a, b):
    return math.pow(a, b) if op is operator.pow else op(float(a), float(b))


@pytest.mark.parametrize("symbol, op, name", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("number", NUMBERS, ids=lambda n: type(n).__name__)
def test_operators_with_a_number_on_either_side(backend, symbol, op, name, number):
    x = backend.Var(1.5)
    right, left = op(x, number), op(number, x)
    for node, const_at in ((right, 1), (left, 0)):
        assert isinstance(node, backend.Var)
        if name == "pow" and const_at == 1 and float(number) == 2.0:
            assert node.op == "square" and [p.id for p in node.inputs] == [x.id]  # x ** 2
            continue
        assert node.op == name
        const = node.inputs[const_at]
        assert const.op == "const" and const.value == float(number) and const.is_leaf
        assert node.inputs[1 - const_at].id == x.id
    assert right.value == plain(op, 1.5, number)
    assert left.value == plain(op, number, 1.5)


@pytest.mark.parametrize("symbol, op, name", BINARY, ids=[b[0] for b in BINARY])
def test_operators_between_vars(backend, symbol, op, name):
    x, y = backend.Var(1.5), backend.Var(2.5)
    z = op(x, y)
    assert z.op == name and [p.id for p in z.inputs] == [x.id, y.id]
    assert z.value == plain(op, 1.5, 2.5)
    assert z.value == getattr(backend, name)(1.5, 2.5)


def test_unary_operators(backend):
    x = backend.Var(-1.5)
    assert (-x).op == "neg" and (-x).value == 1.5
    assert abs(x).op == "abs" and abs(x).value == 1.5
    assert (+x).value == -1.5 and (+x).id == x.id
    assert [p.id for p in (-x).inputs] == [x.id]


def test_in_place_operators_make_new_nodes(backend):
    x = backend.Var(2.0)
    y = x
    y += 1
    assert y is not x and y.id != x.id and y.op == "add"
    assert (x.value, y.value) == (2.0, 3.0)
    for op, expected in ((operator.isub, -1.0), (operator.imul, 6.0),
                         (operator.itruediv, 2.0 / 3.0), (operator.ipow, 8.0)):
        z = op(x, 3)
        assert z.id != x.id and z.value == expected and x.value == 2.0
    y *= x  # y = (x + 1) * x
    y.backward()
    assert x.grad == 2 * 2.0 + 1


def test_comparisons_compare_values(backend):
    a, b, a2 = backend.Var(1.0), backend.Var(2.0), backend.Var(1.0)
    assert a < b and a <= b and b > a and b >= a and a != b
    assert a == a2 and a <= a2 and a >= a2 and not (a != a2)
    assert a < 2 and 0.5 < a and a == 1 and 1 == a and a != 3.0 and a >= True
    assert a < np.float64(1.5) and np.float64(1.5) > a
    for result in (a < b, a == a2, a != 2, 2 > a):
        assert type(result) is bool
    nan = backend.Var(math.nan)
    assert not (nan == nan) and nan != nan


def test_hash_and_id_are_node_identity(backend):
    x = backend.Var(3.0)
    f = x * x
    first, second = f.inputs
    assert first.id == second.id == x.id
    assert hash(first) == hash(second) == hash(x) == hash(x.id)
    assert isinstance(x.id, int)
    assert len({first, second, x}) == 1
    assert {x: "x"}[f.inputs[0]] == "x"
    twin = backend.Var(3.0)  # equal value, another node
    assert twin == x and twin.id != x.id
    assert len({x, twin}) == 2
    assert f.id != x.id and len({v.id for v in (x, twin, f, f.inputs[0])}) == 3


def walk(root):
    """Every node below root once (iteratively, via .inputs and .id)."""
    seen, stack = {root.id: root}, [root]
    while stack:
        for p in stack.pop().inputs:
            if p.id not in seen:
                seen[p.id] = p
                stack.append(p)
    return seen


def test_walk_a_graph(backend):
    x, y = backend.Var(3.0), backend.Var(4.0)
    f = (x * x + x * y).sin() * 2.0
    nodes = walk(f)
    ops = sorted(v.op for v in nodes.values())
    assert ops == sorted(["mul", "sin", "add", "mul", "mul", "leaf", "leaf", "const"])
    assert {v.id for v in nodes.values() if v.op == "leaf"} == {x.id, y.id}
    for v in nodes.values():
        assert v.is_leaf == (v.op in ("leaf", "const"))
        assert v.is_leaf == (v.inputs == ())
        assert isinstance(v.inputs, tuple)
        if not v.is_leaf:  # each node's value follows from its inputs by its op
            assert v.value == getattr(type(v), v.op)(*v.inputs).value


def test_detach(backend):
    x = backend.Var(3.0)
    f = x * x
    d = f.detach()
    assert d.op == "const" and d.is_leaf and d.inputs == () and d.value == 9.0
    assert d.id != f.id and d.grad == 0.0
    g = d * x
    g.backward()
    assert x.grad == 9.0  # nothing flows through d into f's inputs
    assert d.grad == 0.0 and f.grad == 0.0  # a constant takes no gradient


def test_zero_grad(backend):
    x, y = backend.Var(3.0), backend.Var(4.0)
    (x * y).backward()
    x.zero_grad()
    assert (x.grad, y.grad) == (0.0, 3.0)
    (x * y).backward()
    backend.zero_grad([x, y])
    assert (x.grad, y.grad) == (0.0, 0.0)
    (x * y).backward()
    backend.zero_grad(v for v in (x, y))
    assert (x.grad, y.grad) == (0.0, 0.0)


def test_set_value_on_leaves(backend):
    x = backend.Var(3.0)
    x.value = 5
    assert x.value == 5.0 and type(x.value) is float and x.data == 5.0
    x.data = np.float32(0.5)
    assert x.value == 0.5
    f = x * x
    assert f.value == 0.25
    f.backward()
    assert x.grad == 1.0
    d = f.detach()
    d.value = 7.0
    assert d.value == 7.0
    with pytest.raises(ValueError, match="non-leaf"):
        f.value = 1.0
    with pytest.raises(ValueError, match="non-leaf"):
        f.data = 1.0
    assert f.value == 0.25


def test_grad_is_settable(backend):
    x = backend.Var(1.0)
    assert x.grad == 0.0 and type(x.grad) is float
    x.grad = 2
    assert x.grad == 2.0 and type(x.grad) is float
    x.grad = None
    assert x.grad == 0.0
    x.grad = np.float64(1.5)
    x.backward()
    assert x.grad == 2.5


def test_conversions(backend):
    x = backend.Var(21.75)
    assert x.item() == 21.75 and type(x.item()) is float
    assert float(x) == 21.75 and type(float(x)) is float
    assert int(x) == 21 and int(backend.Var(-2.5)) == -2
    assert bool(x) and not bool(backend.Var(0.0)) and not bool(backend.Var(-0.0))
    assert bool(backend.Var(math.nan))
    assert backend.Var(True).value == 1.0 and backend.Var(np.int64(7)).value == 7.0
    assert backend.Var(np.float32(0.1)).value == float(np.float32(0.1))
    assert backend.Var(Fraction(1, 4)).value == 0.25  # any numbers.Real


def test_repr_and_format(backend):
    x, y = backend.Var(3), backend.Var(4)
    f = x * x + x * y
    assert repr(f) == "Var(value=21.0, grad=0.0)"
    f.backward()
    assert repr(x) == "Var(value=3.0, grad=10.0)"
    assert repr(backend.Var(0.1)) == "Var(value=0.1, grad=0.0)"
    assert repr(backend.Var(1e-20)) == "Var(value=1e-20, grad=0.0)"
    assert repr(backend.Var(math.inf) * 0) == "Var(value=nan, grad=0.0)"
    assert format(backend.Var(math.pi), ".3f") == "3.142"
    assert f"{backend.Var(1234.5):>10,.1f}" == "   1,234.5"
    assert format(f, "") == format(21.0, "")  # format() always formats the value


def test_copy_of_leaves_and_consts(backend):
    x = backend.Var(3.0)
    (x * 2.0).backward()
    for c in (copy.copy(x), copy.deepcopy(x)):
        assert c.id != x.id and c.op == "leaf" and (c.value, c.grad) == (3.0, 2.0)
        c.value = 1.0
        assert x.value == 3.0
    d = x.detach()
    assert copy.copy(d).op == "const" and copy.deepcopy(d).value == 3.0
    nested = copy.deepcopy({"params": [x, d]})
    assert nested["params"][0].value == 3.0 and nested["params"][0].id != x.id


def test_copy_of_a_non_leaf_raises(backend):
    f = backend.Var(3.0) * 2.0
    with pytest.raises(RuntimeError, match="leaf"):
        copy.copy(f)
    with pytest.raises(RuntimeError, match="leaf"):
        copy.deepcopy([f])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_not_picklable(backend, protocol):
    for v in (backend.Var(1.0), backend.Var(1.0) * 2):
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(v, protocol=protocol)


def test_numpy_object_arrays(backend):
    xs = np.array([backend.Var(v) for v in (0.1, 0.2, 0.3)], dtype=object)
    s = np.sin(xs)
    assert [v.op for v in s] == ["sin"] * 3
    assert [v.value for v in s] == [math.sin(v) for v in (0.1, 0.2, 0.3)]
    for ufunc, op in ((np.exp, "exp"), (np.log, "log"), (np.sqrt, "sqrt"),
                      (np.tanh, "tanh"), (np.cos, "cos"), (np.tan, "tan")):
        assert [v.op for v in ufunc(xs)] == [op] * 3
    total = np.sum(xs)
    assert isinstance(total, backend.Var) and math.isclose(total.value, 0.6, rel_tol=1e-15)

    w = np.array([[backend.Var(float(3 * i + j)) for j in range(3)] for i in range(2)],
                 dtype=object)
    y = w @ xs
    assert y.shape == (2,)
    loss = np.sum(y * y)
    loss.backward()
    xv, wv = np.array([0.1, 0.2, 0.3]), np.array([[0.0, 1, 2], [3, 4, 5]])
    yv = wv @ xv
    assert np.allclose([v.value for v in y], yv, rtol=1e-15)
    assert np.allclose([[v.grad for v in row] for row in w], 2 * np.outer(yv, xv), rtol=1e-14)
    assert np.allclose([v.grad for v in xs], 2 * wv.T @ yv, rtol=1e-14)


def test_numpy_scalars_on_the_left(backend):
    x = backend.Var(2.0)
    for number in (np.float64(3.0), np.float32(3.0), np.int64(3)):
        z = number * x
        assert isinstance(z, backend.Var) and z.value == 6.0
        z.backward()
    assert x.grad == 9.0


def test_ops_lists_the_table(backend):
    rows = backend.ops()
    assert isinstance(rows, list) and all(isinstance(r, tuple) and len(r) == 2 for r in rows)
    assert len({name for name, _ in rows}) == len(rows)
    for name, arity in rows:
        assert arity in (1, 2)
        assert callable(getattr(backend, name)) and callable(getattr(backend.Var, name))


@pytest.mark.parametrize("name", ["draw", "explain", "gradcheck", "grad_report"])
def test_lazy_functions_stay_functions_once_their_modules_are_imported(name):
    # Importing a submodule binds its name on the package, so a module named like the
    # function (tapegrad/gradcheck.py) would replace tg.gradcheck with itself.
    import importlib

    import tapegrad as tg

    importlib.import_module(f"tapegrad.{tg._LAZY[name]}")
    function = getattr(tg, name)
    assert callable(function) and function.__name__ == name
