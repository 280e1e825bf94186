"""Batched replay of a tg.Function: against one-point replay for every op and for random
graphs (NaN/Inf included), broadcasting and input conversion rules, both lane kernel sets,
threads, and KeyboardInterrupt.

How close is "batched equals one point"? Batched replay runs the same op table, lane by
lane; the only difference is that the libm functions of csrc/tapegrad/vector_math.def
(exp, log, sin, ...) may come from glibc's libmvec, documented within 4 ulp of scalar
libm, with IEEE special values kept: trace_helpers.LIBMVEC, those this process found at
import. So:
  - graphs without those ops must agree bit for bit (add, mul, div, sqrt, ... round the
    same in SIMD registers, and nothing is contracted into FMAs); with TAPEGRAD_LIBMVEC=0,
    or no libmvec, that is every graph;
  - one op alone: its value holds <= 1 libm result (4 ulp = 4 * 2**-52 relative, ~9e-16),
    its local derivative <= 2 (e.g. pow's out * log(x)), plus a few exact roundings:
    within ~12 ulp, relative. We allow rel 1e-13 (~450 ulp: "a few ulp" with room, still
    ~1e3 times smaller than any wrong formula would give), with an absolute floor of 4e-15
    for rules computed as 1 - out**2 (tanh) or out * (1 - out) (sigmoid): |out| <= 1 carries
    4 ulp of 1.0 (~9e-16) into a difference that can be much smaller than 1;
  - random graphs compose many ops, and a 4-ulp difference can be amplified without bound
    (tan near a pole, cancellation). There the allowed difference is computed per point:
    a first-order error bound, sum over every libm call of |change of the result when
    that call alone is off by 4 ulp| (measured with trace_helpers.reference_sweep), doubled;
  - NaN and Inf: the same pattern, exactly, wherever the bound is finite.
"""
import _thread
import ctypes
import gc
import importlib
import itertools
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import leaf_values, programs, spec_for
from hypothesis import given, settings
from hypothesis import strategies as st
from mpmath_oracle import ORACLES
from trace_helpers import (
    EPS,
    LIBM_FORWARD,
    LIBM_RULE,
    LIBMVEC,
    OPS,
    assert_bits,
    f3,
    libm_sites,
    reference_sweep,
    replay,
    rosenbrock,
    same_bits,
    trace_program,
    within,
)

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
inf, nan = math.inf, math.nan

REL, FLOOR = 1e-13, 4e-15  # one op: see the module docstring
LIBM_ULPS = 4 * EPS        # libmvec's documented bound, relative
# The ops whose reference value is C++'s bit for bit (the mpmath oracle's same_bits), so
# reference_sweep measures the program itself: not lgamma (CPython's math.lgamma in the
# reference, glibc's lgamma_r in C++; both within their bound, tests/test_ops_mpmath.py).
SAME_BITS_OPS = [(op, arity) for op, arity in OPS if ORACLES[op].same_bits]
EXACT_OPS = [(op, arity) for op, arity in OPS if op not in LIBM_FORWARD | set(LIBM_RULE)]
SPECIALS = (0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1000.0, -1000.0, 1e-310, inf, -inf, nan)


def columns(F, X, arity):
    """[value, d/darg...] of a Function of `arity` scalar arguments over the rows of X."""
    value, grad = F.value_and_grad(*X.T)
    return np.stack([value, *(grad if arity > 1 else (grad,))])


def assert_batch_matches_points(F, X, tol):
    """tol(point): the allowed difference; None: bit for bit."""
    n = X.shape[1]
    batched = columns(F, X, n)
    for p, x in enumerate(X):
        point = replay(F, x)
        if tol is None:
            assert_bits(batched[:, p], point, f"at {x.tolist()}")
            continue
        ok = within(batched[:, p], point, tol(point))
        assert ok.all(), f"at {x.tolist()}: batched {batched[:, p]} vs one point {point}"


# ---------------------------------------------------------------------------- every op

@pytest.mark.parametrize("op, arity", OPS, ids=[op for op, _ in OPS])
def test_op_batched_matches_point(op, arity):
    spec, r = spec_for(op), random.Random(op)
    points = [spec.domain(r) for _ in range(200)]  # on its domain: no kinks
    points += list(itertools.product(SPECIALS, repeat=arity))  # log(-1), 1/0, exp(1000), ...
    F = tg.trace(getattr(tg, op), *points[0])
    X = np.array(points)
    exact = (op, arity) in EXACT_OPS
    assert_batch_matches_points(F, X, None if exact else lambda point: REL * np.abs(point) + FLOOR)
    for x in points[:20]:  # one-point replay is the eager op itself, bit for bit
        args = [tg.Var(v) for v in x]
        out = getattr(tg, op)(*args)
        out.backward()
        assert_bits(replay(F, x), [out.value] + [a.grad for a in args], f"{op}{x}")


def test_nan_and_inf_batched_as_at_one_point():
    """log(-1), 1/0, exp(1000), sqrt(-1) in one function: the same NaN/Inf everywhere."""
    def fn(x, y):
        return tg.log(x) + 1 / y + tg.exp(-1000 * x) * tg.sqrt(x)

    F = tg.trace(fn, 1.0, 1.0)
    X = np.array([[-1.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [1.0, 1.0], [0.0, 1.0],
                  [-0.0, -0.0], [inf, 1.0], [nan, 2.0], [1e-300, 1e300]])
    batched = columns(F, X, 2)
    for p, x in enumerate(X):
        args = [tg.Var(v) for v in x]
        out = fn(*args)
        out.backward()
        eager = [out.value] + [a.grad for a in args]
        assert_bits(replay(F, x), eager, f"one point at {x}")
        if LIBMVEC.isdisjoint({"log", "exp"}):
            assert_bits(batched[:, p], eager, f"batched at {x}")
        assert within(batched[:, p], eager, REL * np.abs(eager) + FLOOR).all(), (x, batched[:, p])
    # rows: value, d/dx, d/dy; columns: the points above
    assert np.isnan(batched[:2, 0]).all() and batched[2, 0] == -1.0  # log(-1); 1/y is fine
    assert batched[:, 1].tolist() == [inf, 1.0, -inf]  # 1/0; exp(-1000) * sqrt(1) is 0
    assert np.isnan(batched[:2, 2]).all() and batched[2, 2] == -inf


# ---------------------------------------------------------------------------- random graphs

def batch_points(data, n, size):
    """size points of n coordinates: hypothesis's leaf values (specials included) plus
    ordinary numbers, and NaN/Inf."""
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    r = random.Random(seed)
    pool = data.draw(st.lists(leaf_values, min_size=1, max_size=8), label="values")
    pool += [inf, -inf, nan]
    return np.array([[r.choice(pool) if r.random() < 0.3 else r.uniform(-4, 4)
                      for _ in range(n)] for _ in range(size)])


@settings(max_examples=40)
@given(data=st.data())
def test_random_graph_without_libm_batched_is_bit_exact(data):
    """1100 points: two full blocks of 512 lanes and a ragged one."""
    program = data.draw(programs(EXACT_OPS), label="program")
    n = len(program[0])
    F = trace_program(program)
    X = batch_points(data, n, 1100)
    batched = columns(F, X, n)
    for p in range(0, 1100, 7):
        assert_bits(batched[:, p], replay(F, X[p]), f"point {p}: {X[p].tolist()}")
    assert_bits(columns(F, X[::-1], n), batched[:, ::-1], "reversed batch")


def libm_bound(program, x):
    """Per component of [value, grads]: first-order bound on what <= 4 ulp per libm call
    can change (inf where the result is not locally smooth in some call)."""
    base = reference_sweep(program, x)
    total = np.zeros_like(base)
    with np.errstate(all="ignore"):
        for site in libm_sites(program):
            worst = np.zeros_like(base)
            for delta in (LIBM_ULPS, -LIBM_ULPS):
                moved = reference_sweep(program, x, perturb=(site, delta))
                change = np.where(same_bits(moved, base), 0.0, np.abs(moved - base))
                worst = np.maximum(worst, np.where(np.isnan(change), inf, change))
            total += worst
    return base, total


@settings(max_examples=60)
@given(data=st.data())
def test_random_graph_batched_within_libm_bound(data):
    program = data.draw(programs(SAME_BITS_OPS), label="program")
    n = len(program[0])
    F = trace_program(program, cse=False)  # so one-point replay is reference_sweep exactly
    X = batch_points(data, n, 48)
    batched = columns(F, X, n)
    for p, x in enumerate(X):
        point = replay(F, x)
        if same_bits(batched[:, p], point).all():
            continue
        base, bound = libm_bound(program, x)
        assert_bits(point, base, "the measuring sweep must replay the program exactly")
        ok = within(batched[:, p], point, 2 * bound + 4 * EPS * np.abs(point))
        assert ok.all(), (f"at {x.tolist()}: batched {batched[:, p]}, one point {point}, "
                          f"libm bound {bound}")


def test_threads_split_a_batch_identically():
    F = tg.trace(rosenbrock, np.zeros(10))
    X = np.random.default_rng(1).uniform(-2, 2, (20000, 10))  # work >> the 2**16 threshold
    one = F.value_and_grad(X, threads=1)
    for threads in (2, 3, None, 10**6, 2**31, 2**70):  # a huge count still works
        other = F.value_and_grad(X, threads=threads)
        assert_bits(other[0], one[0], f"threads={threads}")
        assert_bits(other[1], one[1], f"threads={threads}")
    for p in (0, 511, 512, 19999):  # pow's libm: a few ulp of O(1e4) terms
        value, grad = F.value_and_grad(X[p])
        assert within(one[0][p], value, 1e-13 * abs(value)).all()
        assert within(one[1][p], grad, 1e-13 * np.abs(grad) + 1e-10).all()


# ---------------------------------------------------------------------------- broadcasting

def scalar2(x, y):
    return x * y + tg.sin(x) - y / (1 + x * x)


@pytest.fixture(scope="module")
def F2():
    return tg.trace(scalar2, 0.5, 0.5)


def per_point(F, *args):
    """[value, grads...] at every point of the broadcast batch, one point at a time."""
    shapes = [np.shape(a) for a in args]
    batch = np.broadcast_shapes(*shapes)
    out = np.empty((len(args) + 1,) + batch)
    for idx in np.ndindex(*batch):
        point = [np.broadcast_to(a, batch)[idx] for a in args]
        out[(slice(None),) + idx] = replay(F, [float(v) for v in point])
    return out


def assert_close_to_points(F, got_value, got_grads, *args):
    want = per_point(F, *args)
    got = np.stack([got_value, *got_grads])
    assert got.shape == want.shape and got.dtype == np.float64
    assert within(got, want, REL * 10 * np.abs(want) + FLOOR).all()


def test_scalar_and_batch(F2):
    y = np.linspace(-1, 1, 7)
    value, (gx, gy) = F2.value_and_grad(0.3, y)
    assert value.shape == gx.shape == gy.shape == (7,)
    assert_close_to_points(F2, value, (gx, gy), 0.3, y)
    assert_bits(F2(0.3, y), value)


def test_column_against_row_broadcasts_to_a_grid(F2):
    x, y = np.linspace(-2, 2, 4)[:, None], np.linspace(-1, 3, 5)
    value, (gx, gy) = F2.value_and_grad(x, y)
    assert value.shape == gx.shape == gy.shape == (4, 5)
    assert_close_to_points(F2, value, (gx, gy), x, y)
    v2, (gx2, gy2) = F2.value_and_grad(np.broadcast_to(x, (4, 5)).copy(), y[None, :])
    assert_bits(v2, value)
    assert_bits(gx2, gx)
    assert_bits(gy2, gy)


def test_vector_arguments_and_multi_dim_batches():
    def fn(v, s):
        return rosenbrock(v) * s + tg.tanh(v[0] - s)

    F = tg.trace(fn, np.zeros(4), 1.0)
    rng = np.random.default_rng(2)
    V, S = rng.uniform(-1.5, 1.5, (2, 3, 4)), rng.uniform(-1, 1, (3,))
    value, (gv, gs) = F.value_and_grad(V, S)
    assert value.shape == (2, 3) and gv.shape == (2, 3, 4) and gs.shape == (2, 3)
    for i, j in np.ndindex(2, 3):
        pv, (pgv, pgs) = F.value_and_grad(V[i, j], S[j])
        tol = 1e-13 * max(1.0, abs(pv))
        assert within(value[i, j], pv, tol) and within(gs[i, j], pgs, tol)
        assert within(gv[i, j], pgv, 1e-13 * np.maximum(1.0, np.abs(pgv))).all()
    # one vector for every scalar of a batch: the vector argument broadcasts
    value, (gv, gs) = F.value_and_grad(V[0, 0], S)
    assert value.shape == (3,) and gv.shape == (3, 4) and gs.shape == (3,)
    assert_bits(value, F(np.broadcast_to(V[0, 0], (3, 4)), S))


def test_vector_argument_point_and_batch_shapes():
    F = tg.trace(rosenbrock, np.zeros(3))
    assert F([1.0, 2.0, 3.0]).shape == ()  # a list of the point shape is one point
    assert isinstance(F([1.0, 2.0, 3.0]), np.float64)
    assert F([[1.0, 2.0, 3.0]]).shape == (1,)
    assert F(np.zeros((0, 3))).shape == (0,) and F.grad(np.zeros((0, 3))).shape == (0, 3)
    assert F.grad(np.zeros((2, 0, 3))).shape == (2, 0, 3)


def test_non_contiguous_and_converted_inputs(F2):
    rng = np.random.default_rng(5)
    base = rng.uniform(-2, 2, (40, 6))
    x = np.ascontiguousarray(base[::4, 1])  # the reference: contiguous float64
    y = np.ascontiguousarray(base[::4, 4])
    want_value, want_grads = F2.value_and_grad(x, y)
    variants = {
        "strided slices": (base[::4, 1], base[::4, 4]),
        "fortran column": (np.asfortranarray(base)[::4, 1], np.asfortranarray(base)[::4, 4]),
        "transposed": (base.T[1, ::4], base.T[4, ::4]),
        "lists": (x.tolist(), y.tolist()),
        "tuples": (tuple(x), tuple(y)),
    }
    for name, (a, b) in variants.items():
        value, grads = F2.value_and_grad(a, b)
        assert value.dtype == np.float64, name
        assert_bits(value, want_value, name)
        assert_bits(grads[0], want_grads[0], name)
        assert_bits(grads[1], want_grads[1], name)
    value, (gx, gy) = F2.value_and_grad(base[36::-4, 1], base[36::-4, 4])  # negative strides
    assert_bits(value, want_value[::-1])
    assert_bits(gx, want_grads[0][::-1])
    assert_bits(gy, want_grads[1][::-1])
    ints = np.arange(-5, 5)
    for converted in (ints.astype(np.int32), ints, ints.astype(np.float32) / 4,
                      (ints.astype(np.float32) / 4).tolist()):
        exact = np.asarray(converted, dtype=np.float64)  # float32 -> float64 is exact
        assert_bits(F2(converted, converted), F2(exact, exact))
        assert_bits(F2.grad(converted, 1.5)[0], F2.grad(exact, 1.5)[0])
    # a non-contiguous batch of vectors: rows of a transpose, and a Fortran-ordered block
    G = tg.trace(rosenbrock, np.zeros(4))
    M = rng.uniform(-2, 2, (4, 30))
    want_value, want_grad = G.value_and_grad(np.ascontiguousarray(M.T))
    for name, arg in {"transpose": M.T, "fortran": np.asfortranarray(M.T),
                      "step 2 of a wider array": np.repeat(M.T, 2, axis=1)[:, ::2],
                      "int": np.rint(M.T).astype(np.int64)}.items():
        value, grad = G.value_and_grad(arg)
        ref_value, ref_grad = ((want_value, want_grad) if name != "int" else
                               G.value_and_grad(np.rint(M.T)))
        assert_bits(value, ref_value, name)
        assert_bits(grad, ref_grad, name)


def test_outputs_are_float64_and_points_are_scalars(F2):
    v = F2(0.5, 2)
    assert isinstance(v, np.float64)
    assert isinstance(F2(np.float64(0.5), np.int64(2)), np.float64)  # not the fast path
    assert_bits(F2(np.float64(0.5), np.int64(2)), v)
    g = F2.grad(0.5, 2)
    assert isinstance(g, tuple) and all(isinstance(c, np.float64) for c in g)
    assert_bits(F2.grad(np.float64(0.5), 2.0), g)
    assert_bits(F2(np.array([0.5]), 2.0), [v])
    b = F2(np.array([0.5, 1.0], dtype=np.float32), 2)
    assert b.dtype == np.float64 and b.shape == (2,)


# ---------------------------------------------------------------------------- lane kernel sets

def test_lane_kernel_sets():
    """Both kernel sets: this process uses the best one the CPU runs; a child process
    with TAPEGRAD_LANES=baseline (read once, at import) runs this file's batched-vs-point
    checks on the baseline (SSE2) kernels."""
    assert core.lanes() in ("avx2", "baseline")
    env = dict(os.environ, TAPEGRAD_LANES="baseline", HYPOTHESIS_PROFILE="ci")
    probe = subprocess.run([sys.executable, "-c", "import tapegrad._core as c; print(c.lanes())"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "baseline", probe.stderr
    tests = " or ".join(["op_batched_matches_point", "nan_and_inf_batched", "without_libm",
                         "within_libm_bound", "threads_split"])
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", tests],
        env=env, capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert " passed" in child.stdout and "skipped" not in child.stdout


# ---------------------------------------------------------------------------- libm or libmvec

def libmvec_symbols():
    """The vector_math.def functions whose SSE2 and AVX2 forms this system's libmvec has."""
    try:
        lib = ctypes.CDLL("libmvec.so.1")
    except OSError:
        return set()
    return {f for f in core.vector_math()
            if all(hasattr(lib, f"_ZGV{isa}v_{f}") or hasattr(lib, f"_ZGV{isa}vv_{f}")
                   for isa in ("bN2", "dN4"))}


def test_vector_math_uses_what_libmvec_has():
    """Only functions this system's libmvec has, all of them unless turned off (or the
    build has no vector math: then none)."""
    used = {f for f, on in core.vector_math().items() if on}
    assert used <= libmvec_symbols()
    if os.environ.get("TAPEGRAD_LIBMVEC") == "0":
        assert not used
    elif used:
        assert used == libmvec_symbols()


def test_a_points_batched_results_do_not_depend_on_its_place_in_the_batch():
    """The lane kernels run whole vectors, so every point takes the same SIMD form of each
    vector-math function: rolled through the batch (across lane remainders and blocks), a
    point's value, gradient and tangent keep their bits. (A loop's remainder took libmvec's
    2-lane form or scalar libm, which differed in the last bit for about 1 point in 25.)"""
    def g(x, y, z):
        return tg.sin(x * y) + tg.exp(-z * z) / (1 + x * x) + tg.tanh(y - z) * x + tg.log(1 + y * y)

    F = tg.trace(g, 0.5, 0.5, 0.5)
    rng = np.random.default_rng(11)
    for n in (5, 103, 1000):
        P = rng.uniform(-2, 2, (3, n))
        T = rng.uniform(-1, 1, (3, n))
        value, grad = F.value_and_grad(*P, threads=1)
        _, tangent = F.jvp(*P, tuple(T), threads=1)
        for shift in (1, 2, 3, 5, 7, 13):
            at = np.roll(np.arange(n), shift)
            v, gr = F.value_and_grad(*P[:, at], threads=1)
            _, t = F.jvp(*P[:, at], tuple(T[:, at]), threads=1)
            assert np.array_equal(v, value[at]), (n, shift)
            for a, b in zip(gr, grad):
                assert np.array_equal(a, b[at]), (n, shift)
            assert np.array_equal(t, tangent[at]), (n, shift)


def test_scalar_libm_fallback():
    """TAPEGRAD_LIBMVEC=0 (read once, at import) keeps the lanes on scalar libm, as a
    system without libmvec does: a child process runs this file's batched-vs-point checks,
    now bit for bit for every op, and the random-graph differential tests."""
    env = dict(os.environ, TAPEGRAD_LIBMVEC="0", HYPOTHESIS_PROFILE="ci")
    code = "import tapegrad._core as c; print(sorted(c.vector_math().items()))"
    probe = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=60)
    assert probe.stdout.strip() == str(sorted((f, False) for f in core.vector_math())), probe.stderr
    here = os.path.dirname(os.path.abspath(__file__))
    tests = " or ".join(["op_batched_matches_point", "nan_and_inf_batched", "random_graph",
                         "threads_split", "vector_math_uses", "cpp_matches_reference"])
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         os.path.join(here, "test_differential.py"),
         os.path.join(here, "test_transforms_random_graphs.py"), "-k", tests],
        env=env, capture_output=True, text=True, timeout=300, cwd=os.path.dirname(here))
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert " passed" in child.stdout and "skipped" not in child.stdout


# ---------------------------------------------------------------------------- threads

def test_many_threads_share_one_function():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    big = tg.trace(rosenbrock, np.zeros(4000))  # > 20000 nodes: replays without the GIL
    rng = np.random.default_rng(8)
    points = rng.uniform(-2, 2, (64, 3))
    batch = rng.uniform(-2, 2, (3000, 3))
    big_points = rng.uniform(-1.5, 1.5, (4, 4000))

    def work():
        return ([replay(F, p.tolist()) for p in points]  # Python floats: the C++ fast path
                + [replay(F, p) for p in points[:8]],    # numpy scalars: the general path
                F.value_and_grad(*batch.T, threads=2),
                [big.value_and_grad(x) for x in big_points])

    serial = work()
    results = [None] * 8
    start = threading.Barrier(8)

    def run(k):
        start.wait()
        results[k] = work()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (singles, (value, grads), bigs) in enumerate(results):
        for got, want in zip(singles, serial[0]):
            assert_bits(got, want, f"thread {k}, one point")
        assert_bits(value, serial[1][0], f"thread {k}, batch")
        for g, w in zip(grads, serial[1][1]):
            assert_bits(g, w, f"thread {k}, batch")
        for (v, g), (wv, wg) in zip(bigs, serial[2]):
            assert_bits(v, wv, f"thread {k}, big graph")
            assert_bits(g, wg, f"thread {k}, big graph")


# ---------------------------------------------------------------------------- interrupt

def test_keyboard_interrupt_stops_a_long_batch():
    def chain(x):
        acc = x
        for _ in range(3000):
            acc = tg.sin(acc) * 0.999 + x * 1e-3
        return acc

    F = tg.trace(chain, 0.5)  # ~9000 instructions per point
    probe = np.broadcast_to(np.float64(0.3), (4000,))  # stride 0: no input memory
    t0 = time.perf_counter()
    before = F(probe)
    per_point = (time.perf_counter() - t0) / 4000
    n = int(30.0 / per_point)  # ~30 s uninterrupted (2 threads: ~15 s at best)
    big = np.broadcast_to(np.float64(0.3), (n,))
    timer = threading.Timer(0.3, _thread.interrupt_main)
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            F(big)
        elapsed = time.perf_counter() - t0
    finally:
        timer.cancel()
    assert elapsed < 2.0, f"stopped after {elapsed:.2f} s"
    assert elapsed < per_point * n / 5  # far less than the uninterrupted run
    assert_bits(F(probe), before)  # still usable, and unchanged


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_a_replay_inside_a_signal_handler_leaves_the_interrupted_batch_intact():
    """A long batch polls for signals between blocks; a Python handler that replays
    another Function then runs on the same thread. The interrupted batch keeps its own
    block scratch (it once shared it, and the handler's constants replaced its own)."""
    F = tg.trace(lambda x: 3.0 * tg.sin(x[0]) + 7.0 * x[1], np.zeros(2))
    G = tg.trace(lambda x: x * 0.5 + 2.5 + x * x * 1.25 - 4.0, 0.0)  # other constants
    X = np.random.default_rng(0).uniform(-1, 1, (1_000_000, 2))
    small = np.linspace(-1, 1, 5000)
    want_small = G.value_and_grad(small, threads=1)
    inner = []

    def handler(signum, frame):
        inner.append(G.value_and_grad(small, threads=1))

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    try:
        v, g = F.value_and_grad(X, threads=1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert inner, "the timer never fired during the batch"
    v2, g2 = F.value_and_grad(X, threads=1)
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(g, g2)
    for value, grad in inner:
        np.testing.assert_array_equal(value, want_small[0])
        np.testing.assert_array_equal(grad, want_small[1])


# ---- result buffers: _core.empty hands out cached, already-mapped blocks


def test_result_buffers_are_not_shared_between_live_results():
    """Large batched results come from a buffer cache; a result still alive must never
    be handed out again (aliasing would silently overwrite it)."""
    F = tg.trace(lambda x, y: x * y + tg.sin(x), 0.5, 0.5)
    n = 20_000  # 160 kB per array: above the cache's small-size cutoff
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-2, 2, n) for _ in range(4)]
    kept = [F.grad(x, 0.75) for x in xs]  # all alive at once
    for x, (gx, gy) in zip(xs, kept):
        assert np.allclose(gx, 0.75 + np.cos(x), rtol=1e-13, atol=0)
        assert np.array_equal(gy, x)
    arrays = [g for pair in kept for g in pair]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)


def test_result_buffers_are_reused_and_survive_their_function():
    from tapegrad import _core

    a = _core.empty((40_000,))
    where = a.ctypes.data
    a[:] = 1.0
    del a
    b = _core.empty((40_000,))  # the block just given back
    assert b.ctypes.data == where and b.shape == (40_000,) and b.dtype == np.float64
    assert b.flags["C_CONTIGUOUS"] and b.flags["WRITEABLE"] and b.ctypes.data % 64 == 0

    F = tg.trace(lambda x: x * 2.0, 1.0)
    out = F(np.arange(30_000.0))
    del F
    gc.collect()
    assert np.array_equal(out, 2.0 * np.arange(30_000.0))  # the result outlives F
    small = _core.empty((3, 2))  # small arrays are plain numpy ones
    assert small.shape == (3, 2) and small.base is None
    assert _core.empty(()).shape == () and _core.empty((0, 7)).shape == (0, 7)
    with pytest.raises(ValueError, match="negative"):
        _core.empty((-1,))
    with pytest.raises(ValueError, match="too large"):
        _core.empty((2**40, 2**40))


def test_result_buffers_freed_on_other_threads():
    """Results made on one thread and dropped on another go back to the cache safely."""
    F = tg.trace(lambda x: x * x, 1.0)
    x = np.linspace(-1, 1, 50_000)
    results = [F.grad(x) for _ in range(8)]
    errors = []

    def drop_and_make(k):
        try:
            for _ in range(20):
                results[k] = None
                results[k] = F.grad(x, threads=1)
                assert np.array_equal(results[k], 2 * x)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=drop_and_make, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(r, 2 * x) for r in results)
