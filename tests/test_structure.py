"""Function.structure(): runs of isomorphic blocks in a compiled program.

Every run reported is re-derived by `verify` below, a brute-force check written from the
definition over the program's op and argument arrays (its pickled state), so a run that
over-matches fails here whatever the C++ search did. Exact runs are pinned on the
workloads loops come from: Rosenbrock in numpy and in loop form, the MLP loss, a time
stepper; random and almost periodic programs check that nothing false is found."""
from __future__ import annotations

import dataclasses
import random
import threading

import numpy as np
import pytest
from helpers import spec_for

import tapegrad as tg
from tapegrad.structure import KINDS, Structure

SAME, CARRIED, STRIDED, INVARIANT = range(4)


def arrays(F):
    """The first program's (op names per slot, a, b, first_op) from its pickled state."""
    st = F._programs[0].__getstate__()
    names, first_op = st[1], st[3]
    codes = np.frombuffer(st[4], dtype=np.uint8)
    a = np.frombuffer(st[5], dtype=np.uint32).astype(np.int64)
    b = np.frombuffer(st[6], dtype=np.uint32).astype(np.int64)
    return np.array(names)[codes], a, b, first_op


def classify(col, s, P, j):
    """The (kind, first, source, stride) an operand's slots col[k] (k = 0..K-1) follow in
    a run at s with period P, block op j; None if no rule fits every iteration."""
    K = len(col)
    k = np.arange(K)
    own = col - (s + k * P)  # the operand's offset within its own iteration
    if (own == own[0]).all() and 0 <= own[0] < j:
        return (SAME, int(col[0]), int(own[0]), 0)
    prev = col[1:] - (s + k[:-1] * P)  # offset within the previous iteration
    if col[0] < s and (prev == prev[0]).all() and 0 <= prev[0] < P:
        return (CARRIED, int(col[0]), int(prev[0]), 0)
    step = int(col[1] - col[0])
    if (col < s).all() and (col == col[0] + k * step).all():
        return (STRIDED if step else INVARIANT, int(col[0]), 0, step)
    return None


def expected(desc, s, P, K, j):
    """The slots an operand described by (kind, first, source, stride) reads in iterations
    0..K-1 of block op j, from the definition; asserts the kind's own conditions."""
    kind, first, source, stride = (int(v) for v in desc)
    k = np.arange(K)
    if kind == SAME:
        assert 0 <= source < j and first == s + source
        return s + k * P + source
    if kind == CARRIED:
        assert 0 <= source < P and first < s
        slots = s + (k - 1) * P + source
        slots[0] = first
        return slots
    assert (stride != 0) == (kind == STRIDED) and kind in (STRIDED, INVARIANT)
    slots = first + k * stride
    assert (slots < s).all() and (slots >= 0).all()
    return slots


def verify(F, structure):
    """Assert every run of `structure` holds in F's program, as reported: the operand
    classes re-derived from the slots alone, and (an add or mul may read its operands the
    other way round in some iteration, compile ordering them by slot) the slots each
    iteration reads against those the reported classes give."""
    ops, a, b, first_op = arrays(F)
    n = len(ops)
    end = first_op
    for run in structure:
        s, P, K = run.start, run.period, run.count
        assert P >= 1 and K >= 2 and s >= end and s + P * K <= n  # disjoint, in order
        end = s + P * K
        slots = s + np.arange(K)[:, None] * P + np.arange(P)[None, :]
        assert (ops[slots] == ops[s:s + P]).all()
        assert run.ops == tuple(ops[s:s + P])
        flipped = False
        for j in range(P):
            A, B = a[slots[:, j]], b[slots[:, j]]
            ea = expected(run.operands[j, 0], s, P, K, j)
            eb = expected(run.operands[j, 1], s, P, K, j)
            straight = (A == ea) & (B == eb)
            if ops[s + j] in ("add", "mul"):
                swap = (A == eb) & (B == ea) & ~straight
                assert (straight | swap).all(), (run, j)
                flipped |= bool(swap.any())
                if swap.any():
                    continue
            assert straight.all(), (run, j)
            for i, col in enumerate((A, B)):  # an independent reading of the classes
                got = classify(col, s, P, j)
                assert got is not None, (run, j, i)
                assert tuple(int(v) for v in run.operands[j, i]) == got, (run, j, i)
        assert run.swapped == flipped, run


def found(F, min_count=3):
    S = F.structure(min_count)
    verify(F, S)
    return S


def layout(S):
    """(start counted from the first op, period, count) per run."""
    return [(r.start - S.first_op, r.period, r.count) for r in S]


def rosenbrock_numpy(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s = s + 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    return s


@pytest.mark.parametrize("d", [10, 100, 1000])
def test_rosenbrock_numpy_is_one_run_per_elementwise_stage_and_the_sum(d):
    S = found(tg.trace(rosenbrock_numpy, np.zeros(d)), min_count=2)
    m = d - 1
    # seven elementwise stages of m ops each, then the sum's m - 1 adds: the first (t0 +
    # t1) reads t0 where the others read the running sum, and in slot order t1 first
    # where the others have their term first: swapped
    assert layout(S) == [(k * m, 1, m) for k in range(7)] + [(7 * m, 1, m - 1)]
    assert [r.swapped for r in S] == [False] * 7 + [True]
    assert [r.ops[0] for r in S] == ["square", "sub", "square", "mul", "sub", "square",
                                     "add", "add"]
    assert [r.kinds(0) for r in S[:7]] == [
        ("strided",), ("strided", "strided"), ("strided",), ("invariant", "strided"),
        ("invariant", "strided"), ("strided",), ("strided", "strided")]
    assert S[7].kinds(0) == ("strided", "carried") and S[7].carried == (0,)
    assert S.n_ops == 8 * m - 1


@pytest.mark.parametrize("d", [3, 100, 1000])
def test_rosenbrock_loop_is_one_run_with_the_sum_carried(d):
    F = tg.trace(rosenbrock_loop, np.zeros(d))
    S = found(F, min_count=2)
    assert layout(S) == [(0, 8, d - 1)]
    (run,) = S
    assert run.ops == ("square", "sub", "square", "mul", "add", "sub", "square", "add")
    assert run.carried == (7,) and S.covered == 1.0
    assert run.kinds(0) == ("strided",)  # x[i] ** 2
    assert run.kinds(1) == ("strided", "same")  # x[i + 1] - x[i] ** 2
    assert run.operands[1, 0, 3] == 1 and run.operands[0, 0, 3] == 1  # stride 1


def test_mlp_loss_is_one_run_per_data_point_then_hinge_sum_and_penalty():
    from tapegrad.nn.demo import make_model, moons_loss
    model = make_model()
    X, y = tg.nn.make_moons(100)
    F = tg.nn.compile_loss(model, moons_loss, X, y).function
    S = found(F)
    assert layout(S) == [(0, 640, 100), (64000, 3, 100), (64300, 1, 100), (64401, 2, 337)]
    point = S[0]
    # the parameters are the same in every point's block, the point's coordinates move
    # by 2 (X is 100 x 2, row-major): strided; layers 2 and 3 read this point's layer 1
    kinds = {point.kinds(j) for j in range(point.period)}
    assert ("invariant", "strided") in kinds
    strides = {int(s) for s in point.operands[:, :, 3].ravel()} - {0}
    assert strides == {2}
    assert point.carried == ()
    assert S[1].ops == ("mul", "sub", "relu") and S[3].ops == ("mul", "add")
    assert S.covered > 0.9999


def test_time_stepping_recurrence_carries_the_state():
    def euler(x, k):
        for _ in range(100):
            x = x + 0.01 * (-k * x + tg.sin(x))
        return x

    S = found(tg.trace(euler, 1.0, 0.5))
    # op 0 is -k, computed once (CSE); then 100 steps of mul, sin, add, mul, add, the
    # first step's mul reading (x, -k) in slot order where the others read (-k, x)
    assert layout(S) == [(1, 5, 100)]
    (run,) = S
    assert run.ops == ("mul", "sin", "add", "mul", "add") and run.swapped
    assert run.carried == (4,) and run.kinds(0) == ("invariant", "carried")


def test_report_reads_well():
    F = tg.trace(rosenbrock_loop, np.zeros(50))
    S = F.structure()
    assert repr(S) == "<Structure: 1 run cover 100.0% of 392 ops; largest 49 x 8 ops>"
    assert "operands" not in repr(S[0]) and "period=8" in repr(S[0])
    assert S[0].size == 392 and S[0].stop == S.first_op + 392 and len(S) == 1
    assert S.seconds >= 0.0
    assert set(KINDS) == {"same", "carried", "strided", "invariant"}
    assert repr(tg.trace(lambda x: tg.sin(x), 1.0).structure()) == \
        "<Structure: no runs in 1 ops>"


def test_no_ops_and_tiny_programs():
    assert len(found(tg.trace(lambda x: x, 1.0))) == 0
    assert len(found(tg.trace(lambda x: x * 2.0 + 1.0, 1.0))) == 0
    S = found(tg.trace(lambda x: tg.sin(tg.sin(tg.sin(tg.sin(x)))), 1.0))
    assert layout(S) == [(0, 1, 4)]  # sin carried into sin
    assert S[0].kinds(0) == ("carried",)


# ---------------------------------------------------------------- almost periodic


def loop(n, term, start=0.0):
    """s = s + term(i) for i < n, as a trace of x (n + 2 inputs)."""
    def f(x):
        s = start
        for i in range(n):
            s = s + term(x, i)
        return s
    return tg.trace(f, np.linspace(0.1, 0.9, n + 2))


def covering(S, first_op, lo, hi):
    """The runs that hold an op slot in [first_op + lo, first_op + hi)."""
    return [r for r in S if r.start < first_op + hi and r.stop > first_op + lo]


def test_a_stride_that_breaks_ends_the_run():
    # per iteration: mul(x[i], x[i + 1]), sin, add; iteration 20 reads x[22]
    F = loop(40, lambda x, i: tg.sin(x[i] * x[i + 2 if i == 20 else i + 1]))
    S = found(F)
    # its mul is in no run; the next run starts rotated, at its sin (reading the mul as
    # the carried value's start)
    assert layout(S) == [(0, 3, 20), (61, 3, 19)]
    assert S[0].kinds(0) == ("strided", "strided") and S[1].ops == ("sin", "add", "mul")


def test_an_op_that_differs_in_one_iteration_ends_the_run():
    F = loop(40, lambda x, i: tg.cos(x[i]) if i == 13 else tg.sin(x[i]))
    S = found(F)
    assert layout(S) == [(0, 2, 13), (27, 2, 26)]
    ops, *_ = arrays(F)
    assert ops[S.first_op + 26] == "cos"


def test_a_constant_that_differs_in_one_iteration_ends_the_run():
    # constants are deduplicated by value: 2.5 is another slot than 1.5 (the next one, so
    # two iterations of four would even fit a constant "strided" by 1: the scoring must
    # prefer the short block repeated often)
    F = loop(40, lambda x, i: (2.5 if i == 7 else 1.5) * x[i])
    S = found(F)
    assert layout(S) == [(0, 2, 7), (15, 2, 32)]
    assert S[0].kinds(0) == ("strided", "invariant")


def test_an_operand_invariant_in_all_iterations_but_one_ends_the_run():
    F = loop(40, lambda x, i: x[1 if i == 25 else 0] * x[i + 2])
    S = found(F)
    assert layout(S) == [(0, 2, 25), (51, 2, 14)]
    assert S[0].kinds(0) == ("invariant", "strided")


def skipping_recurrence(x):
    """A running sum whose iteration 12 reads the value before last: not one loop."""
    s, prev = x[0], x[0]
    for i in range(30):
        s, prev = (prev if i == 12 else s) * 0.5 + x[i + 1], s
    return s


def test_a_recurrence_that_skips_an_iteration_ends_the_run():
    S = found(tg.trace(skipping_recurrence, np.zeros(32)))
    assert len(S) == 2 and S.covered < 1.0


# ---------------------------------------------------------------- random programs

UNARY = (tg.sin, tg.tanh, tg.exp, tg.sqrt, abs)
BINARY = (lambda u, v: u + v, lambda u, v: u - v, lambda u, v: u * v, tg.maximum,
          lambda u, v: u / (1.5 + v * v))


def random_dag(rng: random.Random, n_inputs: int, n_ops: int):
    def f(x):
        vals = list(x)
        for _ in range(n_ops):
            u = vals[rng.randrange(len(vals))]
            if rng.random() < 0.3:
                vals.append(rng.choice(UNARY)(u))
            else:
                v = vals[rng.randrange(len(vals))] if rng.random() < 0.8 else rng.choice(
                    [0.5, 2.0, 3.0])
                vals.append(rng.choice(BINARY)(u, v))
        return vals[n_inputs:]
    return tg.trace(f, np.linspace(0.1, 0.9, n_inputs))


@pytest.mark.parametrize("seed", range(50))
@pytest.mark.parametrize("min_count", [2, 3])
def test_random_dags_report_only_true_runs(seed, min_count):
    rng = random.Random(seed)
    found(random_dag(rng, rng.randrange(1, 8), rng.randrange(1, 400)), min_count)


def planted(rng: random.Random, mutate: bool):
    """A random block repeated K times (operands in the same iteration, carried, strided
    over x, invariant), with one operand or op of one iteration changed if `mutate`."""
    P, K = rng.randrange(1, 7), rng.randrange(2, 30)
    block = []
    for j in range(P):
        op = rng.randrange(len(UNARY) + len(BINARY))
        specs = []
        for _ in range(2):
            kind = rng.choice(["same", "carried", "strided", "invariant", "const"]
                              if j else ["carried", "strided", "invariant", "const"])
            if kind == "same":
                specs.append(("same", rng.randrange(j)))
            elif kind == "carried":
                specs.append(("carried", rng.randrange(P)))
            elif kind == "strided":
                specs.append(("strided", rng.randrange(3), rng.choice([1, 2, 3])))
            elif kind == "invariant":
                specs.append(("invariant", rng.randrange(3)))
            else:
                specs.append(("const", rng.choice([0.5, 2.0])))
        block.append((op, specs))
    where = (rng.randrange(K), rng.randrange(P)) if mutate else None
    n_x = 3 + 3 * K + 8

    def f(x):
        prev, out = [x[0]] * P, []
        for k in range(K):
            cur = []
            for j, (op, specs) in enumerate(block):
                args = []
                for spec in specs:
                    if spec[0] == "same":
                        args.append(cur[spec[1]])
                    elif spec[0] == "carried":
                        args.append(prev[spec[1]])
                    elif spec[0] == "strided":
                        args.append(x[spec[1] + 3 + k * spec[2]])
                    elif spec[0] == "invariant":
                        args.append(x[spec[1]])
                    else:
                        args.append(spec[1])
                o = op
                if (k, j) == where:
                    if rng.random() < 0.5:
                        o = (op + 1) % (len(UNARY) + len(BINARY))
                    else:
                        args[rng.randrange(2)] = rng.choice([x[n_x - 1], 1.25, cur[0] if cur
                                                             else x[n_x - 2]])
                if o < len(UNARY):
                    cur.append(UNARY[o](args[0]))
                else:
                    cur.append(BINARY[o - len(UNARY)](args[0], args[1]))
            out += cur
            prev = cur
        return out
    return tg.trace(f, np.linspace(0.1, 0.9, n_x))


@pytest.mark.parametrize("seed", range(150))
@pytest.mark.parametrize("mutate", [False, True], ids=["periodic", "mutated"])
def test_almost_periodic_programs_report_only_true_runs(seed, mutate):
    F = planted(random.Random(seed), mutate)
    found(F, 2)
    found(F, 3)


def test_two_iterations_are_reported_only_when_asked():
    F = tg.trace(lambda x: [tg.sin(x[0]), tg.sin(x[3])], np.zeros(4))
    assert len(found(F)) == 0 and layout(found(F, 2)) == [(0, 1, 2)]
    with pytest.raises(ValueError, match="min_count"):
        F.structure(1)


def test_the_checker_rejects_what_it_should():
    # the brute-force checker itself: a true run passes, a stretched or shifted one not
    F = tg.trace(rosenbrock_loop, np.zeros(20))
    S = F.structure()
    verify(F, S)
    run = S[0]
    for bad in (dataclasses.replace(run, start=run.start + 1, count=run.count - 1),
                dataclasses.replace(run, period=4, count=2 * run.count - 2)):
        with pytest.raises(AssertionError):
            verify(F, Structure((bad,), S.n_ops, S.first_op, 0.0))


# ---------------------------------------------------------------- forward by runs


def bits_equal(want, got):
    """Bit for bit, except that a NaN matches any NaN (which operand's payload x86 passes
    on depends on the order the compiler puts a commutative op's operands in)."""
    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    same = (want.view(np.uint64) == got.view(np.uint64)) | (np.isnan(want) & np.isnan(got))
    return same.all(), np.flatnonzero(~same)


def same_bits(F, x):
    """The interpreter's slot values, forward_by_runs' and those of the program's own
    forward with its elementwise loops at x agree bit for bit; so do the Jacobians of F
    (its loops found) and of a copy that has not looked for them (the interpreter's)."""
    import pickle

    from tapegrad import _core
    fresh = pickle.loads(pickle.dumps(F))
    program = F._programs[0]
    _core._point_loops(program)
    want, _ = _core._forward_slots(program, x, "interpreter")
    for how in ("by_runs", "program"):
        got, _ = _core._forward_slots(program, x, how)
        ok, where = bits_equal(want, got)
        assert ok, (how, where)
    assert _core._point_loops(fresh._programs[0], look=False) is None
    args, at = [], 0
    for shape in F._arg_shapes:
        n = int(np.prod(shape))
        args.append(x[at:at + n].reshape(shape) if shape else float(x[at]))
        at += n
    want, got = fresh.jacobian(*args), F.jacobian(*args)
    for w, g in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        ok, where = bits_equal(w, g)
        assert ok, ("jacobian", where)


def euler(x, k):
    for _ in range(100):
        x = x + 0.01 * (-k * x + tg.sin(x))
    return x


@pytest.mark.parametrize("name", ["numpy", "loop", "euler", "mlp"])
def test_forward_by_runs_is_the_interpreter_bit_for_bit(name):
    rng = np.random.default_rng(1)
    if name == "mlp":
        from tapegrad.nn.demo import make_model, moons_loss
        X, y = tg.nn.make_moons(100)
        F = tg.nn.compile_loss(make_model(), moons_loss, X, y).function
    elif name == "euler":
        F = tg.trace(euler, 1.0, 0.5)
    else:
        F = tg.trace(rosenbrock_numpy if name == "numpy" else rosenbrock_loop, np.zeros(300))
    assert F.structure().covered > 0.98
    for _ in range(3):
        same_bits(F, rng.normal(size=F._programs[0].n_inputs))


@pytest.mark.parametrize("seed", range(60))
def test_forward_by_runs_on_random_and_almost_periodic_programs(seed):
    rng = random.Random(seed)
    F = planted(rng, mutate=seed % 2 == 1) if seed < 40 else random_dag(rng, 4, 200)
    x = np.random.default_rng(seed).uniform(0.1, 0.9, F._programs[0].n_inputs)
    same_bits(F, x)


# ---------------------------------------------------------------- forward()'s loops
# A program's one-point forward loops over its elementwise runs (period 1, no carried
# value) once it has been called 32 times, if they cover a quarter of its ops.


def loops_of(F):
    from tapegrad import _core
    return [(s, c) for s, c, _ in _core._point_loops(F._programs[0])]


def test_elementwise_programs_loop_and_others_do_not():
    assert [c for _, c in loops_of(tg.trace(rosenbrock_numpy, np.zeros(300)))] == [299] * 7
    assert loops_of(tg.trace(rosenbrock_loop, np.zeros(300))) == []  # period 8
    assert loops_of(tg.trace(euler, 1.0, 0.5)) == []  # a recurrence
    # elementwise, but short runs: a quarter of the ops is not enough
    assert loops_of(tg.trace(lambda x: np.sum(x[:15] * x[1:16]) + sum(
        tg.sin(x[k]) * x[k + 1] for k in range(0, 600, 2)), np.ones(601))) == []


def test_every_op_of_the_table_elementwise():
    # x op y (or op x) over 40 iterations per op, at points of the op's domain and at
    # special values: the loops' values are the interpreter's bit for bit
    rng = random.Random(5)
    specials = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan, 1e300, -5e-324]
    ops, n = list(tg.ops()), 40
    cols = []
    for name, arity in ops:
        for j in range(arity):
            cols.append([spec_for(name).domain(rng)[j] if k % 3 else rng.choice(specials)
                         for k in range(n)])
    x0 = np.array(cols, dtype=np.float64).reshape(-1)

    def f(x):
        out, at = [], 0
        for name, arity in ops:
            args = [x[(at + j) * n:(at + j + 1) * n] for j in range(arity)]
            op = getattr(tg, name)
            out.extend(op(*(a[k] for a in args)) for k in range(n))
            at += arity
        return out
    F = tg.trace(f, x0, cse=False)
    assert len(loops_of(F)) >= len(ops) - 2  # where ops fold or take two slots
    with np.errstate(all="ignore"):
        same_bits(F, x0)
        same_bits(F, x0 * 0.75 + 0.125)
        same_bits(F, -x0)


def reverse_flags(F):
    from tapegrad import _core
    return [rev for _, _, rev in _core._point_loops(F._programs[0])]


# Each f below is one kind of elementwise run whose reverse loop must deliver every
# contribution as the sweep does: x spans 30 orders of magnitude, so a sum in another
# order differs in its last bits.
REVERSE_CASES = {
    # operand a the same slot in every iteration: x[0] gets 40 contributions, newest first
    "invariant": (lambda x: np.sum(x[0] * x[1:]), [True]),
    # the same stream twice (mul(a, a)), and pow's three forms
    "same": (lambda x: np.sum(x[1:] * x[1:]), [True]),
    "pow": (lambda x: np.sum(x[1:] ** 3) + np.sum(2.0 ** x[1:]) + np.sum(x[1:] ** x[:-1]),
            None),
    # the two streams meet (x[k] is a of one iteration and b of the next): interpreted
    "meeting": (lambda x: np.sum(x[1:] * x[:-1]), [False]),
    # a stride of -1 whose first operand is the slot just below the run (handed over in
    # a register by the sweep), and a run whose last slot's only user follows it
    "reversed": (lambda x: np.sum((x * 2.0)[::-1] + 1.0) * ((x * 3.0)[-1] * 5.0), None),
    # the slot below the run is the last of a running sum (interpreted) and hands its
    # only user's contribution over in a register; and an interpreted slot right after
    # the run is the only user of its last slot
    "below": (lambda x: np.sum(np.cumsum(x)[::-1] * 2.0), [True]),
    # (as operand b of a mul, whose constant comes first, and as operand a of a sub)
    "above_b": (lambda x: (lambda y: (y[-1] * 5.0) * np.sum(y[:-1]))(x * 2.0), None),
    "above_a": (lambda x: (lambda y: (y[-1] - 5.0) * np.sum(y[:-1]))(x * 2.0), None),
    # zero adjoints: a nonlinear rule skipped (log at 0 and below), a -0.0 seed
    "zeros": (lambda x: np.sum(x[:20] * np.array([tg.log(v) for v in x[20:40]])) +
              np.sum(-0.0 * np.array([tg.sqrt(v) for v in x[20:40]])), None),
}


@pytest.mark.parametrize("name", sorted(REVERSE_CASES))
def test_reverse_loops_deliver_as_the_sweep_does(name):
    import pickle
    f, flags = REVERSE_CASES[name]
    rng = np.random.default_rng(2)
    x = rng.choice([-1.0, 1.0], 41) * 10.0 ** rng.uniform(-15, 15, 41)
    if name == "zeros":
        x[:20] = 0.0
        x[20:30] = -x[20:30]
        x[30] = 0.0
    F = tg.trace(f, np.ones(41))
    G = pickle.loads(pickle.dumps(F))
    if flags is not None:
        assert reverse_flags(F) == flags
    else:
        assert any(reverse_flags(F))
    with np.errstate(all="ignore"):
        for point in (x, -x, np.abs(x)):
            ok, where = bits_equal(G.grad(point), F.grad(point))
            assert ok, where


def test_calls_turn_to_the_loops_at_the_32nd_and_results_do_not_change():
    from tapegrad import _core
    F = tg.trace(rosenbrock_numpy, np.zeros(200))
    x = np.random.default_rng(3).normal(size=200)
    program = F._programs[0]
    first = [F.value_and_grad(x) for _ in range(40)]
    assert _core._point_loops(program, look=False) != []  # the calls looked
    G = tg.trace(rosenbrock_numpy, np.zeros(200))
    for _ in range(31):
        G(x)
    assert _core._point_loops(G._programs[0], look=False) is None  # not yet
    G(x)
    assert [(c, r) for _, c, r in _core._point_loops(G._programs[0], look=False)] == [
        (199, True)] * 7
    for v, g in first[1:]:
        assert v == first[0][0] and np.array_equal(g, first[0][1])


def test_threads_calling_while_the_loops_are_found():
    F = tg.trace(rosenbrock_numpy, np.zeros(500))
    xs = np.random.default_rng(4).normal(size=(8, 500))
    want = [tg.trace(rosenbrock_numpy, np.zeros(500)).grad(x) for x in xs]  # before 32 calls
    errors = []

    def work(k):
        try:
            for r in range(20):
                i = (k + r) % len(xs)
                assert np.array_equal(F.grad(xs[i]), want[i])
        except AssertionError as err:  # pragma: no cover - reported below
            errors.append(err)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert loops_of(F) != []


def test_an_unpickled_function_has_the_same_runs():
    import pickle
    F = tg.trace(rosenbrock_loop, np.zeros(30))
    G = pickle.loads(pickle.dumps(F))
    assert layout(found(G)) == layout(F.structure()) == [(0, 8, 29)]


def test_the_module_examples_run():
    import doctest

    import tapegrad.structure
    failed, tried = doctest.testmod(tapegrad.structure, optionflags=doctest.ELLIPSIS)
    assert tried >= 4 and failed == 0
