"""Comparisons while tracing are conditions: `x > 0` inside tg.trace is a tg.Condition (the
comparison's node), so tg.where(x > 0, a, b) replays right at any input with no guard;
its truth value (if, while, and/or, bool()) records the same guard a comparison always
recorded; & | ~ record logical ops. Eagerly a comparison is still a Python bool.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly.
"""
import importlib
import inspect
import math
import operator

import numpy as np
import pytest
from helpers import in_new_thread
from trace_helpers import assert_bits, same_bits

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")

# (operator, its op-table node with the Var on the left, numpy's ufunc)
COMPARE = [
    (operator.lt, "lt", np.less), (operator.le, "le", np.less_equal),
    (operator.gt, "gt", np.greater), (operator.ge, "ge", np.greater_equal),
    (operator.eq, "eq", np.equal), (operator.ne, "ne", np.not_equal),
]
IDS = [name for _, name, _ in COMPARE]
SWAPPED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
# Points on both sides of every comparison with 0 or with each other, ties, signed zeros,
# infinities and NaN.
GRID = np.array([-2.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, np.inf, -np.inf, np.nan])


def grid2():
    return GRID[:, None], GRID[None, ::-1]


def unsigned(a):
    """a with -0.0 as +0.0: where(c, a, b) is if_true(c, a) + if_false(c, b), so the
    unchosen half adds +0.0 to the chosen value (and to its gradient contributions)."""
    return np.asarray(a, dtype=np.float64) + 0.0


# ---------------------------------------------------------------------------- the objects

@pytest.mark.parametrize("cmp, name, _", COMPARE, ids=IDS)
def test_a_comparison_while_tracing_is_a_condition_node(cmp, name, _):
    seen = []

    def fn(x, y):
        for c, want_op, want_inputs in ((cmp(x, y), name, (x, y)),
                                        (cmp(x, 0.5), name, (x, None)),
                                        (cmp(0.5, y), SWAPPED[name], (y, None))):
            assert type(c) is tg.Condition and isinstance(c, tg.Var)
            assert c.op == want_op
            assert [v.id for v in c.inputs if v.op != "const"] == \
                [v.id for v in want_inputs if v is not None]
            seen.append(c)  # (c.value here would be a value escaping: a guard)
        return x + y

    F = tg.trace(fn, 0.5, 1.0)
    assert F.n_guards == 0  # never asked for a truth value: no guard
    assert [c.value for c in seen] == [float(cmp(0.5, 1.0)), float(cmp(0.5, 0.5)),
                                       float(cmp(0.5, 1.0))]


@pytest.mark.parametrize("cmp, name, _", COMPARE, ids=IDS)
def test_eager_comparisons_are_bools(cmp, name, _):
    x, y = tg.Var(0.5), tg.Var(1.0)
    tg.trace(lambda a: cmp(a, 0.0) & (a > 1), 1.0)  # a trace before changes nothing after
    for a, b in ((x, y), (y, x), (x, x), (x, 0.5), (0.5, y), (x, np.float64(0.5))):
        r = cmp(a, b)
        assert type(r) is bool
        assert r == cmp(float(a), float(b))


def test_condition_type():
    assert issubclass(tg.Condition, tg.Var) and tg.Condition.__module__ == "tapegrad"
    with pytest.raises(TypeError):
        tg.Condition(1.0)
    with pytest.raises(TypeError):
        type("Mine", (tg.Var,), {})  # Var stays final to Python code
    in_new_thread(a_condition_outlives_its_trace)  # on a fresh tape, to check its counts


def a_condition_outlives_its_trace():
    kept = []

    def fn(x):
        kept.append(x > 0)
        return x

    tg.trace(fn, 2.0)
    (c,) = kept
    assert repr(c) == "Condition(value=1.0, grad=0.0)"
    assert bool(c) and c.value == 1.0  # after the trace: a truth value, no trace to guard
    core._tape_check()
    kept.clear()
    del c
    core._tape_check()
    assert core.tape_stats()["live"] == 0


def test_invert_and_bitwise_ops_on_plain_vars_stay_type_errors():
    x = tg.Var(1.0)
    for f in (operator.invert, lambda v: v & v, lambda v: v | 1.0, lambda v: True & v):
        with pytest.raises(TypeError):
            f(x)

    def fn(x):
        with pytest.raises(TypeError):
            ~x  # noqa: B018 - the TypeError is the point
        with pytest.raises(TypeError):
            x & x  # noqa: B018
        with pytest.raises(TypeError):
            (x > 0) & "no"
        return x

    tg.trace(fn, 1.0)


# ---------------------------------------------------------------------------- where

@pytest.mark.parametrize("cmp, name, numpy_cmp", COMPARE, ids=IDS)
@pytest.mark.parametrize("traced_at", [(0.5, 1.0), (1.0, 0.5), (1.0, 1.0)],
                         ids=["x<y", "x>y", "x==y"])
def test_where_on_a_comparison_replays_right_everywhere(cmp, name, numpy_cmp, traced_at):
    def fn(x, y):
        return tg.where(cmp(x, y), x * y, x - 3.0 * y)

    F = tg.trace(fn, *traced_at)
    assert F.n_guards == 0 and F.ops_histogram()[name] == 1
    X, Y = grid2()
    chosen = numpy_cmp(X, Y)
    with np.errstate(invalid="ignore"):
        want = np.where(chosen, X * Y, X - 3.0 * Y)
    values, (gx, gy) = F.value_and_grad(X, Y)
    assert_bits(unsigned(values), unsigned(want))
    assert_bits(unsigned(gx), unsigned(np.where(chosen, np.broadcast_to(Y, chosen.shape), 1.0)))
    assert_bits(unsigned(gy), unsigned(np.where(chosen, np.broadcast_to(X, chosen.shape), -3.0)))
    for x, y in ((-1.0, 2.0), (2.0, -1.0), (1.5, 1.5)):  # one point: both sides and a tie
        X1, Y1 = tg.Var(x), tg.Var(y)
        out = tg.where(cmp(X1, Y1), X1 * Y1, X1 - 3.0 * Y1)  # eager: a bool condition
        out.backward()
        assert F(x, y) == out.value and F.grad(x, y) == (X1.grad, Y1.grad)


def test_where_with_a_number_on_either_side_and_both_traced_sides():
    def fn(x):
        return tg.where(x > 0, tg.sqrt(x), 0.0) + tg.where(0 >= x, x * x, 1.0)

    for x0 in (4.0, -4.0):
        F = tg.trace(fn, x0)
        assert F.n_guards == 0
        X = np.array([-2.0, -0.0, 0.0, 0.25, 4.0, np.inf, np.nan])
        values, grads = F.value_and_grad(X)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.where(X > 0, np.sqrt(X), 0.0) + np.where(0 >= X, X * X, 1.0)
            # the unchosen sqrt (NaN below 0) leaks into neither value nor gradient
            want_grads = np.where(X > 0, 0.5 / np.sqrt(X), 0.0) + np.where(0 >= X, 2 * X, 0.0)
        assert_bits(unsigned(values), unsigned(want))
        assert_bits(unsigned(grads), unsigned(want_grads))
        assert (F(-3.0), F.grad(-3.0)) == (9.0, -6.0)
        assert (F(9.0), F.grad(9.0)) == (4.0, 1.0 / 6.0)


def test_where_eager_traced_and_batched_agree():
    def fn(x):
        return tg.where(x > 0, x * x, -2.0 * x)

    for x in (-1.5, 2.0):
        X = tg.Var(x)
        out = fn(X)  # eager: x > 0 is a bool
        out.backward()
        for x0 in (-1.0, 1.0):
            F = tg.trace(fn, x0)
            assert F.n_guards == 0
            assert (F(x), F.grad(x)) == (out.value, X.grad)
    F = tg.trace(fn, 1.0)
    X = np.linspace(-3.0, 3.0, 60).reshape(3, 1, 20)  # a batch, its dims kept
    values, grads = F.value_and_grad(X, threads=2)
    assert_bits(unsigned(values), unsigned(np.where(X > 0, X * X, -2.0 * X)))
    assert_bits(unsigned(grads), unsigned(np.where(X > 0, 2 * X, -2.0)))


def test_grad_and_jacobian_transforms_on_both_sides():
    def fn(x):
        return tg.where(x > 0, x * x, tg.sin(x))

    def vector_fn(v):
        return np.array([tg.where(v[0] > v[1], v[0] * v[1], v[1]), tg.where(v[1] < 0, -v[1], v[0])])

    for x in (1.5, -1.5):
        assert tg.grad(fn)(x) == (2 * x if x > 0 else math.cos(x))
        for v in (np.array([x, -x]), np.array([-x, x])):
            J = tg.jacobian(vector_fn)(v)
            a, b = v
            want = np.array([[b, a] if a > b else [0.0, 1.0],
                             [0.0, -1.0] if b < 0 else [1.0, 0.0]])
            assert_bits(J, want)
            F = tg.trace(vector_fn, np.array([1.0, 2.0]))
            assert F.n_guards == 0
            assert_bits(F.jacobian(v), want)


def test_hessian_through_where():
    F = tg.trace(lambda x: tg.where(x > 1, x * x * x, x * x), 0.0)
    assert F.hessian(2.0) == 12.0 and F.hessian(0.5) == 2.0
    assert_bits(F.hessian(np.array([2.0, 0.5, -1.0])), [12.0, 2.0, 2.0])


# ---------------------------------------------------------------------------- truth values

def test_if_on_a_comparison_records_the_same_guard_as_before():
    def f(x):
        if x > 0:
            return x
        return -x

    F = tg.trace(f, 1.0)
    assert F.n_guards == 1 and "gt" not in F.ops_histogram()  # the unused node is dropped
    line = inspect.getsourcelines(f)[1] + 1
    assert (F(2.5), F.grad(2.5)) == (2.5, 1.0)
    with pytest.raises(tg.TraceError) as err:
        F(-1.0)
    msg = str(err.value)
    assert f"{__file__}:{line}" in msg and "if x > 0:" in msg, msg
    G = tg.trace(f, -1.0)
    assert G(-3.0) == 3.0
    with pytest.raises(tg.TraceError):
        G(0.5)
    with pytest.raises(tg.TraceError):  # the guard is x > 0 itself, tie included
        tg.trace(lambda x: x * 2.0 if x >= 1.0 else x, 1.0)(np.nextafter(1.0, 0.0))


@pytest.mark.parametrize("cmp, name, numpy_cmp", COMPARE, ids=IDS)
def test_each_comparison_guard_checks_its_own_outcome(cmp, name, numpy_cmp):
    traced = cmp(1.0, 1.0)  # at a tie: True for le, ge, eq
    F = tg.trace(lambda x, y: x + y if cmp(x, y) else x - y, 1.0, 1.0)
    assert F.n_guards == 1 and name not in F.ops_histogram()
    for a in GRID.tolist():
        for b in GRID.tolist():
            if bool(numpy_cmp(a, b)) == traced:
                assert same_bits(F(a, b), a + b if traced else a - b), (a, b)
            else:
                with pytest.raises(tg.TraceError):
                    F(a, b)


def test_the_guard_is_recorded_where_python_asks():
    def fn(x):
        c = x > 0
        y = x * 2.0
        if c:  # this line, not the comparison's
            return y
        return -y

    F = tg.trace(fn, 1.0)
    assert F.n_guards == 1 and F(3.0) == 6.0
    with pytest.raises(tg.TraceError) as err:
        F(-1.0)
    line = inspect.getsourcelines(fn)[1] + 3
    assert f"{__file__}:{line}" in str(err.value) and "if c:" in str(err.value)


def test_while_and_or_and_bool_record_guards():
    def count(x):
        n = 0.0
        while x > 0:  # one guard per test
            x = x - 1.0
            n = n + 1.0
        return n

    F = tg.trace(count, 2.5)
    assert F.n_guards == 4 and F(2.1) == 3.0
    with pytest.raises(tg.TraceError):
        F(3.5)

    # `and` asks for the first truth value, then gives the second condition as it is
    G = tg.trace(lambda x, y: tg.where(x > 0 and y > 0, x, y), 1.0, 1.0)
    assert G.n_guards == 1
    assert (G(1.0, -2.0), G(1.0, 2.0)) == (-2.0, 1.0)  # y > 0 is a node
    with pytest.raises(tg.TraceError):
        G(-1.0, 2.0)
    H = tg.trace(lambda x: x * 3.0 if bool(x < 0) or not x != 0 else x, -1.0)
    assert H.n_guards == 1 and H(-5.0) == -15.0
    with pytest.raises(tg.TraceError):
        H(5.0)


def test_truth_value_of_a_combination_is_one_guard_on_it():
    F = tg.trace(lambda x, y: x if (x > 0) & (y > 0) else y, 1.0, 1.0)
    assert F.n_guards == 1
    assert F(2.0, 3.0) == 2.0
    for x, y in ((-1.0, 1.0), (1.0, -1.0), (np.nan, 1.0)):
        with pytest.raises(tg.TraceError):
            F(x, y)
    G = tg.trace(lambda x, y: x if (x > 0) | (y > 0) else y, 1.0, -1.0)
    assert G.n_guards == 1 and G(-1.0, 2.0) == -1.0  # either side true: same branch
    with pytest.raises(tg.TraceError):
        G(-1.0, -2.0)


def test_a_condition_indexes_as_a_bool():
    F = tg.trace(lambda x: (x * 2.0, x * 3.0)[x > 0], 1.0)
    assert F.n_guards == 1 and F(2.0) == 6.0
    with pytest.raises(tg.TraceError):
        F(-2.0)


def test_numpy_object_arrays_ask_truth_values():
    """numpy's object-array comparisons and logical ufuncs take each element's truth
    value (they call no method named like the ufunc): guards, as before."""
    def fn(v):
        mask = v > 0  # a bool array: one guard per element
        assert mask.dtype == bool
        both = np.logical_and(v > 0, v < 2)  # truth values again
        return np.where(mask & both, v, 0.0 * v).sum()

    F = tg.trace(fn, np.array([1.0, -1.0, 3.0]))
    assert F.n_guards == 3 * 3
    assert F(np.array([0.5, -2.0, 5.0])) == 0.5
    with pytest.raises(tg.TraceError):
        F(np.array([-0.5, -2.0, 5.0]))


# ---------------------------------------------------------------------------- & | ~

def combos(x, y):
    """Logical combinations of comparisons; works on Vars (traced: conditions) and on numpy
    arrays alike."""
    a, b, c = x > 0, y <= 1, x == y
    return [a & b, a | b, ~a, ~(a & ~b) | c, (a | c) & ~(b & c), ~~c, a & True, False | b]


def test_logical_combinations_replay_bit_exact_against_numpy():
    F = tg.trace(lambda x, y: np.array(combos(x, y)), 1.0, 2.0)
    assert F.n_guards == 0
    assert {"logical_and", "logical_or", "logical_not"} <= set(F.ops_histogram())
    X, Y = grid2()
    want = np.stack(np.broadcast_arrays(*combos(X, Y)), axis=-1).astype(np.float64)
    assert_bits(F(X, Y), want)
    one = np.float64
    assert_bits(F(0.5, 0.5), np.array(combos(one(0.5), one(0.5)), dtype=np.float64))

    def selected(x, y):
        return [tg.where(c, x * y, x - y) for c in combos(x, y)]

    G = tg.trace(lambda x, y: np.array(selected(x, y)), -1.0, 1.0)
    assert G.n_guards == 0
    with np.errstate(invalid="ignore"):
        chosen = np.where(want != 0, (X * Y)[..., None], (X - Y)[..., None])
    assert_bits(unsigned(G(X, Y)), unsigned(chosen))
    for x, y in ((2.0, 3.0), (-2.0, 0.5), (1.0, 1.0)):
        mask = np.array(combos(one(x), one(y)), dtype=bool)
        gx, gy = G.jacobian(x, y)
        assert_bits(gx, np.where(mask, y, 1.0))  # x * y or x - y
        assert_bits(gy, np.where(mask, x, -1.0))


def test_logical_ops_treat_nan_as_true():
    F = tg.trace(lambda x: np.array([(x > 0) | (x != x), ~(x == x), tg.logical_and(x, 1.0),
                                     tg.logical_or(x, 0.0), tg.logical_not(x)]), 1.0)
    X = np.array([np.nan, 0.0, -0.0, 2.0])
    with np.errstate(invalid="ignore"):
        want = np.stack([(X > 0) | np.isnan(X), ~(X == X), np.logical_and(X, 1.0),
                         np.logical_or(X, 0.0), np.logical_not(X)], axis=-1)
    assert_bits(F(X), want.astype(np.float64))


def test_conditions_as_numbers():
    def fn(x):
        n = sum(v > 0 for v in (x, x - 1.0, x - 2.0))  # a node: how many are positive
        return tg.maximum(x < 1, 0.5) + n * 10.0 + tg.if_true(x >= 2, x)

    F = tg.trace(fn, 0.0)
    assert F.n_guards == 0
    X = np.array([-1.0, 0.5, 1.5, 2.5])
    assert_bits(F(X), [1.0, 11.0, 20.5, 33.0])


# ---------------------------------------------------------------------------- edge cases

def test_comparisons_in_no_grad_and_with_vars_of_another_tape():
    other = in_new_thread(lambda: tg.Var(-5.0))  # a Var of another thread's tape

    def fn(x):
        with tg.no_grad():
            c = x > 0  # still a condition node (recorded, then detached)
        assert type(c) is tg.Condition
        d = x > other  # another tape: a number to the trace, so a bool and a guard
        assert type(d) is bool
        return tg.where(c, x, -x) * 2.0

    F = tg.trace(fn, 3.0)
    assert F.n_guards == 1
    assert (F(-2.0), F.grad(-2.0), F(5.0)) == (4.0, -2.0, 10.0)
    with pytest.raises(tg.TraceError):
        F(-6.0)  # x > other (-5.0) flips


def test_conditions_survive_tape_compaction_and_keep_their_operands():
    """Garbage below live nodes makes the tape compact while tracing, which moves the
    comparison nodes and the operands a Condition holds for its guard."""
    sizes = []

    def fn(x):
        a, b = x.sin(), x.cos()
        del a  # garbage below a live node: compaction will move everything above it
        conds = [(x * float(k)) > 1.0 for k in range(1, 5)]
        for _ in range(10000):  # garbage enough to compact (twice the live nodes, >= 4096)
            junk = x.exp()  # noqa: F841 - each one garbage below the next
        sizes.append(core.tape_stats()["size"])
        out = sum(tg.where(c, 1.0, 0.0) for c in conds) + (x if conds[1] else -x)
        return out + b * 0.0

    F = in_new_thread(tg.trace, fn, 1.0)
    assert sizes[0] < 5000  # compacted on the way
    assert F.n_guards == 1 and F(1.0) == 3.0 + 1.0
    assert F(0.9) == 3.0 + 0.9 and F(1.5) == 4.0 + 1.5
    with pytest.raises(tg.TraceError):
        F(0.4)  # 2 * 0.4 > 1 flips
    in_new_thread(core._tape_check)
