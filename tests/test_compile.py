"""F.compile(): native code for a traced program, checked bit for bit against the
interpreter (values, gradients and Jacobians; a NaN matches any NaN), on the worked
examples, Rosenbrock, the micrograd-style loss, every op of the table, random programs and
almost periodic ones (so a loop that over-matched would compute something else and fail
here). Also: guards, the cache, pickling, the fallback without a compiler, bad input.

Every test needs a C++ compiler and skips, saying so, only where none is found."""
from __future__ import annotations

import gc
import glob
import math
import os
import pickle
import random
import shlex
import shutil
import subprocess
import tempfile
import threading

import numpy as np
import pytest
from helpers import spec_for
from test_structure import euler, loop, planted, random_dag, rosenbrock_numpy, skipping_recurrence
from trace_helpers import f3, rosenbrock, same_bits, vec_fn

import tapegrad as tg
from tapegrad import _core, native


def _compiler_problem() -> str | None:
    """Why no C++ compiler can build a shared library here (None: one can). Tried on a
    source that includes nothing of tapegrad's, so a failure is the machine's (no
    compiler, or a stub, as in the wheel check), never the generated code's."""
    cmd = native.compiler()
    if cmd is None or shutil.which(cmd[0]) is None:
        return "no C++ compiler ($TAPEGRAD_CXX, $CXX, c++, g++, clang++)"
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "probe.cpp")
        with open(src, "w") as f:
            f.write('extern "C" int tg_probe() { return 1; }\n')
        try:
            done = subprocess.run([*cmd, *native.FLAGS, src, "-o", os.path.join(d, "probe.so")],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as err:
            return f"the C++ compiler {cmd[0]} does not run: {err}"
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return f"the C++ compiler {cmd[0]} builds no shared library here: {why[0]}"
    return None


_PROBLEM = _compiler_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))


@pytest.fixture(autouse=True, scope="module")
def cache(tmp_path_factory):
    """A cache of this module's own, so the tests neither read nor fill the user's."""
    d = str(tmp_path_factory.mktemp("tapegrad-cache"))
    old = os.environ.get("TAPEGRAD_CACHE_DIR")
    os.environ["TAPEGRAD_CACHE_DIR"] = d
    yield d
    if old is None:
        del os.environ["TAPEGRAD_CACHE_DIR"]
    else:
        os.environ["TAPEGRAD_CACHE_DIR"] = old


def assert_bits(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    ok = same_bits(got, want)
    bad = ~ok.ravel()
    assert ok.all(), (f"{what}: differs at {np.flatnonzero(bad)[:10]}: {got.ravel()[bad][:5]}"
                      f" vs {want.ravel()[bad][:5]}")


def flat(r):
    if isinstance(r, tuple):
        return np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in r])
    return np.ravel(np.asarray(r, dtype=np.float64))


def compiled(F):
    # one-point code only: batch code (tests/test_compile_batch.py) would add a compile at
    # -O3 to every test here
    G = F.compile(batch=False)
    assert G is not F and G.native is not None and F.native is None
    assert G.native.batch_library is None and "batch=False" in G.native.batch_note
    return G


def agree(F, G, *args):
    """G (compiled) gives F's (interpreted) value, gradient and Jacobian at args, bit for
    bit."""
    assert_bits(flat(G(*args)), flat(F(*args)), "value")
    if F.out_shape == ():
        v, g = G.value_and_grad(*args)
        w, h = F.value_and_grad(*args)
        assert_bits(flat(v), flat(w), "value_and_grad value")
        assert_bits(flat(g), flat(h), "value_and_grad gradient")
        assert_bits(flat(G.grad(*args)), flat(F.grad(*args)), "grad")
        outs = tuple(np.full(np.shape(a), np.nan) for a in args)
        got = G.grad(*args, out=outs[0] if len(outs) == 1 else outs)
        assert all(a is b for a, b in zip(got if len(outs) > 1 else (got,), outs))
        assert_bits(flat(outs), flat(F.grad(*args)), "grad(out=)")
    assert_bits(flat(G.jacobian(*args)), flat(F.jacobian(*args)), "jacobian")


# ---------------------------------------------------------------- worked examples


def test_the_seed_example():
    F = tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0)
    G = compiled(F)
    v, (dx, dy) = G.value_and_grad(3.0, 4.0)
    assert (float(v), float(dx), float(dy)) == (21.0, 10.0, 3.0)
    agree(F, G, 3.0, 4.0)
    agree(F, G, -0.5, 1e300)


def test_f3_and_a_vector_function():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = compiled(F)
    for x in [(0.3, -1.2, 2.0), (0.0, -0.0, 0.0), (1e-300, 7.0, -3.0)]:
        agree(F, G, *x)
    V = tg.trace(vec_fn, np.zeros(3))
    W = compiled(V)
    agree(V, W, np.array([0.5, -2.0, 3.0]))


@pytest.mark.parametrize("d", [2, 10, 1000])
@pytest.mark.parametrize("form", ["loop", "numpy"])
def test_rosenbrock(d, form):
    F = tg.trace(rosenbrock if form == "loop" else rosenbrock_numpy, np.zeros(d))
    G = compiled(F)
    rng = np.random.default_rng(d)
    for _ in range(3):
        agree(F, G, rng.uniform(-1.5, 1.5, d))
    x = np.ones(d)
    assert float(G(x)) == 0.0 and not G.grad(x).any()
    if d >= 10:  # the runs became loops: almost no op is written out one by one
        assert G.native.loops >= 1
        assert G.native.straight_ops < 0.05 * F.n_ops + 40


def test_the_loops_are_in_the_source():
    F = tg.trace(rosenbrock, np.zeros(500))
    source, stats = _core.native_source(F._programs[0])
    assert stats["loops"] == 1 and stats["looped_ops"] == F.n_ops - 16
    # forward, reverse, and the gradient's reverse (rg_), which computes the values its
    # rules read again, so that the gradient's forward runs no loop at all
    assert source.count("for (std::int64_t k") == 3
    assert "TG_NATIVE_LOOP rg_" in source and "TG_NATIVE_LOOP fg_" not in source
    assert source.count("fw<") < 40 and source.count("rv<") < 40
    # the sum's adjoint is the same in every iteration, so the reverse loop's iterations
    # do not wait for each other: they store their contributions in columns, summed after
    assert "const double G = AR[" in source and "k-- > 1" not in source


def test_the_micrograd_style_loss():
    from tapegrad.nn.demo import make_model, moons_loss
    X, y = tg.nn.make_moons(100)
    F = tg.nn.compile_loss(make_model(), moons_loss, X, y).function
    G = compiled(F)
    rng = np.random.default_rng(0)
    for _ in range(2):
        agree(F, G, rng.normal(size=F.arg_shapes[0]), X, y)
    assert G.native.looped_ops > 0.9 * F.n_ops


def test_a_recurrence_whose_operands_swap():
    F = tg.trace(euler, 1.0, 0.5)
    assert F.structure()[0].swapped
    G = compiled(F)
    for x in [(1.0, 0.5), (-3.0, 2.0), (0.0, 0.0)]:
        agree(F, G, *x)


def test_every_op_of_the_table():
    # one program holding every op at points from its own test domain and at special
    # values; the Jacobian checks each op's rules one output at a time
    rng = random.Random(7)
    specials = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan]
    calls = []
    for name, arity in tg.ops():
        for _ in range(3):
            calls.append((name, spec_for(name).domain(rng)))
        for _ in range(4):
            calls.append((name, tuple(rng.choice(specials) for _ in range(arity))))
    x0 = np.array([v for _, args in calls for v in args], dtype=np.float64)

    def f(x):
        out, at = [], 0
        for name, args in calls:
            out.append(getattr(tg, name)(*x[at:at + len(args)]))
            at += len(args)
        return out
    F = tg.trace(f, x0, cse=False)
    G = compiled(F)
    with np.errstate(all="ignore"):
        agree(F, G, x0)
        agree(F, G, x0 * 0.75 + 0.125)


# ---------------------------------------------------------------- what a loop stores
# A loop's forward stores only the values read later from memory (by a reverse rule, a
# guard, an output, or an op outside the iteration); its reverse hands a rule NaN for a
# value the rule does not read. A wrong guess of what a rule reads shows as a NaN here.


def test_every_op_of_the_table_in_a_loop():
    # one loop per op, s = s + op(x[..]) over 12 iterations, each sum an output: the
    # Jacobian runs every op's rules on values from the loops' stores
    rng = random.Random(11)
    n, ops = 12, list(tg.ops())
    x0 = np.array([v for name, _ in ops for _ in range(n) for v in spec_for(name).domain(rng)],
                  dtype=np.float64)

    def f(x):
        out, at = [], 0
        for name, arity in ops:
            op = getattr(tg, name)
            s = op(*x[at:at + arity])
            for i in range(1, n):
                s = s + op(*x[at + arity * i:at + arity * (i + 1)])
            out.append(s)
            at += arity * n
        return out
    F = tg.trace(f, x0, cse=False)
    G = compiled(F)
    assert G.native.loops >= len(ops)
    with np.errstate(all="ignore"):
        agree(F, G, x0)
        agree(F, G, x0 * 0.75 + 0.125)


def mul_and_sin_recurrences(x):
    # p's mul and s's sin read carried values; every p is an output
    p, s, ps = x[0], x[1], []
    for i in range(2, len(x)):
        p = p * x[i]
        s = tg.sin(s) * 1.5 + p
        ps.append(p)
    return [s, *ps]


def test_recurrences_of_mul_and_sin_with_outputs_inside():
    F = tg.trace(mul_and_sin_recurrences, np.linspace(0.5, 1.5, 40))
    G = compiled(F)
    assert G.native.loops >= 1
    rng = np.random.default_rng(5)
    for _ in range(3):
        agree(F, G, rng.uniform(-1.5, 1.5, 40))


def guarded_sum(x):
    s = x[0]
    for i in range(1, len(x)):
        t = tg.exp(x[i]) + 1.0  # no rule reads t, the guard does
        s = s + (t if t > 1.5 else -t)
    return s


def test_a_guard_reads_a_value_no_rule_reads():
    F = tg.trace(guarded_sum, np.full(30, 0.5))
    G = compiled(F)
    assert G.native.loops >= 1
    good = np.random.default_rng(6).uniform(-0.5, 1.0, 30)
    agree(F, G, good)
    bad = good.copy()
    bad[17] = -2.0  # t < 1.5 there: after the good call, a stale t would pass the guard
    for H in (F, G):
        H.grad(good)  # (the one-point calls share their scratch: it now holds good's t)
        with pytest.raises(tg.TraceError, match="another branch"):
            H.grad(bad)
        H(good)
        with pytest.raises(tg.TraceError, match="another branch"):
            H(bad)


def columns_and_slots(x):
    # t, u and q are read by rules alone (columns); w, an output, stays at its slots, one
    # block apart: six iterations of columns fit between two of them
    s, ws = x[0], []
    for i in range(1, len(x)):
        t = tg.sin(x[i])
        u = tg.exp(t)
        w = t * u
        ws.append(w)
        q = tg.tanh(u)
        s = s + w
        s = s + q * 2.0
    return [s, *ws]


def test_a_loop_with_columns_and_values_at_their_slots():
    for n in (8, 40):  # 6 iterations in the loop: columns; 38: no room, all at slots
        F = tg.trace(columns_and_slots, np.linspace(-1.0, 1.0, n))
        G = compiled(F)
        with open(G.native.source) as f:
            src = f.read()
        start = src.index("TG_NATIVE_LOOP fw_")
        fw = src[start:src.index("TG_NATIVE_LOOP", start + 1)]  # the forward loop
        assert fw.count(" + k] = t") == (3 if n == 8 else 0) and "r[2] = t2" in fw, src
        rng = np.random.default_rng(8)
        for _ in range(3):
            agree(F, G, rng.uniform(-2.0, 2.0, n))


def test_a_loop_stores_only_the_values_read_later():
    # Rosenbrock's block: x[i]**2, x[i+1] - that, its square, 100 * that, 1 - x[i], its
    # square, their sum, the running sum. Read later: the two squares' operands, by their
    # rules alone (so in columns, k + 1 after k), and the running sum's last value (at its
    # slot, after the loop)
    G = compiled(tg.trace(rosenbrock, np.zeros(50)))
    with open(G.native.source) as f:
        src = f.read()
    loop = src[src.index("TG_NATIVE_LOOP fw_"):src.index("TG_NATIVE_LOOP rv_")]
    assert loop.count("] = t") == 2 and loop.count(" + k] = t") == 2, loop
    assert loop.count("] = c") == 1, loop


# ---------------------------------------------------------------- a gradient alone


def section(src, name):
    """The generated function `name` (up to the next top-level definition)."""
    start = src.index(name)
    ends = [i for i in (src.find("\nTG_NATIVE", start), src.find("\nstatic const", start))
            if i >= 0]
    return src[start:min(ends) if ends else len(src)]


def test_the_gradients_forward_leaves_out_what_no_rule_reads():
    # Rosenbrock: the running sum and the terms feed the output alone, and the two values
    # the rules read are computed again by the reverse loop (rg_), so the gradient's
    # forward runs no loop: it writes the inputs, the constants and the straight ops
    F = tg.trace(rosenbrock, np.zeros(50))
    G = compiled(F)
    with open(G.native.source) as f:
        src = f.read()
    forward = section(src, "void tg_forward(")
    gradient = section(src, "void tg_forward_gradient(")
    assert "fw_" in forward and "fw_" not in gradient and "fg_" not in gradient, gradient
    assert "rg_" in section(src, "void tg_reverse_gradient(")
    assert "rg_" not in section(src, "void tg_reverse(")
    rng = np.random.default_rng(50)
    for x in (rng.uniform(-2.0, 2.0, 50), np.ones(50)):
        agree(F, G, x)


def product_chain(x):
    # the gradient needs every running product (mul's rules read them): nothing to leave
    # out, and the loop's values are carried, so its reverse cannot compute them again
    p = x[0]
    for i in range(1, len(x)):
        p = p * tg.sin(x[i])
    return p


def test_a_gradient_whose_values_are_carried_keeps_its_forward_loop():
    F = tg.trace(product_chain, np.full(40, 0.5))
    G = compiled(F)
    with open(G.native.source) as f:
        src = f.read()
    assert "fg_" in section(src, "void tg_forward_gradient(") and "rg_" not in src
    agree(F, G, np.random.default_rng(40).uniform(-2.0, 2.0, 40))


@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan, -0.0, 0.0])
def test_a_gradient_alone_at_special_points(special):
    # zero and non-finite adjoints and values through the recomputed loop, and gradients
    # of -0.0 (the interpreter's 0.0 + adjoint makes them +0.0)
    F = tg.trace(rosenbrock, np.zeros(30))
    G = compiled(F)
    x = np.random.default_rng(30).uniform(-1.0, 1.0, 30)
    for at in (0, 1, 14, 28, 29):
        y = x.copy()
        y[at] = special
        agree(F, G, y)
    H = tg.trace(lambda a, b: a * b + b * 0.0, 1.0, 1.0)
    K = compiled(H)
    for a, b in ((1.0, -0.0), (-0.0, -0.0), (np.inf, 0.0), (-0.0, np.nan)):
        agree(H, K, a, b)


def test_the_point_is_read_where_it_is_and_never_kept():
    # one float64 C-order argument is read in place: a write to it between calls shows,
    # and other layouts and dtypes are converted first, as before
    F = tg.trace(rosenbrock, np.zeros(20))
    G = compiled(F)
    x = np.random.default_rng(20).uniform(-1.0, 1.0, 20)
    g = np.empty(20)
    for _ in range(2):
        assert_bits(G.grad(x, out=g), F.grad(x), "in place")
        assert_bits(G(x), F(x), "value in place")
        x[7] += 0.25
    wide = np.zeros(40)
    wide[::2] = x
    for y in (wide[::2], x.astype(np.float32), np.arange(20), x[::-1].copy()[::-1]):
        assert_bits(G.grad(y), F.grad(np.asarray(y, dtype=float)), f"{y.dtype} {y.strides}")
    with pytest.raises(ValueError, match="overlap"):
        G.grad(x, out=x)
    # each call's gradient is an array of its own, which the next call leaves alone
    for H in (F, G):
        first, (_, second) = H.grad(x), H.value_and_grad(-x)
        keep = first.copy()
        third = H.grad(x + 1.0)
        assert first is not second and first is not third and second is not third
        assert_bits(first, keep, "an earlier result")
        assert_bits(second, F.grad(-x), "value_and_grad's")


# ---------------------------------------------------------------- contribution columns


def three_contributions(x):
    """Every x[j] gets contributions from iterations j, j - 1 and j - 2 (in that order in
    the interpreter), of different magnitudes, so their order shows in the last bits."""
    return sum(tg.sin(x[i]) * 0.3 + x[i + 1] * x[i + 1] * 1.7 + tg.exp(x[i + 2]) * 1e-3
               for i in range(len(x) - 2))


def source_of(G):
    with open(G.native.source) as f:
        return f.read()


def test_contribution_columns_sum_in_the_interpreters_order():
    F = tg.trace(three_contributions, np.zeros(60))
    G = compiled(F)
    assert "const double G = AR[" in source_of(G)  # the columns ran
    rng = np.random.default_rng(5)
    for _ in range(20):
        agree(F, G, rng.uniform(-3.0, 3.0, 60))


@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_zero_adjoint_skips_its_rules_in_columns(zero):
    """A loop's sum whose adjoint is 0.0 or -0.0 (times a signed zero, and in the
    Jacobian's rows of another output): rules are skipped, as in the interpreter, so
    sqrt's d/dx at 0 (g / 0) leaks no NaN."""
    def f(x):
        s = sum(tg.sqrt(x[i]) + x[i + 1] * 2.0 for i in range(len(x) - 1))
        return s * zero
    F = tg.trace(f, np.ones(40))
    G = compiled(F)
    assert "const double G = AR[" in source_of(G)
    x = np.linspace(0.0, 2.0, 40)
    x[::3] = 0.0
    agree(F, G, x)
    assert not np.isnan(G.grad(x)).any()
    V = tg.trace(lambda x: np.array([f(x) / zero if zero else f(x), x[0] * x[1]]), np.ones(40))
    W = compiled(V)
    agree(V, W, x)  # the Jacobian's second row seeds the sum with 0.0


# ---------------------------------------------------------------- reassociate=True


def gamma(m):
    u = 2.0 ** -53
    return m * u / (1 - m * u)


def dot(x, y):
    return sum(x[i] * y[i] for i in range(len(x)))


@pytest.mark.parametrize("n", [40, 1000])
def test_reassociated_sums_keep_the_documented_error_bound(n):
    F = tg.trace(dot, np.zeros(n), np.zeros(n))
    G = F.compile(reassociate=True, batch=False)
    assert G.native.reassociate and G.native.sums_reassociated == 1
    assert "sums reassociated" in repr(G)
    rng = np.random.default_rng(n)
    differs = False
    for case in range(30):
        # large cancellation: big terms that cancel, and small ones that survive
        big = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.integers(8, 17, n)
        x = np.where(rng.random(n) < 0.5, big, rng.normal(size=n))
        if case % 2:
            x[1::2] = -x[::2][: len(x[1::2])]
        y = np.ones(n)
        exact = math.fsum(x * y)
        total = float(np.sum(np.abs(x * y)))
        m = -(-n // 8) + 3 + 2  # in the loop, and its first and last iterations outside
        got = float(G(x, y))
        assert abs(got - exact) <= gamma(m) * total, (case, got, exact)
        assert abs(float(F(x, y)) - exact) <= gamma(n) * total
        differs = differs or float(F(x, y)) != got
        # a sum's adjoint is the same in every iteration: the gradient is the interpreter's
        assert_bits(flat(G.grad(x, y)), flat(F.grad(x, y)), "gradient")
        assert_bits(flat(G(x, y)), flat(G(x, y)), "a second call")
    assert differs  # the order really changed


def test_reassociation_is_deterministic_and_survives_pickling():
    F = tg.trace(dot, np.zeros(300), np.zeros(300))
    G = F.compile(reassociate=True, batch=False)
    H = pickle.loads(pickle.dumps(G))
    assert H.native.reassociate and "sums reassociated" in repr(H)
    assert H.native.library == G.native.library  # the same library, from the cache
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=300) * 1e10, rng.normal(size=300)
    assert_bits(flat(H(x, y)), flat(G(x, y)), "value after pickling")
    D = F.compile(batch=False)
    assert not D.native.reassociate and D.native.library != G.native.library
    assert "acc[" not in source_of(D) and "acc[" in source_of(G)
    assert "sums reassociated" not in repr(D) and "sums reassociated" not in repr(pickle.loads(
        pickle.dumps(D)))
    assert_bits(flat(D(x, y)), flat(F(x, y)), "the default stays the interpreter's")
    assert G.compile(reassociate=True, batch=False) is G
    with pytest.raises(ValueError, match="reassociate"):
        G.compile(batch=False)


def test_reassociate_leaves_sums_whose_running_values_are_read():
    def f(x):
        s, outs = 0.0, []
        for i in range(len(x)):
            s = s + x[i] * x[i]
            outs.append(s)
        return np.array(outs)
    F = tg.trace(f, np.zeros(50))
    G = F.compile(reassociate=True, batch=False)
    assert G.native.sums_reassociated == 0
    agree(F, G, np.random.default_rng(2).normal(size=50) * 1e8)
    R = tg.trace(rosenbrock, np.zeros(200))
    S = R.compile(reassociate=True, batch=False)
    assert S.native.sums_reassociated == 1
    x = np.random.default_rng(3).uniform(-2, 2, 200)
    assert_bits(flat(S.grad(x)), flat(R.grad(x)), "Rosenbrock's gradient")
    assert abs(float(S(x)) - float(R(x))) <= gamma(200) * float(R(x))


# ---------------------------------------------------------------- random programs


@pytest.mark.parametrize("seed", range(12))
def test_random_dags(seed):
    rng = random.Random(seed)
    F = random_dag(rng, rng.randrange(1, 8), rng.randrange(1, 300))
    G = compiled(F)
    n = F.arg_shapes[0]
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    with np.errstate(all="ignore"):
        agree(F, G, x)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("mutate", [False, True], ids=["periodic", "mutated"])
def test_almost_periodic_programs(seed, mutate):
    F = planted(random.Random(seed), mutate)
    G = compiled(F)
    x = np.random.default_rng(seed).uniform(0.1, 0.9, F.arg_shapes[0])
    with np.errstate(all="ignore"):
        agree(F, G, x)
        agree(F, G, -x)


ALMOST = {
    "a stride that breaks": lambda x, i: tg.sin(x[i] * x[i + 2 if i == 20 else i + 1]),
    "an op that differs": lambda x, i: tg.cos(x[i]) if i == 13 else tg.sin(x[i]),
    "a constant that differs": lambda x, i: (2.5 if i == 7 else 1.5) * x[i],
    "an invariant that differs": lambda x, i: x[1 if i == 25 else 0] * x[i + 2],
    "a repeated operand": lambda x, i: x[i] * x[i if i == 30 else i + 1],
}


@pytest.mark.parametrize("name", list(ALMOST))
def test_almost_periodic_loops(name):
    F = loop(40, ALMOST[name])
    G = compiled(F)
    assert G.native.loops >= 1
    rng = np.random.default_rng(3)
    for _ in range(3):
        agree(F, G, rng.uniform(-2.0, 2.0, 42))


def test_a_recurrence_that_skips_an_iteration():
    F = tg.trace(skipping_recurrence, np.zeros(32))
    G = compiled(F)
    agree(F, G, np.random.default_rng(4).normal(size=32))


def test_hypothesis_random_programs():
    from helpers import programs
    from hypothesis import HealthCheck, given, settings
    from trace_helpers import OPS, trace_program

    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(programs(OPS, max_steps=10))
    def check(program):
        F = trace_program(program)
        G = compiled(F)
        x = np.array(program[0], dtype=np.float64)
        with np.errstate(all="ignore"):
            agree(F, G, *x)
            agree(F, G, *(x * 0.5 - 0.25))
    check()


# ---------------------------------------------------------------- what stays as it was


def test_guards_are_checked_on_native_values():
    F = tg.trace(lambda x: x * 2.0 if x > 0 else -x, 1.0)
    G = compiled(F)
    assert float(G(3.0)) == 6.0 and float(G.grad(3.0)) == 2.0
    with pytest.raises(tg.TraceError, match="another branch"):
        G(-1.0)
    with pytest.raises(tg.TraceError, match="another branch"):
        G.grad(-1.0)
    R = tg.trace(lambda x: x * 2.0 if x > 0 else -x, 1.0, retrace=True).compile()
    assert float(R(-4.0)) == 4.0 and float(R.grad(-4.0)) == -1.0  # retraced: interpreted
    assert float(R(5.0)) == 10.0


def test_batches_and_forward_mode_run_the_interpreter_unchanged():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = compiled(F)
    X = np.linspace(-1.0, 1.0, 7)
    assert_bits(flat(G.grad(X, 0.3, X)), flat(F.grad(X, 0.3, X)), "batched grad")
    assert_bits(flat(G.jvp(0.1, 0.2, 0.3, (1.0, 0.0, 0.0))),
                flat(F.jvp(0.1, 0.2, 0.3, (1.0, 0.0, 0.0))), "jvp")
    assert_bits(flat(G.hessian(0.1, 0.2, 0.3)), flat(F.hessian(0.1, 0.2, 0.3)), "hessian")
    out = np.empty(())
    G(0.1, 0.2, 0.3, out=out)
    assert float(out) == float(F(0.1, 0.2, 0.3))


def test_repr_says_what_is_native():
    F = tg.trace(rosenbrock, np.zeros(20))
    G = compiled(F)
    assert "native" not in repr(F)
    assert "native: one point's value, grad" in repr(G) and "interpreted: jvp" in repr(G)
    assert "batches interpreted (not asked for: compile(batch=False))" in repr(G)
    assert G.compile(batch=False) is G
    with pytest.raises(ValueError, match="batch=False"):
        G.compile()


def test_threads_share_a_compiled_function():
    F = tg.trace(rosenbrock, np.zeros(200))
    G = compiled(F)
    xs = [np.random.default_rng(k).uniform(-1, 1, 200) for k in range(8)]
    want = [F.grad(x) for x in xs]
    bad = []

    def work():
        for _ in range(50):
            for x, w in zip(xs, want):
                if not np.array_equal(G.grad(x), w):
                    bad.append(1)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


# ---------------------------------------------------------------- cache, pickle, fallback


def test_the_cache_is_used_the_second_time(cache):
    F = tg.trace(lambda x: tg.sin(x) * 3.25 + 1.0, 0.5)
    G, H = F.compile(), F.compile()
    assert not G.native.cached and H.native.cached
    lib = G.native.library
    assert H.native.library == lib and os.path.dirname(lib) == cache
    with open(G.native.source) as f:
        assert "tg_forward" in f.read()
    # a damaged library in the cache is built again. (Replaced, not written over: writing
    # into a library while it is loaded takes its pages away from the process.)
    del G, H
    gc.collect()  # the last reference to the library goes: it is unloaded
    with open(lib + ".tmp", "wb") as f:
        f.write(b"not a library")
    os.replace(lib + ".tmp", lib)
    again = F.compile()
    assert not again.native.cached and float(again(0.5)) == float(F(0.5))


def test_gcc_builds_precompiled_headers_once_and_a_damaged_one_is_only_slower(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("TAPEGRAD_CACHE_DIR", str(tmp_path))
    cmd = native.compiler()
    if not native._is_gcc(cmd, native._executable(cmd)):
        pytest.skip(f"{cmd[0]} is not GCC: no precompiled headers")
    F = tg.trace(lambda x: tg.sin(x) * 3.25 + 1.0, 0.5)
    F.compile()
    gch = glob.glob(os.path.join(str(tmp_path), "pch_*", "tapegrad", "native_rules.hpp.gch"))
    assert len(gch) == 1 and os.path.getsize(gch[0]) > 0
    made = os.stat(gch[0]).st_mtime_ns
    G = tg.trace(lambda x: tg.exp(x) - x, 0.5)
    G.compile()
    assert os.stat(gch[0]).st_mtime_ns == made  # reused, not built again
    with open(gch[0], "wb") as f:  # GCC ignores a PCH it cannot use and reads the headers
        f.write(b"not a precompiled header")
    H = tg.trace(lambda x: tg.cos(x) * x, 0.5)
    assert_bits(H.compile().grad(0.75), H.grad(0.75), "compiled past a damaged PCH")


def test_pickling_compiles_again():
    F = tg.trace(rosenbrock, np.zeros(30))
    G = compiled(F)
    H = pickle.loads(pickle.dumps(G))
    assert H.native is not None and H.native.cached
    assert not H.native.batch_asked and H.native.batch_library is None  # as G was compiled
    x = np.random.default_rng(1).normal(size=30)
    assert_bits(H.grad(x), F.grad(x), "unpickled")
    assert pickle.loads(pickle.dumps(F)).native is None


def test_no_compiler_raises_or_falls_back(monkeypatch):
    F = tg.trace(lambda x, y: x * y + tg.exp(x), 0.5, 2.0)
    G = F.compile()
    blob = pickle.dumps(G)
    monkeypatch.setenv("TAPEGRAD_CXX", "/nonexistent/bin/c++")
    with pytest.raises(tg.CompileError, match=r"/nonexistent/bin/c\+\+.*TAPEGRAD_CXX"):
        F.compile()
    with pytest.warns(tg.CompileWarning, match="not found"):
        H = F.compile(fallback=True)
    assert H is F and H.native is None
    with pytest.warns(tg.CompileWarning):  # unpickled where no compiler works: interpreted
        U = pickle.loads(blob)
    assert U.native is None and float(U(0.5, 2.0)) == float(F(0.5, 2.0))


def test_a_failing_compiler_is_reported(monkeypatch):
    cmd = native.compiler()
    monkeypatch.setenv("TAPEGRAD_CXX", shlex.join([*cmd, "-include", "nonexistent.h"]))
    F = tg.trace(lambda x: tg.cos(x) * 1.125, 0.5)
    with pytest.raises(tg.CompileError, match="compiler failed"):
        F.compile()


def test_a_library_for_another_program_is_refused():
    F = tg.trace(lambda x: x * 2.0, 1.0)
    G = compiled(F)
    other = tg.trace(lambda x: x * 3.0, 1.0)
    with pytest.raises(ValueError, match="another program"):
        _core.with_native(other._programs[0], G.native.library)
    with pytest.raises(RuntimeError, match="cannot load"):
        _core.with_native(F._programs[0], "/nonexistent/tg.so")
    assert _core.native_path(F._programs[0]) is None
    assert _core.native_path(G._programs[0]) == G.native.library


def test_bad_calls_raise_as_before():
    F = tg.trace(lambda v: (v * v).sum(), np.zeros(3))
    G = compiled(F)
    for args in [(np.zeros(4),), (np.zeros(3), 1.0), ("abc",)]:
        with pytest.raises((TypeError, ValueError)) as want:
            F.grad(*args)
        with pytest.raises(type(want.value)):
            G.grad(*args)


def test_programs_without_ops_or_outputs():
    for fn, ex in [(lambda x: x, (1.0,)), (lambda x: 2.0, (1.0,)),
                   (lambda x, y: [x, y, x], (1.0, 2.0))]:
        F = tg.trace(fn, *ex)
        G = compiled(F)
        assert_bits(flat(G(*ex)), flat(F(*ex)), "value")
        assert_bits(flat(G.jacobian(*ex)), flat(F.jacobian(*ex)), "jacobian")
