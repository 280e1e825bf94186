"""F.compile()'s batch code: plain batched values and gradients run one SIMD loop over the
points instead of the lanes, and give the interpreted batch's results bit for bit (the
sign of zero included; a NaN matches any NaN, see `same`): every op of the table, batch sizes and
positions, strided inputs, guards failing at one point, threads, pickling, and the
programs that keep the interpreter (too large, or a loop the compiler does not vectorise).

Every test needs a C++ compiler and skips, saying so, only where none is found."""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from helpers import spec_for
from test_compile import _PROBLEM, cache  # noqa: F401 (the module's own cache fixture)
from trace_helpers import f3, rosenbrock

import tapegrad as tg
from tapegrad import _core

pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))

# GCC does not vectorise these ops' kernels for AVX2 (fmax/fmin, the special functions, fmod): a
# program holding one gets no batch code, and its batches stay with the lanes.
NOT_VECTORISED = {"logaddexp", "softplus", "log_sigmoid", "lgamma", "digamma", "polygamma",
                  "floor_divide", "fmod", "remainder", "ieee_remainder"}
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, np.inf, -np.inf, np.nan, 1e-300, -7.5]


def same(a, b, what):
    """Bit for bit (int64 views, so the sign of zero counts), except that a NaN matches
    any NaN: x86 gives x * y the NaN of its first operand when both are NaN, and GCC may
    swap the operands of + and * (xlogy(nan, -7.5) is nan * log(-7.5), whose sign
    differed), as it may in the one-point native code (test_compile.py)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    differ = a.view(np.int64) != b.view(np.int64)
    bad = np.flatnonzero((differ & ~(np.isnan(a) & np.isnan(b))).ravel())
    assert not len(bad), (f"{what}: differs at {bad[:10]}: {a.ravel()[bad][:5]} vs "
                          f"{b.ravel()[bad][:5]}")


def flat(r):
    if isinstance(r, tuple):
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in r],
                              axis=1)
    return np.asarray(r, dtype=np.float64)


def compiled(F, batch=True):
    """F.compile(), with batch code or without (None: either)."""
    G = F.compile()
    assert G.native is not None
    has = _core.native_batch_path(G._programs[0]) is not None
    assert has == (G.native.batch_library is not None), G.native.batch_note
    assert batch is None or has == batch, G.native.batch_note
    return G


def agree(F, G, *args, threads=1):
    """G's batched value, grad and value_and_grad are F's (interpreted) bit for bit."""
    with np.errstate(all="ignore"):
        same(flat(G(*args, threads=threads)), flat(F(*args, threads=threads)), "value")
        if F.out_shape != ():
            return
        same(flat(G.grad(*args, threads=threads)), flat(F.grad(*args, threads=threads)), "grad")
        v, g = G.value_and_grad(*args, threads=threads)
        w, h = F.value_and_grad(*args, threads=threads)
        same(v, w, "value_and_grad value")
        same(flat(g), flat(h), "value_and_grad gradient")


def op_points(names, n_points, seed):
    """Per op, n_points rows of arguments: from the op's test domain and special values
    (pairs of specials for binary ops), as columns of one (n_points, inputs) array."""
    rng = random.Random(seed)
    cols = []
    for name in names:
        arity = dict(tg.ops())[name]
        rows = []
        for p in range(n_points):
            if p % 3 == 2:
                rows.append(tuple(rng.choice(SPECIALS) for _ in range(arity)))
            else:
                rows.append(spec_for(name).domain(rng))
        cols.extend(np.array(rows, dtype=np.float64).T)
    return np.ascontiguousarray(np.array(cols).T)


def every_op(names):
    """The ops each on their own inputs: a vector function of them all, and a scalar one:
    a weighted sum of them, twice over (each input has two users). Weight 0 gives an op a
    zero adjoint, so its rule is skipped (0 * inf must stay out), both where it would store
    its input's first contribution and where it would add to one."""
    arity = dict(tg.ops())
    weights = [(0.0, 1.0, -2.5)[k % 3] for k in range(len(names))]
    again = [(1.0, 0.0, 0.5)[k % 3] for k in range(len(names))]

    def outs(x):
        out, at = [], 0
        for name in names:
            out.append(getattr(tg, name)(*x[at:at + arity[name]]))
            at += arity[name]
        return out

    def total(x):
        s = 0.0
        for w, u, o, p in zip(weights, again, outs(x), outs(x)):
            s = s + w * o + u * p
        return s
    n = sum(arity[name] for name in names)
    return (tg.trace(outs, np.zeros(n), cse=False), tg.trace(total, np.zeros(n), cse=False))


def test_every_op_of_the_table_in_a_batch():
    names = [name for name, _ in tg.ops() if name not in NOT_VECTORISED]
    V, S = every_op(names)
    # with the baseline lanes (SSE2: TAPEGRAD_LANES=baseline) GCC vectorises fewer ops
    avx2 = _core.lanes() == "avx2" or None
    W, T = compiled(V, avx2), compiled(S, avx2)
    X = op_points(names, 103, seed=5)
    agree(V, W, X)
    agree(S, T, X)
    agree(S, T, X * 0.75 + 0.125)


def test_ops_the_compiler_does_not_vectorise_keep_the_lanes():
    names = sorted(NOT_VECTORISED & {name for name, _ in tg.ops()})
    for name in names:  # each one alone refuses the loop, and says so
        F = tg.trace(getattr(tg, name), *([0.5] * dict(tg.ops())[name]))
        G = compiled(F, batch=False)
        assert "did not vectorise" in G.native.batch_note
        assert "batches interpreted" in repr(G) and "did not vectorise" in repr(G)
    V, S = every_op(names)
    X = op_points(names, 21, seed=6)
    agree(V, compiled(V, batch=False), X)
    agree(S, compiled(S, batch=False), X)


@pytest.mark.parametrize("n", [1, 3, 8, 103])
def test_batch_sizes_and_positions(n):
    # a point's results are the same wherever it sits in whichever batch: against the
    # interpreter at this size, and against the compiled code's own at 103 points (a
    # batch of one point runs the one-point sweeps, scalar libm, as one point does)
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = compiled(F)
    rng = np.random.default_rng(n)
    X, Y, Z = rng.normal(size=(3, 103))
    X[5], Y[17], Z[40] = 0.0, -0.0, 1e-300
    big = flat(G.grad(X, Y, Z))
    for at in sorted({0, 1, 7, 103 - n} - {k for k in range(104) if k + n > 103}):
        part = (X[at:at + n], Y[at:at + n], Z[at:at + n])
        agree(F, G, *part)
        want = np.array([G.grad(X[at], Y[at], Z[at])]) if n == 1 else big[at:at + n]
        same(flat(G.grad(*part)), want, f"{n} points at {at}")


def test_strided_inputs_and_a_vector_argument():
    # the points of a (n, 3) array: each input strided, gathered into whole vectors
    F = tg.trace(lambda v: f3(v[0], v[1], v[2]) * v[1], np.zeros(3))
    G = compiled(F)
    V = np.random.default_rng(2).uniform(-2, 2, size=(37, 3))
    agree(F, G, V)
    agree(F, G, V[::2])
    agree(F, G, np.asfortranarray(V))


def test_a_guard_failing_at_one_point():
    def f(x, y):
        return x * tg.sin(y) if x > 0 else -x * y
    F, R = tg.trace(f, 1.0, 2.0), tg.trace(f, 1.0, 2.0, retrace=True)
    G, Q = compiled(F), compiled(R)
    X, Y = np.linspace(0.25, 3.0, 41), np.linspace(-1.0, 1.0, 41)
    X[29] = -0.5
    for call in ("__call__", "grad", "value_and_grad"):
        with pytest.raises(tg.TraceError) as want:
            getattr(F, call)(X, Y)
        with pytest.raises(tg.TraceError) as got:
            getattr(G, call)(X, Y)
        assert str(got.value) == str(want.value) and "flat batch indices 29" in str(got.value)
    agree(R, Q, X, Y)  # the failed point re-runs on a retraced (interpreted) program
    out = np.empty(41)
    failed = Q._programs[0].batch([X[:, None], Y[:, None]], out[:, None], threads=1)
    assert list(failed) == [29] and np.isnan(out[29]) and not np.isnan(np.delete(out, 29)).any()


def test_threads():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = compiled(F)
    X, Y, Z = np.random.default_rng(3).uniform(-3, 3, size=(3, 20011))
    agree(F, G, X, Y, Z, threads=2)
    same(flat(G.grad(X, Y, Z, threads=2)), flat(G.grad(X, Y, Z, threads=1)), "threads 2 vs 1")


def test_pickling_and_a_batch_after_load():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = pickle.loads(pickle.dumps(compiled(F)))
    assert G.native.batch_library is not None
    X = np.linspace(-1.0, 1.0, 29)
    agree(F, G, X, X[::-1], 0.25)


def test_a_program_too_large_for_batch_code_keeps_the_lanes():
    d = 150
    F = tg.trace(rosenbrock, np.zeros(d))
    G = compiled(F, batch=False)
    limit = int(G.native.batch_note.split("over the ")[1].split()[0])
    assert F.n_ops > limit and f"{F.n_ops} ops, over the {limit} of straight-line" in repr(G)
    assert f"batches interpreted ({F.n_ops} ops" in repr(G)
    agree(F, G, np.random.default_rng(4).uniform(-1, 1, size=(9, d)))


def test_repr_says_batches_are_native():
    G = compiled(tg.trace(f3, 0.5, 0.5, 0.5))
    assert "batched value, grad, value_and_grad" in repr(G)
    assert "batches interpreted" not in repr(G)


def test_batches_run_the_library():
    # a library whose outputs and first gradient are off by one (digest unchanged): every
    # batched call of the Function built on it shows it, one point does not
    from tapegrad import native
    from tapegrad.function import Function
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    G = compiled(F)
    with open(G.native.batch_library[:-3] + ".cpp") as f:
        source = f.read()
    tampered = source.replace("g0[l] = a0 + 0.0;", "g0[l] = a0 + 0.0 + 1.0;")
    tampered = tampered.replace("out0[l] = v", "out0[l] = 1.0 + v")
    assert tampered.count("1.0 + v") == 2 and tampered.count("0.0 + 1.0") == 1
    cmd = native.compiler()
    flags = native.BATCH_FLAGS + (("-mavx2",) if _core.lanes() == "avx2" else ())
    library = G.native.batch_library[:-3] + "_tampered.so"
    native._compile(cmd, [native.include_dir()], tampered, library[:-3] + ".cpp", library, flags)
    program = _core.with_native(F._programs[0], G.native.library, library)
    H = Function(F.fn, [program], list(F.arg_shapes), F.out_shape, False, True)
    X, Y, Z = np.random.default_rng(5).uniform(-1, 1, size=(3, 20011))
    for threads in (1, 2):
        same(H(X, Y, Z, threads=threads), F(X, Y, Z) + 1.0, "value")
        v, g = H.value_and_grad(X, Y, Z, threads=threads)
        same(v, F(X, Y, Z) + 1.0, "value_and_grad value")
        same(g[0], F.grad(X, Y, Z)[0] + 1.0, "value_and_grad gradient")
        same(H.grad(X, Y, Z, threads=threads)[1], F.grad(X, Y, Z)[1], "grad")
    assert float(H(0.1, 0.2, 0.3)) == float(F(0.1, 0.2, 0.3))


def test_compositions_the_compiler_could_rewrite():
    # in one loop GCC sees f(-u) and -f(u) whole (an odd f, an even f) where the lanes
    # run each op on values from memory; a rewrite would show where f is not exactly odd
    unary = [name for name, arity in tg.ops() if arity == 1 and name not in NOT_VECTORISED]

    def f(x):
        s = 0.0
        for k, name in enumerate(unary):
            op, u = getattr(tg, name), x[k % 4]
            s = s + op(-u) + (-op(u)) * 0.5 + op(0.0 - u) * 0.25
        return s
    F = tg.trace(f, np.zeros(4), cse=False)
    G = compiled(F, _core.lanes() == "avx2" or None)
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.uniform(-3, 3, (40, 4)), rng.uniform(-0.99, 0.99, (40, 4)),
                        rng.uniform(1, 50, (40, 4))])
    agree(F, G, X)
