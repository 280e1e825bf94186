"""The reference's recorded reverse sweep (tapegrad.reference.autograd.grad with
create_graph=True) against the C++ one bit for bit, against the reference's own backward(),
backward(create_graph=True) on both backends, and the rules' functions: unchanged on
numbers, the table's ops on Vars.

(Orders 1-4 of every smooth op against mpmath: tests/test_autograd.py, on both backends.)"""
import importlib
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import programs, run, table_ops
from hypothesis import given, settings
from mpmath_oracle import ORACLES
from test_autograd import SMOOTH

tg = importlib.import_module("tapegrad")
ref = importlib.import_module("tapegrad.reference")

# Ops whose values both backends compute with the same algorithm (not lgamma: glibc's in
# C++, its own in Python), so that graphs of them agree bit for bit.
SAME_BITS = [(op, arity) for op, arity in table_ops() if ORACLES[op].same_bits]


def bits(x):
    """x's bits, any NaN as one (x86's sqrt(-1) is -NaN, Python's nan +NaN)."""
    return "nan" if x != x else struct.pack("<d", x)


def leaves_of(program, nodes):
    return nodes[:len(program[0])]


def gradients(backend, program, create_graph):
    """The root's gradients with respect to the program's leaves, as bits."""
    nodes = run(program, backend)
    grads = backend.autograd.grad(nodes[-1], leaves_of(program, nodes),
                                  create_graph=create_graph)
    return [bits(g.value if create_graph else g) for g in grads]


@settings(max_examples=200, deadline=None)
@given(program=programs(SAME_BITS))
def test_recorded_gradients_are_the_cpp_ones_bit_for_bit(program):
    """The same rules in the same order, numbers folding the same way: each gradient has
    C++'s bits, recorded and as floats."""
    for create_graph in (True, False):
        assert gradients(ref, program, create_graph) == gradients(tg, program, create_graph), (
            program, create_graph)


def on_cpp(roots, leaves):
    """The reference graph below ``roots`` built again on the C++ tape, node by node in
    creation order: {id(reference node): C++ Var}, ``leaves`` first."""
    seen, stack = {id(v): v for v in (*leaves, *roots)}, [*leaves, *roots]
    while stack:
        for u in stack.pop().inputs:
            if id(u) not in seen:
                seen[id(u)] = u
                stack.append(u)
    made = {id(v): tg.Var(v.value) for v in leaves}
    for v in sorted(seen.values(), key=lambda v: v._index):  # creation order
        if id(v) in made:
            continue
        if v.op == "leaf":
            made[id(v)] = tg.Var(v.value)
        elif v.op == "const":
            made[id(v)] = tg.Var(v.value).detach()
        else:
            made[id(v)] = getattr(tg, v.op)(*[made[id(u)] for u in v.inputs])
    return made, seen


@settings(max_examples=150, deadline=None)
@given(program=programs(SAME_BITS, max_leaves=3, max_steps=10))
def test_second_order_is_the_cpp_one_bit_for_bit_on_the_same_graph(program):
    """The reference's recorded gradient graph, built again on the C++ tape in the same
    order, has the same value in every node, and C++ differentiates it again to the
    reference's second derivatives, bit for bit, recorded and as floats.

    (On its own recording C++ can differ in the last bits: see the next test.)"""
    nodes = run(program, ref)
    leaves = leaves_of(program, nodes)
    grads = ref.autograd.grad(nodes[-1], leaves, create_graph=True)
    made, below = on_cpp(grads, leaves)
    for v in below.values():
        assert bits(made[id(v)].value) == bits(v.value), (program, v.op)
    cpp_leaves = [made[id(v)] for v in leaves]
    for g in grads:
        for create_graph in (True, False):
            want = tg.autograd.grad(made[id(g)], cpp_leaves, create_graph=create_graph)
            got = ref.autograd.grad(g, leaves, create_graph=create_graph)
            if create_graph:
                got, want = [h.value for h in got], [h.value for h in want]
            assert [bits(h) for h in got] == [bits(h) for h in want], program


@settings(max_examples=150, deadline=None)
@given(program=programs([op for op in SMOOTH if op in SAME_BITS], max_leaves=3, max_steps=10))
def test_second_order_matches_the_cpp_recording(program):
    """Second derivatives against C++'s own recorded graph. The first-order values are the
    same bits, but C++ evaluates the operands of a rule's `a * b` in an unspecified order
    (GCC: b first, so pow's d/dx records pow(x, y - 1) before g * y), so the recorded
    nodes can come in another order than the reference's left to right, and the second
    sweep then sums a node's contributions in another order: the same values up to that
    rounding, wherever both are finite."""
    got, want = [], []
    for backend, second in ((ref, got), (tg, want)):
        nodes = run(program, backend)
        leaves = leaves_of(program, nodes)
        for g in backend.autograd.grad(nodes[-1], leaves, create_graph=True):
            second.append(backend.autograd.grad(g, leaves))
    got, want = np.array(got), np.array(want)
    both = np.isfinite(got) & np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got) & ~both, np.isnan(want) & ~both)
    scale = np.max(np.abs(want[both]), initial=1.0)
    np.testing.assert_allclose(got[both], want[both], rtol=1e-12, atol=1e-14 * scale)


def test_the_order_of_a_nodes_two_contributions_is_cpps():
    """x's adjoint in pow(x, x) + sin(x): sin's contribution first (newest first), then
    pow's d/dx, then its d/dy. At the points where that order rounds differently from
    another, the gradient still has C++'s bits."""
    def order_matters(x):
        a = math.cos(x)
        dx, dy = ref.local_grads(ref.pow(ref.Var(x), ref.Var(x)), 1.0)
        return (a + dx) + dy != (a + dy) + dx
    points = [x for x in np.linspace(0.05, 3.0, 400) if order_matters(float(x))]
    assert points
    for x in points:
        for create_graph in (True, False):
            got, want = [], []
            for backend, out in ((ref, got), (tg, want)):
                v = backend.Var(float(x))
                (g,) = backend.autograd.grad(backend.pow(v, v) + backend.sin(v), v,
                                             create_graph=create_graph)
                out.append(bits(g.value if create_graph else g))
            assert got == want, x


@settings(max_examples=200, deadline=None)
@given(program=programs(table_ops()))
def test_recorded_gradients_are_backwards(program):
    """autograd.grad's floats are backward()'s bits; the recorded values too, but for the
    two documented exceptions, which both only change the sign of a zero: a single -0.0
    contribution stays -0.0, and a recorded adjoint of value 0 keeps its finite (so +-0)
    contributions."""
    nodes = run(program, ref)
    leaves = leaves_of(program, nodes)
    recorded = ref.autograd.grad(nodes[-1], leaves, create_graph=True)
    floats = ref.autograd.grad(nodes[-1], leaves)
    nodes[-1].backward()
    for leaf, r, f in zip(leaves, recorded, floats):
        assert bits(f) == bits(leaf.grad), program
        assert bits(r.value) == bits(leaf.grad) or r.value == leaf.grad == 0.0, program


# ---------------------------------------------------------------------------------------
# autograd.grad's API on the reference (tests/test_autograd.py has the same for C++)

def test_the_seeds_example_one_order_up():
    x, y = ref.Var(3.0), ref.Var(4.0)
    gx, gy = ref.autograd.grad(x * x + x * y, [x, y], create_graph=True)
    assert isinstance(gx, ref.Var) and (gx.value, gy.value) == (10.0, 3.0)
    assert ref.autograd.grad(gx, [x, y]) == (2.0, 1.0)
    assert ref.autograd.grad(gy, [x, y]) == (1.0, 0.0)
    assert x.grad == y.grad == 0.0  # the inputs' .grad is left alone


def test_seeds_outputs_arrays_and_unreached_inputs():
    x, y = ref.Var(2.0), ref.Var(3.0)
    a, b = x * y, x + y
    assert ref.autograd.grad([a, b], [x, y], grad_outputs=[2.0, -1.0]) == (5.0, 3.0)
    s = ref.Var(10.0)
    (g,) = ref.autograd.grad(a, x, grad_outputs=s, create_graph=True)
    assert g.value == 30.0 and ref.autograd.grad(g, [s, y]) == (3.0, 10.0)
    (z,) = ref.autograd.grad(x * 3.0, y, create_graph=True)
    assert z.op == "const" and z.value == 0.0
    assert ref.autograd.grad(x * 3.0, y) == (0.0,)
    w = np.array([ref.Var(1.0), ref.Var(2.0)], dtype=object)
    f = (w[0] * w[1]) ** 2
    (g,) = ref.autograd.grad(f, w)
    assert g.dtype == np.float64 and g.tolist() == [8.0, 4.0]
    (g,) = ref.autograd.grad(f, w, create_graph=True)
    assert g.dtype == object and [v.value for v in g] == [8.0, 4.0]


@pytest.mark.parametrize("call", [
    lambda b, x: b.autograd.grad(x * x, 3.0),
    lambda b, x: b.autograd.grad(2.0, x),
    lambda b, x: b.autograd.grad(x * x, [x], grad_outputs=[1.0, 2.0]),
    lambda b, x: b.autograd.grad(x * x, [x], grad_outputs=["a"]),
    lambda b, x: b.autograd.grad(x * x, [], create_graph=True),
    lambda b, x: b.autograd.grad(x * x, x, create_graph=1),
    lambda b, x: b.autograd.grad(x * x, [tg.Var(1.0) if b is ref else ref.Var(1.0)]),
], ids=["inputs", "outputs", "seed count", "seed type", "no inputs", "create_graph",
        "other backend's Var"])
def test_bad_input_raises_as_cpp_does(call):
    errors = []
    for backend in (ref, tg):
        with pytest.raises((TypeError, ValueError)) as e:
            call(backend, backend.Var(1.0))
        errors.append((type(e.value), str(e.value)))
    assert errors[0] == errors[1]


# ---------------------------------------------------------------------------------------
# backward(create_graph=True), on both backends

def recorded(backend, f, x):
    (r,) = backend.autograd.grad(f, x, create_graph=True)
    return r


def test_create_graph_sets_leaf_grads_to_recorded_gradients(backend):
    """f = sin(x) y: x.grad and y.grad become Vars, the recorded gradients (autograd's
    bits), and differentiate again; intermediate nodes and constants keep their grads."""
    x, y = backend.Var(0.7), backend.Var(-1.3)
    c = y.detach()
    m = backend.sin(x)
    f = m * y + c
    f.backward(create_graph=True)
    assert isinstance(x.grad, backend.Var) and isinstance(y.grad, backend.Var)
    assert bits(x.grad.value) == bits(recorded(backend, f, x).value)
    assert bits(y.grad.value) == bits(recorded(backend, f, y).value)
    assert backend.autograd.grad(x.grad, [x, y]) == (-math.sin(0.7) * -1.3, math.cos(0.7))
    assert (m.grad, f.grad, c.grad) == (0.0, 0.0, 0.0)


def test_create_graph_adds_to_a_grad_that_is_not_zero(backend):
    x = backend.Var(2.0)
    x.grad = 0.5
    f = x * x * x
    f.backward(create_graph=True)  # 0.5 + 3 x^2
    assert x.grad.value == 12.5
    assert backend.autograd.grad(x.grad, x) == (12.0,)
    f.backward(create_graph=True)  # a Var grad: + 3 x^2 again
    assert x.grad.value == 24.5
    assert backend.autograd.grad(x.grad, x) == (24.0,)


def test_create_graph_leaves_unreached_leaves_and_non_leaves_alone(backend):
    x, z, w = backend.Var(1.5), backend.Var(4.0), backend.Var(3.0)
    z.grad = 0.25
    (w * w).backward(create_graph=True)
    held = w.grad
    m = x * x
    f = m * 2.0
    f.backward()  # a plain backward fills m's grad
    f.backward(create_graph=True)
    assert m.grad == 2.0 and f.grad == 1.0  # from the plain backward, untouched
    assert z.grad == 0.25 and not isinstance(z.grad, backend.Var)
    assert w.grad.id == held.id  # the same node
    assert x.grad.value == 6.0 + 6.0  # the plain backward's 6.0, then + 4 x


def test_plain_backward_sums_floats_then_adds_them_to_a_var_grad(backend):
    """A Var grad G takes a plain backward's contributions in one add: G + (0 + c1 + c2),
    the floats summed first as a float grad would (1.0 + 1e-16 + 1e-16 would lose both)."""
    x = backend.Var(1.0)
    (x * 0.5 * x).backward(create_graph=True)  # x.grad: x, value 1.0
    G = x.grad
    (x * 1e-16 + x * 1e-16).backward()
    assert x.grad.value == 1.0 + 2e-16 != 1.0 + 1e-16 + 1e-16
    assert x.grad.op == "add" and [u.id for u in x.grad.inputs][0] == G.id
    assert backend.autograd.grad(x.grad, x) == (1.0,)  # the float part is a constant
    before = x.grad
    backend.relu(-x).backward()  # a 0.0 contribution: the grad stays that node
    assert x.grad.id == before.id
    y = backend.Var(2.0)  # a float grad next to it: as always
    (x * y).backward()
    assert y.grad == 1.0 and x.grad.value == 1.0 + 2e-16 + 2.0


def test_zero_grad_and_setting_grad_replace_a_var_grad(backend):
    x = backend.Var(3.0)
    f = x * x
    for reset, want in ((lambda: x.zero_grad(), 0.0), (lambda: backend.zero_grad([x]), 0.0),
                        (lambda: setattr(x, "grad", 2.5), 2.5),
                        (lambda: setattr(x, "grad", None), 0.0)):
        f.backward(create_graph=True)
        assert isinstance(x.grad, backend.Var)
        reset()
        assert x.grad == want and not isinstance(x.grad, backend.Var)
    f.backward()
    assert x.grad == 6.0


def test_repr_of_a_var_grad_shows_its_value(backend):
    x = backend.Var(2.0)
    (x * x).backward(create_graph=True)
    assert "grad=Var(value=4.0" in repr(x)


def test_create_graph_must_be_a_bool(backend):
    with pytest.raises(TypeError, match="True or False"):
        (backend.Var(1.0) * 2.0).backward(create_graph=1)


# ---------------------------------------------------------------------------------------
# The functions the rules call

def ops_math_def():
    """The functions csrc/tapegrad/ops_math.def lists for the rules, in its order."""
    text = (Path(__file__).resolve().parents[1] / "csrc" / "tapegrad" / "ops_math.def").read_text()
    return re.findall(r"^TG_MATH_(?:UNARY|BINARY)\((\w+)\)", text, re.M)


def test_rule_functions_are_ops_math_def():
    assert list(ref.RULE_FUNCTIONS) == ops_math_def()


GRID = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 2.5, -2.5, 3.7, -7.25, 1e-310, 1e-300, 700.0,
        710.0, -745.5, 1e300, -1e300, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("name", [*ref.RULE_FUNCTIONS, "div"])
def test_rule_functions_on_numbers_are_the_cpp_kernels(name):
    """On floats each is the C++ op's forward (what C++ folds numbers with), bit for bit,
    and a float; where Python's math has the function and gives a float, math's value."""
    f, cpp = getattr(ref, f"_{name}"), getattr(tg, name)
    pairs = [(a,) for a in GRID] if ref.OPS[name][0] == 1 else \
        [(a, b) for a in GRID for b in GRID]
    for args in pairs:
        got = f(*args)
        assert type(got) is float and bits(got) == bits(cpp(*args)), (name, args, got)
        try:
            want = getattr(math, name)(*args)
        except (AttributeError, ValueError, OverflowError):
            continue
        if isinstance(want, float):  # (math.floor and math.trunc give ints)
            assert bits(got) == bits(want), (name, args)


@pytest.mark.parametrize("name", ref.RULE_FUNCTIONS)
def test_rule_functions_on_vars_are_the_tables_ops(name):
    x = ref.Var(0.75)
    args = (x,) if ref.OPS[name][0] == 1 else (1.0, x)
    v = getattr(ref, f"_{name}")(*args)
    assert v.op == name and v.inputs[-1] is x  # pow with 2 stays pow: not square
    assert bits(v.value) == bits(getattr(ref, f"_{name}")(*[float(a) for a in args]))
    if len(args) == 2:
        assert v.inputs[0].op == "const" and v.inputs[0].value == 1.0
        assert getattr(ref, f"_{name}")(x, 2.0).op == name


@pytest.mark.parametrize("x, y", [(a, b) for a in GRID for b in (0.0, -0.0, 2.0, 3.0, 0.5)])
def test_pow_rule_shortcuts_are_unchanged_on_numbers(x, y):
    """pow's rule at y == 0 and y == 2 (value_only) gives C++'s floats."""
    v = ref.pow(ref.Var(x), ref.Var(y))
    c = tg.pow(tg.Var(x), tg.Var(y))
    assert [bits(d) for d in ref.local_grads(v, 1.5)] == [bits(d) for d in tg.local_grads(c, 1.5)]


def test_backward_create_graph_gives_every_leaf_in_the_graph_a_var(backend):
    """Leaves below the root get a Var .grad even when their gradient is 0 (through a
    constant 0 factor or the detach op); a leaf outside the graph keeps its float, and so
    does one whose value entered as a constant (Var.detach())."""
    x, y, z, outside = (backend.Var(v) for v in (2.0, 3.0, 4.0, 5.0))
    (x * 0.0 + backend.detach(z) + y + outside.detach()).backward(create_graph=True)
    assert [(type(v.grad), float(v.grad)) for v in (x, y, z)] == [(backend.Var, 0.0),
                                                                    (backend.Var, 1.0),
                                                                    (backend.Var, 0.0)]
    assert outside.grad == 0.0 and not isinstance(outside.grad, backend.Var)
