"""A traced tg.Function replays what the eager tape computes: random graphs bit for bit
or within a reordering bound, common subexpressions merged (adjoints summed first),
the one-point reverse sweep, constants and closure variables folded, dead code dropped.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import gc
import importlib
import math

import numpy as np
import pytest
from helpers import STYLES, leaf_values, programs
from hypothesis import given, settings
from hypothesis import strategies as st
from trace_helpers import (
    OPS,
    assert_bits,
    eager,
    reordering_tolerance,
    replay,
    trace_program,
    within,
)

tg = importlib.import_module("tapegrad")


@st.composite
def repeated_programs(draw):
    """A random program, then the same steps again (each op possibly called in another
    style), then one step combining the two roots: CSE should merge the whole copy."""
    leaves, steps = draw(programs(OPS))
    n, m = len(leaves), len(steps)

    def shift(a):
        return a + m if isinstance(a, int) and a >= n else a

    copy = [(op, draw(st.sampled_from(STYLES)), tuple(shift(a) for a in args))
            for op, _, args in steps]
    combine = draw(st.sampled_from(["add", "sub", "mul", "div"]))
    joined = (combine, "operator", (n + m - 1, n + 2 * m - 1))
    return (leaves, steps), (leaves, steps + copy + [joined])


# ---------------------------------------------------------------------------- replay == eager

@settings(max_examples=150)
@given(data=st.data())
def test_replay_matches_eager_on_random_graphs(data):
    """Values bit-for-bit with and without CSE; gradients bit-for-bit without CSE (same
    instructions in the same order as the eager sweep) and, with CSE, within 1e-12 of the
    sum of |terms| (only the order adjoints are summed in may change), same NaN/Inf."""
    program = data.draw(programs(OPS), label="program")
    n = len(program[0])
    x = data.draw(st.lists(leaf_values, min_size=n, max_size=n), label="new inputs")
    expected = eager(program, x)

    plain = trace_program(program, cse=False)
    assert_bits(replay(plain, x), expected, "cse=False: value and gradient")
    assert_bits(replay(plain, program[0]), eager(program, program[0]), "at the traced point")

    optimised = trace_program(program)
    got = replay(optimised, x)
    assert_bits(got[:1], expected[:1], "cse=True: value")
    assert within(got[1:], expected[1:], reordering_tolerance(program, x)).all(), (got, expected)


@settings(max_examples=120)
@given(pair=repeated_programs(), data=st.data())
def test_cse_merges_a_repeated_graph(pair, data):
    """The repeated copy costs no instructions with CSE (only the combining step is new),
    and twice as many without; values stay bit-for-bit those of eager evaluation."""
    single, doubled = pair
    n = len(single[0])
    x = data.draw(st.lists(leaf_values, min_size=n, max_size=n), label="new inputs")
    with_cse, without = trace_program(doubled), trace_program(doubled, cse=False)
    assert with_cse.n_ops == trace_program(single).n_ops + 1
    assert without.n_ops == 2 * trace_program(single, cse=False).n_ops + 1

    expected = eager(doubled, x)
    assert_bits(replay(without, x), expected, "cse=False")
    got = replay(with_cse, x)
    assert_bits(got[:1], expected[:1], "cse=True: value")
    ok = within(got[1:], expected[1:], reordering_tolerance(doubled, x))
    # Documented (README): the merged copy's adjoints are summed before its rule runs, so
    # where the two uses cancel exactly (a - a) CSE skips rules that eager runs twice and
    # turns into inf - inf = NaN. Only there may CSE be finite where eager is NaN.
    ok |= np.isnan(expected[1:]) & np.isfinite(got[1:])
    assert ok.all(), f"cse=True gradient {got[1:]} vs eager {expected[1:]}"


def test_cse_sums_a_merged_nodes_adjoints_before_its_rule():
    """sqrt(x) - sqrt(x) at 0: eager backward sends +inf and -inf into x (grad NaN). With
    CSE the two sqrt nodes are one; its adjoints +1 and -1 cancel to exactly 0 before the
    sqrt rule runs, so the rule is skipped and the gradient is the true 0 (documented in
    the README). cse=False reproduces eager, NaN included."""
    def fn(x):
        return tg.sqrt(x) - tg.sqrt(x)

    x = tg.Var(0.0)
    fn(x).backward()
    assert math.isnan(x.grad)  # the eager tape
    assert math.isnan(tg.trace(fn, 1.0, cse=False).grad(0.0))
    F = tg.trace(fn, 1.0)
    assert F.n_ops == 2  # sqrt once, then sub
    assert F.grad(0.0) == 0.0


def test_cse_counts_commutative_and_constant_repeats():
    def fn(x, y):
        return (x * y).sin() + tg.sin(y * x) + x * 2.0 + 2.0 * x

    F, G = tg.trace(fn, 0.5, 1.5), tg.trace(fn, 0.5, 1.5, cse=False)
    # with CSE: x*y (y*x is the same), sin, add, x*2 (2*x is the same), add, add
    assert F.ops_histogram() == {"mul": 2, "sin": 1, "add": 3}
    assert G.ops_histogram() == {"mul": 4, "sin": 2, "add": 3}
    for x, y in [(0.3, -1.7), (2.0, 0.25)]:
        X, Y = tg.Var(x), tg.Var(y)
        out = fn(X, Y)
        out.backward()
        assert_bits(replay(G, (x, y)), [out.value, X.grad, Y.grad])
        got = replay(F, (x, y))
        assert_bits(got[:1], [out.value])
        assert within(got[1:], [X.grad, Y.grad], 1e-12 * 10).all()


def test_one_point_reverse_clears_what_a_zero_adjoint_skips():
    """The one-point reverse stores each node's first contribution instead of clearing
    every adjoint first; a zero adjoint must still store 0 there. Here relu(y) = 0 gives
    everything under it zero adjoints (unary and binary ops, x * x), so they pass on
    zeros, not the previous call's adjoints."""
    def fn(x, y):
        return tg.relu(y) * (tg.sin(x * (x + 1.0)) + tg.exp(x * x)) + 0.5 * y

    F = tg.trace(fn, 3.0, 1.0)
    for x, y in [(3.0, 1.0), (3.0, -1.0), (-0.5, 2.0), (0.7, -3.0), (0.7, 0.0)]:
        X, Y = tg.Var(x), tg.Var(y)
        out = fn(X, Y)
        out.backward()
        assert_bits(replay(F, (x, y)), [out.value, X.grad, Y.grad])
        assert_bits([float(v) for v in F.grad(x, y)], [X.grad, Y.grad])
        assert_bits([float(v[0]) for v in F.grad(np.array([x]), np.array([y]))],
                    [X.grad, Y.grad])  # a batch of one point
    # Batched lanes: the same lanes first see nonzero adjoints, then zero ones (y <= 0);
    # eager's zeros must come back exactly zero, the rest to within libmvec's few ulp.
    xs = np.linspace(-2.0, 2.0, 40)
    for ys in (np.full(40, 1.5), np.where(np.arange(40) % 2 == 0, -1.0, 0.5)):
        gx, gy = F.grad(xs, ys)
        for k in range(40):
            X, Y = tg.Var(xs[k]), tg.Var(ys[k])
            fn(X, Y).backward()
            assert (gx[k] == 0.0) == (X.grad == 0.0) and math.isclose(gx[k], X.grad, rel_tol=1e-13)
            assert gy[k] == Y.grad or math.isclose(gy[k], Y.grad, rel_tol=1e-13)


def test_one_point_gradients_have_no_negative_zero():
    """Stored first contributions can be -0.0 (x * -0.0); eager sums start at +0.0, and so
    must every replayed gradient, one point or a batch of one."""
    F = tg.trace(lambda x, y: x * -0.0 + y * y, 1.0, 2.0)
    X, Y = tg.Var(1.5), tg.Var(2.0)
    (X * -0.0 + Y * Y).backward()
    assert math.copysign(1.0, X.grad) == 1.0
    batch = F.grad(np.array([1.5, -2.0, 3.0]), np.array([2.0, 1.0, 0.5]))[0]
    for gx in (F.grad(1.5, 2.0)[0], F.grad(np.array([1.5]), np.array([2.0]))[0][0], *batch):
        assert gx == 0.0 and math.copysign(1.0, gx) == 1.0


@pytest.mark.parametrize("users", [3, 16, 17, 60])
def test_cse_finds_repeats_among_a_busy_nodes_users(users):
    """CSE files a node's first 16 users in a list and the rest in a hash table: repeats
    are found on either side of that limit, and in both orders of first use."""
    cs = [float(k) for k in range(2, users + 2)]

    def twice(x, y):
        s = x * y
        first = [s * c for c in cs]
        again = [c * s for c in reversed(cs)]  # commutative: the same instructions
        return sum(first) + sum(again[::-1]) * 0.5

    def once(x, y):
        s = x * y
        first = [s * c for c in cs]
        t = sum(first)
        return t + t * 0.5

    F, G = tg.trace(twice, 0.5, 1.5), tg.trace(once, 0.5, 1.5, cse=False)
    assert F.ops_histogram() == G.ops_histogram()
    assert F.n_ops == G.n_ops
    assert_bits(replay(F, (0.3, -1.7)), replay(G, (0.3, -1.7)))


def test_constants_and_closure_vars_are_folded_and_frozen():
    c = tg.Var(0.7)

    def fn(x):
        # no input reaches k: one constant (c is deleted below, on purpose)
        k = c * 3.0 + tg.exp(c) - tg.Var(0.25)  # noqa: F821
        return x * k + tg.sin(x)

    F = tg.trace(fn, 1.0)
    assert F.ops_histogram() == {"mul": 1, "sin": 1, "add": 1}
    for x in (1.0, -2.5, 0.0):
        X = tg.Var(x)
        out = fn(X)
        out.backward()
        assert_bits(replay(F, (x,)), [out.value, X.grad])
    expected = replay(F, (0.4,))
    c.value = 100.0  # the closure Var changes after tracing: the trace keeps its value
    assert_bits(replay(F, (0.4,)), expected)
    del c
    gc.collect()
    assert_bits(replay(F, (0.4,)), expected)


def test_dead_code_is_dropped_but_guard_inputs_stay():
    def fn(x, y):
        junk = tg.exp(x) * tg.cos(y) + x  # computed, never used
        del junk
        return x * 2.0

    F = tg.trace(fn, 1.0, 2.0)
    assert F.ops_histogram() == {"mul": 1} and F.n_ops == 1
    assert replay(F, (3.0, 5.0)).tolist() == [6.0, 2.0, 0.0]

    def guarded(x):
        return x * 2.0 if tg.sin(x) > 0 else x * 3.0  # sin only feeds the guard

    G = tg.trace(guarded, 1.0)
    assert G.ops_histogram() == {"sin": 1, "mul": 1} and G.n_guards == 1
    assert G(2.0) == 4.0
    with pytest.raises(tg.TraceError):
        G(4.0)  # sin(4) < 0
