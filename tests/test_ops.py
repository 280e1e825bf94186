"""Every table row: value against an independent oracle, gradient against finite differences.

Parametrized over the op tables themselves, so a new row is tested with no new test code
(and fails until it has a spec in helpers.SPECS).
"""
import importlib
import math
import random
import re
from pathlib import Path

import pytest
from helpers import smooth, spec_for, table_ops, within_ulps

OPS = table_ops()
IDS = [op for op, _ in OPS]
SAMPLES = 12


def samples(op):
    spec = spec_for(op)
    r = random.Random(op)
    return [spec.domain(r) for _ in range(SAMPLES)]


def central_difference(f, x, h=1e-3):
    """Stan's 6-point stencil: error O(h**6), about 1e-10 for smooth f."""
    return (f(x + 3 * h) - 9 * f(x + 2 * h) + 45 * f(x + h)
            - 45 * f(x - h) + 9 * f(x - 2 * h) - f(x - 3 * h)) / (60 * h)


def row(backend, op):
    table = dict(backend.ops())
    assert op in table, f"op {op!r} is missing from this backend's table"
    return table[op]


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_value_matches_oracle(backend, op, arity):
    assert row(backend, op) == arity
    oracle = spec_for(op).oracle
    for args in samples(op):
        assert len(args) == arity
        expected, ulps = oracle(*args), spec_for(op).ulps
        got = getattr(backend, op)(*args)  # plain numbers: a float
        assert type(got) is float and within_ulps(got, expected, ulps), (args, got, expected)
        node = getattr(backend, op)(*map(backend.Var, args))
        assert node.value == got or (math.isnan(got) and math.isnan(node.value))


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_gradient_matches_finite_differences(backend, op, arity):
    assert row(backend, op) == arity
    f = getattr(backend, op)
    for args in samples(op):
        leaves = [backend.Var(a) for a in args]
        f(*leaves).backward()
        for k in range(arity):
            def partial(t, k=k, args=args):
                return f(*args[:k], t, *args[k + 1:])
            fd = central_difference(partial, args[k]) if smooth(spec_for(op), k) else 0.0
            assert math.isclose(leaves[k].grad, fd, rel_tol=1e-7, abs_tol=1e-9), (args, k)


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_method_function_and_mixed_forms_agree(backend, op, arity):
    assert row(backend, op) == arity
    f = getattr(backend, op)
    for args in samples(op)[:3]:
        xs = [backend.Var(a) for a in args]
        expected = f(*args)
        # Var.detach() is PyTorch's (a new constant, test_api); the function records the op.
        method = getattr(xs[0], op)(*xs[1:]) if op != "detach" else f(*xs)
        assert type(expected) is float
        assert isinstance(method, backend.Var)
        assert method.op == op and method.value == expected
        assert [p.id for p in method.inputs] == [x.id for x in xs]
        if arity == 2:  # a plain number on either side becomes a 'const' input
            for node, k in ((f(args[0], xs[1]), 0), (f(xs[0], args[1]), 1),
                            (getattr(xs[0], op)(args[1]), 1)):
                assert node.op == op and node.value == expected
                assert node.inputs[k].op == "const" and node.inputs[k].value == args[k]
                assert node.inputs[1 - k].id == xs[1 - k].id


@pytest.mark.parametrize("op, arity", OPS, ids=IDS)
def test_local_grads_is_the_backward_rule(backend, op, arity):
    assert row(backend, op) == arity
    for args in samples(op)[:3]:
        xs = [backend.Var(a) for a in args]
        out = getattr(backend, op)(*xs)
        out.backward()
        assert backend.local_grads(out) == tuple(x.grad for x in xs)
        scaled = backend.local_grads(out, 2.0)
        assert len(scaled) == arity
        assert all(math.isclose(s, 2 * x.grad, rel_tol=1e-15) for s, x in zip(scaled, xs))


def ops_def_rows():
    """(name, arity) per TG_OP row of csrc/tapegrad/ops.def, the single op table."""
    text = (Path(__file__).resolve().parents[1] / "csrc" / "tapegrad" / "ops.def").read_text()
    return [(name, int(arity))
            for name, arity in re.findall(r"^TG_OP\(\s*(\w+)\s*,\s*(\d+)\s*,", text, re.M)]


def test_table_matches_ops_def(backend):
    rows = ops_def_rows()
    assert len(rows) >= 18
    assert backend.ops() == rows


def test_op_rules_expose_every_column_of_ops_def():
    # The page, anomaly messages and docs read the rules from this one table.
    core = importlib.import_module("tapegrad._core")
    rules = {row["name"]: row for row in core.op_rules()}
    assert [(name, rules[name]["arity"]) for name in rules] == ops_def_rows()
    for name, row in rules.items():
        assert row["forward"] and row["dx"] and row["tangent"], name
        assert bool(row["dy"]) == (row["arity"] == 2), name


@pytest.mark.parametrize("op, arity", OPS)
def test_explain_page_states_every_ops_rule_with_its_number(backend, op, arity):
    # An op without a worded rule on the page falls back to the table's text, so a new
    # row shows up with its rule and the contribution local_grads computes.
    explain_data = importlib.import_module("tapegrad.explain_page").explain_data
    args = spec_for(op).domain(random.Random(3))
    xs = [backend.Var(a) for a in args]
    root = getattr(backend, op)(*xs)
    edges = [s for s in explain_data(root)["steps"] if s["kind"] == "edge"]
    want = backend.local_grads(root, 1.0)
    assert len(edges) == arity
    fmt = importlib.import_module("tapegrad.graph").fmt
    for step in edges:
        assert step["contribution"] == fmt(want[step["k"]])
        assert step["text"].endswith("= " + step["contribution"])
