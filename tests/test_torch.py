"""PyTorch float64 as an oracle: every op (on its domain and at its documented kinks) and
random graphs. Skipped when torch is not installed (`pip install torch==2.13.0`)."""
import importlib
import math
import random

import pytest
from helpers import CONVENTIONS, SPECIAL, same, spec_for, table_ops
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from torch_oracle import TORCH, leaf, torch_grads, torch_rel  # noqa: E402

ref = importlib.import_module("tapegrad.reference")

OPS = table_ops()


def ours(backend, op, args):
    xs = [backend.Var(a) for a in args]
    out = getattr(backend, op)(*xs)
    out.backward()
    return out.value, [x.grad for x in xs]


@pytest.mark.parametrize("op, arity", OPS, ids=[op for op, _ in OPS])
def test_op_matches_torch_on_its_domain(backend, op, arity):
    r = random.Random(op)
    for _ in range(12):
        args = spec_for(op).domain(r)
        value, grads = ours(backend, op, args)
        t_value, t_grads = torch_grads(op, args)
        assert same(value, t_value, rel=torch_rel(op, 1e-12), abs_=1e-15), args
        for g, t in zip(grads, t_grads):
            assert same(g, t, rel=1e-9, abs_=1e-12), (args, grads, t_grads)


@pytest.mark.parametrize("op, args, value, expected", CONVENTIONS,
                         ids=[f"{k[0]}{k[1]}" for k in CONVENTIONS])
def test_conventions_are_pytorchs(backend, op, args, value, expected):
    got_value, got = ours(backend, op, args)
    t_value, t_grads = torch_grads(op, args)
    assert same(got_value, t_value) and same(t_value, value)
    for g, t, e in zip(got, t_grads, expected):
        assert same(g, t) and same(t, e), (got, t_grads, expected)


# ---------------------------------------------------------------- random graphs
# Operands are drawn from the nodes whose values keep every local derivative finite
# (log and sqrt of positives, nonzero denominators, ...): there PyTorch and tapegrad agree
# exactly in meaning. (Where a derivative is infinite, tapegrad skips zero adjoints and
# PyTorch gives 0 * inf = NaN: test_conventions covers that on purpose.)

ANY = (lambda v: True, lambda v: True)
DOMAINS = {
    "div": (lambda v: True, lambda v: abs(v) > 0.05),
    "pow": (lambda v: v > 0.05, lambda v: abs(v) <= 3),
    "sqrt": (lambda v: v > 0.05,),
    "log": (lambda v: v > 0.05,),
    "tan": (lambda v: abs(v) < 1.3,),
    "exp": (lambda v: v < 20,),
    "expm1": (lambda v: v < 20,), "exp2": (lambda v: v < 20,),
    "sinh": (lambda v: abs(v) < 20,), "cosh": (lambda v: abs(v) < 20,),
    "log1p": (lambda v: v > -0.95,), "log2": (lambda v: v > 0.05,), "log10": (lambda v: v > 0.05,),
    "xlogy": (lambda v: True, lambda v: v > 0.05),
    "asin": (lambda v: abs(v) < 0.95,), "acos": (lambda v: abs(v) < 0.95,),
    "atanh": (lambda v: abs(v) < 0.95,), "acosh": (lambda v: v > 1.05,),
    "erfinv": (lambda v: abs(v) < 0.9,),
    # off the origin, where both derivatives are a convention
    "atan2": (lambda v: abs(v) > 0.05, lambda v: True),
    "hypot": (lambda v: abs(v) > 0.05, lambda v: True),
    "cbrt": (lambda v: abs(v) > 0.05,), "reciprocal": (lambda v: abs(v) > 0.05,),
    "lgamma": (lambda v: v > 0.05,), "digamma": (lambda v: v > 0.05,),
    # not n = 1: torch's trigamma is only ~2e-10 accurate (torch_oracle.TRIGAMMA_REL)
    "polygamma": (lambda v: v in (0.0, 2.0, 3.0), lambda v: v > 0.05),
    "floor_divide": (lambda v: True, lambda v: abs(v) > 0.05),
    "fmod": (lambda v: True, lambda v: abs(v) > 0.05),
    "remainder": (lambda v: True, lambda v: abs(v) > 0.05),
}


@st.composite
def smooth_programs(draw):
    leaves = draw(st.lists(st.one_of(st.sampled_from(SPECIAL), st.floats(-3, 3)),
                           min_size=1, max_size=4))
    values, steps = list(leaves), []
    for _ in range(draw(st.integers(1, 14))):
        op, arity = draw(st.sampled_from(ref.ops()))
        args = []
        for ok in DOMAINS.get(op, ANY)[:arity]:
            candidates = [i for i, v in enumerate(values) if ok(v)]
            constants = [c for c in (0.5, 2.0, -1.5, 3.0) if ok(c)]
            if arity == 2 and constants and draw(st.integers(0, 4)) == 0:
                args.append(draw(st.sampled_from(constants)))
            elif candidates:
                args.append(draw(st.sampled_from(candidates)))
        if len(args) < arity or not any(isinstance(a, int) for a in args):
            continue
        out = getattr(ref, op)(*(values[a] if isinstance(a, int) else a for a in args))
        if math.isfinite(out) and abs(out) < 1e4:
            values.append(out)
            steps.append((op, tuple(args)))
    return leaves, steps


def run_ours(program, backend):
    leaves, steps = program
    nodes = [backend.Var(v) for v in leaves]
    for op, args in steps:
        nodes.append(getattr(backend, op)(*(nodes[a] if isinstance(a, int) else a
                                            for a in args)))
    return nodes


def run_torch(program):
    leaves, steps = program
    nodes = [leaf(v) for v in leaves]
    for op, args in steps:
        nodes.append(TORCH[op](*(nodes[a] if isinstance(a, int)
                                 else torch.tensor(a, dtype=torch.float64) for a in args)))
    return nodes


@settings(max_examples=150)
@given(program=smooth_programs())
def test_random_graphs_match_torch(backend, program):
    ours_, theirs = run_ours(program, backend), run_torch(program)
    for u, t in zip(ours_, theirs):
        assert same(u.value, t.item(), rel=1e-12, abs_=1e-12), (u, t)
    ours_[-1].backward()
    if theirs[-1].requires_grad:
        theirs[-1].backward()
    for k in range(len(program[0])):
        t = theirs[k].grad
        assert same(ours_[k].grad, 0.0 if t is None else t.item(), rel=1e-9, abs_=1e-9), k
