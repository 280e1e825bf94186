"""Sparse Jacobians and Hessians: patterns read off the program, colorings, compressed
evaluation. Oracles: the dense F.jacobian / F.hessian (themselves checked against finite
differences, the reference and PyTorch elsewhere), the same sweeps run one seed at a time
(F.jvp / F.vjp / F.hvp, bit for bit), central differences, PyTorch float64 when installed,
and scipy's own column grouping for the color counts."""
import pickle
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import programs, run, table_ops
from hypothesis import given, settings
from trace_helpers import assert_bits, central_difference, within

import tapegrad as tg

SMOOTH_OPS = [(name, arity) for name, arity in tg.ops()
              if name in {"add", "sub", "mul", "div", "sin", "cos", "exp", "tanh", "square",
                          "neg", "sqrt", "log1p", "atan", "hypot", "maximum", "relu", "abs",
                          "floor", "detach", "sigmoid", "pow", "logaddexp", "xlogy"}]


def rosen(x):
    return sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def bratu_residual(n):
    h = 1.0 / (n + 1)

    def r(u):
        out = []
        for i in range(n):
            left = u[i - 1] if i > 0 else 0.0
            right = u[i + 1] if i < n - 1 else 0.0
            out.append((left - 2 * u[i] + right) / (h * h) + tg.exp(u[i]))
        return np.array(out)
    return r


def dense_pattern(P):
    return P.toarray().astype(bool)


def check_against_dense(S, dense, pattern, values=True):
    """S (CSR) has exactly the pattern's entries, equal to the dense matrix there (same
    NaN/inf; unless not `values`), and the dense matrix is zero (or non-finite) off the
    pattern."""
    assert S.shape == dense.shape == pattern.shape
    assert np.array_equal(S.indptr, pattern.indptr) and np.array_equal(S.indices, pattern.indices)
    P = dense_pattern(pattern)
    off = dense[~P]
    assert np.all((off == 0) | ~np.isfinite(off)), "a nonzero outside the pattern"
    rows, cols = pattern.nonzero()
    want = dense[rows, cols]
    assert not values or within(S.toarray()[rows, cols], want, 1e-9 * (1 + np.abs(want))).all()


# ---------------------------------------------------------------------------- patterns

def test_patterns_of_small_functions():
    F = tg.trace(lambda x: x[0] * x[1] + tg.sin(x[2]) + x[3] + x[4] / x[5], np.ones(6))
    H = dense_pattern(F.hessian_sparsity())
    want = np.zeros((6, 6), bool)
    want[0, 1] = want[1, 0] = True  # x0 * x1: the cross term only
    want[2, 2] = True  # sin
    want[4, 5] = want[5, 4] = want[5, 5] = True  # x4 / x5: no d2/dx4^2
    assert np.array_equal(H, want)
    assert np.array_equal(dense_pattern(F.jacobian_sparsity()), np.ones((1, 6), bool))


def test_zero_derivative_ops_pass_nothing_and_where_counts_both_sides():
    F = tg.trace(lambda v: np.array([tg.floor(v[0]) * v[1], tg.detach(v[2]) + v[3],
                                     tg.where(v[4] > 0, v[0], v[3] * v[3]), v[1] > v[2]]),
                 np.ones(5))
    J = dense_pattern(F.jacobian_sparsity())
    assert np.array_equal(J, np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 1, 0],
                                       [0, 0, 0, 0, 0]], bool))
    # the where's other side is taken at this point, but its pattern is still there
    Jv = F.jacobian(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), sparse=True)
    assert Jv.nnz == J.sum() and Jv[2, 3] == 0.0 and Jv[2, 0] == 1.0


def test_relu_abs_max_have_no_second_derivative_but_pass_the_first():
    F = tg.trace(lambda x: tg.relu(x[0]) * x[1] + abs(x[2]) + tg.maximum(x[0], x[2]) ** 2,
                 np.ones(3))
    H = dense_pattern(F.hessian_sparsity())
    want = np.zeros((3, 3), bool)
    want[0, 1] = want[1, 0] = True
    want[np.ix_([0, 2], [0, 2])] = True  # maximum(x0, x2) ** 2
    assert np.array_equal(H, want)


def test_rosenbrock_hessian_is_tridiagonal_and_star_colored_with_three():
    for d in (2, 3, 10, 1000):
        F = tg.trace(rosen, np.zeros(d))
        H = dense_pattern(F.hessian_sparsity())
        i, j = np.indices((d, d))
        assert np.array_equal(H, np.abs(i - j) <= 1)
        c = F.coloring("hessian")
        assert c.mode == "star" and c.n_colors == (2 if d <= 3 else 3)  # a path: P4 needs 3


@settings(max_examples=60, deadline=None)
@given(programs(SMOOTH_OPS, max_leaves=5, max_steps=16))
def test_patterns_cover_every_nonzero_of_random_programs(program):
    """Soundness: at random points every finite nonzero of the dense derivatives lies in
    the pattern; and the sparse values equal the dense ones on it."""
    n = len(program[0])
    k = min(3, n + len(program[1]))
    F = tg.trace(lambda *xs: np.array(run(program, tg, xs)[-k:]), *program[0])
    G = tg.trace(lambda *xs: run(program, tg, xs)[-1], *program[0])
    JP, HP = F.jacobian_sparsity(), G.hessian_sparsity()
    rng = np.random.default_rng(len(program[1]))
    for x in [np.array(program[0], dtype=float), rng.uniform(0.2, 2.0, n)]:
        try:
            J = np.stack([np.atleast_1d(g) for g in F.jacobian(*x)], axis=-1).reshape(k, n)
            H = np.array(G.hessian(*x), dtype=float).reshape(n, n)
        except tg.TraceError:
            continue
        if F.coloring("jacobian").mode == "forward":  # the same mode's sweeps, column by column
            J = np.stack([np.atleast_1d(F.jvp(*x, tuple(np.eye(n)[j]))[1]) for j in range(n)],
                         axis=-1)
        S = F.jacobian(*x, sparse=True)
        if np.isfinite(J).all() and np.isfinite(S.data).all():
            check_against_dense(S, J, JP)
        else:  # a singular point: seeds that share a sweep may meet 0 * inf; soundness only
            check_against_dense(S, J, JP, values=False)
        S = G.hessian(*x, sparse=True)
        if np.isfinite(H).all() and np.isfinite(S.data).all():
            check_against_dense(S, H, HP)
        else:
            check_against_dense(S, H, HP, values=False)


def test_pattern_is_tight_for_generic_functions():
    """Every structural nonzero of a function without cancellations is nonzero somewhere."""
    def f(x):
        return tg.exp(x[0] * x[1]) + tg.sin(x[2]) * x[3] + tg.log1p(x[4] ** 2) / (1 + x[0] ** 2)
    F = tg.trace(f, np.ones(5))
    P = dense_pattern(F.hessian_sparsity())
    seen = np.zeros_like(P)
    for x in np.random.default_rng(1).normal(size=(5, 5)):
        seen |= F.hessian(x) != 0
    assert np.array_equal(seen, P)


def test_sparsity_pattern_of_a_long_sum_in_either_order_is_fast_enough_and_right():
    n = 3000
    for order in (range(n), range(n - 1, -1, -1)):
        F = tg.trace(lambda x, o=order: sum(tg.sin(x[i]) * x[(i + 1) % n] for i in o), np.ones(n))
        J = F.jacobian_sparsity()
        assert J.nnz == n
        H = F.hessian_sparsity()
        assert H.nnz == 3 * n  # tridiagonal plus the wrap-around corners
        assert H[0, n - 1] and H[n - 1, 0]


# ---------------------------------------------------------------------------- colorings

def test_jacobian_colors_match_scipy_group_columns():
    from scipy.optimize._numdiff import group_columns
    rng = np.random.default_rng(3)
    for _ in range(20):
        m, n = rng.integers(2, 30, size=2)
        A = rng.random((m, n)) < rng.uniform(0.05, 0.4)
        B = sp.csr_matrix(A)
        ours = tg._core.color_columns(B.indptr, B.indices.astype(np.int32), n)
        groups = group_columns(A, order=np.arange(n))
        assert ours.max() + 1 == groups.max() + 1
        for row in A:  # valid: no two columns of one color meet in a row
            cs = ours[row]
            assert len(cs) == len(set(cs.tolist()))


def test_banded_jacobian_takes_its_bandwidth_in_forward_sweeps():
    for w in (1, 2, 3):
        R = tg.trace(lambda u, w=w: np.array([sum(u[j] ** 2 for j in range(i, min(i + w + 1, 40)))
                                              for i in range(40)]), np.ones(40))
        c = R.coloring("jacobian")
        assert c.mode == "forward" and c.n_colors == w + 1


def test_arrowhead_jacobian_and_hessian_take_two_colors():
    n = 60

    def arrow(x):  # residual: row 0 dense, the rest diagonal
        return np.array([sum(x)] + [x[i] ** 2 for i in range(1, n)])
    R = tg.trace(arrow, np.ones(n))
    c = R.coloring("jacobian")
    assert c.mode == "reverse" and c.n_colors == 2  # columns would take n colors
    x = np.linspace(0.5, 1.5, n)
    check_against_dense(R.jacobian(x, sparse=True), R.jacobian(x), c.pattern)

    F = tg.trace(lambda x: x[0] * sum(x[1:]) + sum(x ** 3), np.ones(n))
    h = F.coloring("hessian")
    assert h.n_colors == 2
    check_against_dense(F.hessian(x, sparse=True), F.hessian(x), h.pattern)


# ---------------------------------------------------------------------------- evaluation

def test_sparse_hessian_equals_dense_bit_for_bit_on_rosenbrock():
    d = 200
    F = tg.trace(rosen, np.zeros(d))
    x = np.random.default_rng(0).normal(size=d)
    H = F.hessian(x, sparse=True)
    assert isinstance(H, sp.csr_matrix) and H.dtype == np.float64
    dense = F.hessian(x)
    rows, cols = F.hessian_sparsity().nonzero()
    assert_bits(H.toarray()[rows, cols], dense[rows, cols])


def test_compressed_sweeps_equal_one_seed_at_a_time():
    """Each color's sweep is the jvp / vjp / hvp with that color's seed, bit for bit."""
    n = 30
    R = tg.trace(bratu_residual(n), np.zeros(n))
    u = np.linspace(0.1, 0.9, n)
    c = R.coloring("jacobian")
    J = R.jacobian(u, sparse=True).toarray()
    for k in range(c.n_colors):
        seed = (c.colors == k).astype(float)
        _, tout = R.jvp(u, seed)
        for i in range(n):
            js = np.flatnonzero(c.pattern[i].toarray()[0] & (c.colors == k))
            if len(js):
                assert_bits(J[i, js[0]], tout[i])
    F = tg.trace(rosen, np.zeros(n))
    h = F.coloring("hessian")
    H = F.hessian(u, sparse=True)
    for k in range(h.n_colors):
        hv = F.hvp(u, (h.colors == k).astype(float))
        # rows where the color has a single nonzero read it directly
        for i in range(n):
            js = np.flatnonzero(h.pattern[i].toarray()[0] & (h.colors == k))
            if len(js) == 1:
                assert_bits(H[i, js[0]], hv[i])


def test_sparse_jacobian_reverse_mode_equals_vjp():
    n = 40
    R = tg.trace(lambda x: np.array([sum(x)] + [tg.sin(x[i]) for i in range(1, n)]), np.ones(n))
    c = R.coloring("jacobian")
    assert c.mode == "reverse"
    x = np.linspace(-1, 1, n)
    J = R.jacobian(x, sparse=True).toarray()
    for k in range(c.n_colors):
        _, vjp = R.vjp(x)
        g = vjp((c.colors == k).astype(float))
        for i in np.flatnonzero(c.colors == k):
            cols = c.pattern[i].indices
            assert_bits(J[i, cols], g[cols])


def test_sparse_jacobian_against_central_differences():
    n = 50
    R = tg.trace(bratu_residual(n), np.zeros(n))
    u = np.sin(np.linspace(0, 3, n))
    J = R.jacobian(u, sparse=True).toarray()
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        fd = central_difference(lambda t, e=e: R(u + t * e), 0.0)
        assert np.allclose(J[:, j], fd, rtol=1e-6, atol=1e-4 * np.abs(fd).max())


def test_several_arguments_and_wrt():
    F = tg.trace(lambda x, y, z: x[0] * y + tg.exp(x[1] * z[0]) + z[1] ** 3, np.ones(2), 1.0,
                 np.ones(2))
    x, y, z = np.array([0.5, -0.3]), 1.7, np.array([0.2, 0.9])
    full = F.hessian(x, y, z, sparse=True)
    assert full.shape == (5, 5)
    blocks, sizes = F.hessian(x, y, z), [2, 1, 2]
    dense = np.block([[np.asarray(blocks[i][j], dtype=float).reshape(sizes[i], sizes[j])
                       for j in range(3)] for i in range(3)])
    check_against_dense(full, dense, F.hessian_sparsity())
    sub = F.hessian(x, y, z, sparse=True, wrt=(0, 2))
    keep = [0, 1, 3, 4]
    assert np.array_equal(sub.toarray(), full.toarray()[np.ix_(keep, keep)])
    assert np.array_equal(F.hessian(x, y, z, sparse=True, wrt=-1).toarray(),
                          full.toarray()[3:, 3:])
    G = tg.trace(lambda x, y: np.array([x[0] * y, x[1] + y, tg.sin(x[0]) * x[1]]),
                 np.zeros(2), 1.0)
    Jy = G.jacobian(np.array([1.0, 2.0]), 3.0, sparse=True, wrt=1)
    assert Jy.shape == (3, 1) and np.array_equal(Jy.toarray(), [[1.0], [1.0], [0.0]])


def test_scalar_argument_and_empty_patterns():
    F = tg.trace(lambda x, y: x * x * y, 3.0, 4.0)
    assert np.array_equal(F.hessian(3.0, 4.0, sparse=True).toarray(), [[8.0, 6.0], [6.0, 0.0]])
    L = tg.trace(lambda x: 2 * x[0] + x[1], np.ones(2))
    H = L.hessian(np.ones(2), sparse=True)
    assert H.nnz == 0 and H.shape == (2, 2)
    C = tg.trace(lambda x: np.array([tg.floor(x[0]), 1.0 + tg.detach(x[1])]), np.ones(2))
    assert C.jacobian(np.ones(2), sparse=True).nnz == 0


# ---------------------------------------------------------------------------- promises

def test_guards_raise_or_retrace_as_replays_do():
    def f(x):
        return x[0] ** 2 * x[1] if x[0] > 0 else x[0] * x[1] ** 3

    F = tg.trace(f, np.ones(2))
    with pytest.raises(tg.TraceError, match="another branch"):
        F.hessian(np.array([-1.0, 2.0]), sparse=True)
    G = tg.trace(f, np.ones(2), retrace=True)
    x = np.array([-1.0, 2.0])
    assert np.array_equal(G.hessian(x, sparse=True).toarray(), G.hessian(x))
    assert np.array_equal(G.hessian(np.array([1.0, 2.0]), sparse=True).toarray(),
                          G.hessian(np.array([1.0, 2.0])))


def test_bad_input_names_what_is_wrong():
    F = tg.trace(rosen, np.zeros(4))
    with pytest.raises(ValueError, match="one point"):
        F.hessian(np.zeros((3, 4)), sparse=True)
    with pytest.raises(ValueError, match="scalar function"):
        tg.trace(lambda x: x * 2.0, np.zeros(3)).hessian(np.zeros(3), sparse=True)
    with pytest.raises(ValueError, match="scalar function"):
        tg.trace(lambda x: x * 2.0, np.zeros(3)).hessian_sparsity()
    with pytest.raises(TypeError, match="wrt"):
        F.hessian(np.zeros(4), sparse=True, wrt="x")
    with pytest.raises(ValueError, match="wrt"):
        F.hessian(np.zeros(4), sparse=True, wrt=3)
    with pytest.raises(TypeError, match="wrt= is for sparse=True"):
        F.jacobian(np.zeros(4), wrt=0)
    with pytest.raises(ValueError, match="kind"):
        F.coloring("laplacian")
    with pytest.raises(ValueError):
        tg._core.star_recovery(np.array([0, 2, 4]), np.array([0, 1, 0, 1], np.int32),
                               np.array([0, 0], np.int32))
    with pytest.raises(ValueError, match="ascend"):
        tg._core.color_columns(np.array([0, 2]), np.array([1, 0], np.int32), 2)
    with pytest.raises(ValueError, match="out of range"):
        tg._core.color_columns(np.array([0, 1]), np.array([5], np.int32), 2)
    other = tg.trace(rosen, np.zeros(4))._programs[0]
    plan = F._programs[0].hessian_plan([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="another program"):
        other.hessian_columns(np.zeros(4), plan)
    with pytest.raises(ValueError, match="out of range"):
        other.hessian_plan([[9]])


def test_anomaly_mode_checks_sparse_results():
    F = tg.trace(lambda x: tg.sqrt(x[0]) * x[1], np.ones(2))
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError):
        F.hessian(np.array([0.0, 1.0]), sparse=True)
    assert np.isinf(F.hessian(np.array([0.0, 1.0]), sparse=True).toarray()).any()


def test_pickled_function_and_threads_agree():
    F = tg.trace(rosen, np.zeros(50))
    x = np.random.default_rng(5).normal(size=50)
    want = F.hessian(x, sparse=True).toarray()
    G = pickle.loads(pickle.dumps(F))
    assert np.array_equal(G.hessian(x, sparse=True).toarray(), want)
    out = [None] * 4

    def work(k):
        out[k] = F.hessian(x, sparse=True).toarray()
    for _ in range(2):  # the second evaluation records, while others replay or sweep
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(np.array_equal(o, want) for o in out)
    assert F.coloring("hessian").recorded_ops > 0


def test_recorded_replays_in_threads_at_different_points_keep_their_own_values():
    """Replays large enough to release the GIL, from several threads at once, each at its
    own points: one holds the plan's value buffer, the others their own scratch."""
    d = 4000
    F = tg.trace(rosen, np.zeros(d))
    rng = np.random.default_rng(6)
    points = [rng.normal(size=d) for _ in range(4)]
    F.hessian(points[0], sparse=True)
    F.hessian(points[0], sparse=True)  # records
    assert F.coloring("hessian").recorded_ops > 20_000
    want = [F.hessian(p, sparse=True).data for p in points]
    bad = []

    def work(k):
        for i in range(100):
            j = (k + i) % 4
            if not np.array_equal(F.hessian(points[j], sparse=True).data, want[j]):
                bad.append((k, i))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_against_torch_float64():
    torch = pytest.importorskip("torch")
    d = 30
    F = tg.trace(lambda x: rosen(x) + sum(tg.sin(a * b) for a, b in zip(x[:-2], x[2:])),
                 np.zeros(d))
    x = np.random.default_rng(2).normal(size=d)

    def f(t):
        return (100 * (t[1:] - t[:-1] ** 2) ** 2 + (1 - t[:-1]) ** 2).sum() + \
            torch.sin(t[:-2] * t[2:]).sum()
    Ht = torch.autograd.functional.hessian(f, torch.tensor(x, dtype=torch.float64)).numpy()
    check_against_dense(F.hessian(x, sparse=True), Ht, F.hessian_sparsity())
    assert np.allclose(F.hessian(x, sparse=True).toarray(), Ht, rtol=1e-12, atol=1e-12)


def test_every_table_op_has_a_consistent_structure():
    """Per op: the second-order pattern of f(a * b, c) from the table agrees with the dense
    Hessian at generic points (a finite nonzero never falls outside the pattern)."""
    for name, arity in table_ops():
        op = getattr(tg, name)

        def f(v, op=op, arity=arity):
            return op(v[0] * v[1], v[2]) if arity == 2 else op(v[0] * v[1])
        F = tg.trace(f, np.full(3, 0.6))
        P = dense_pattern(F.hessian_sparsity())
        for x in ([0.6, 0.7, 1.3], [1.1, 0.9, 2.0], [-0.4, 0.8, 0.5]):
            try:
                H = F.hessian(np.array(x))
            except tg.TraceError:
                continue
            bad = np.isfinite(H) & (H != 0) & ~P
            assert not bad.any(), f"{name}: {H} outside {P}"


@pytest.mark.parametrize("n", [64, 65, 100, 130, 200])
def test_patterns_with_large_index_sets(n):
    """Index sets past 64 inputs switch to bitsets; listing one with bit 63 of a word set
    must stop at the word's end (a shift by 64 is undefined: on x86 it looped forever)."""
    J = tg.trace(lambda z: np.array([sum(z), z[0] * z[n - 1]]), np.zeros(n)).jacobian_sparsity()
    assert J.toarray().tolist() == [[True] * n, [i in (0, n - 1) for i in range(n)]]
    F = tg.trace(lambda z: 0.5 * sum(z[k] * z[k] for k in range(n)) + z[1] * sum(z),
                 np.zeros(n))
    x = np.linspace(0.1, 1.0, n)
    want = F.hessian(x) != 0
    assert (F.hessian_sparsity().toarray() == want).all()
    np.testing.assert_array_equal(F.hessian(x, sparse=True).toarray(), F.hessian(x))


# ---------------------------------------------------------------------------- recorded program
# F.hessian(x, sparse=True) records the compressed Hessian as a program of its own at the
# second point whose guards hold, then replays it; where a rule's branch, a guard or a
# non-finite value would make it differ, it declines and the plan's sweeps run. Its
# entries equal the sweeps' bit for bit but for the sign of a zero (a folded 0 + -0).

def plan_entries(F, x):
    """The plan's sweeps (hessian_block) at x, read in the sparse result's order."""
    c = F.coloring("hessian")
    if not len(c._gather):
        return np.zeros(0), -1
    flat, failed = F._programs[0].hessian_columns(np.asarray(x, dtype=float), c._plan)
    return flat.reshape(-1)[c._gather], failed


def assert_same_but_zero_sign(a, b, context=""):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = (a == b) | (np.isnan(a) & np.isnan(b))
    assert ok.all(), f"{context}\n  recorded {a[~ok]!r}\n  sweeps   {b[~ok]!r}"


def recorded_equals_sweeps(F, points, context=""):
    """Records at points[0] (two calls), then compares at every point; returns the
    recorded program's op count."""
    for _ in range(2):
        F.hessian(np.asarray(points[0], dtype=float), sparse=True)
    for x in points:
        x = np.asarray(x, dtype=float)
        S = F.hessian(x, sparse=True)
        want, failed = plan_entries(F, x)
        assert failed < 0
        assert_same_but_zero_sign(S.data, want, f"{context} at {x}")
    return F.coloring("hessian").recorded_ops


def test_recorded_hessian_is_used_and_equals_dense_bit_for_bit_on_rosenbrock():
    d = 200
    F = tg.trace(rosen, np.zeros(d))
    rng = np.random.default_rng(0)
    x = rng.normal(size=d)
    first = F.hessian(x, sparse=True)  # the sweeps
    c = F.coloring("hessian")
    assert c.recorded_ops == 0  # a one-off Hessian does not record
    F.hessian(x, sparse=True)  # the sweeps, then the recording
    assert c.recorded_ops > 0
    rows, cols = F.hessian_sparsity().nonzero()
    for y in (x, rng.normal(size=d), np.ones(d), np.zeros(d)):
        H = F.hessian(y, sparse=True)
        assert_bits(H.toarray()[rows, cols], F.hessian(y)[rows, cols])
    assert_bits(first.data, F.hessian(x, sparse=True).data)


def test_recorded_hessian_can_be_turned_off(monkeypatch):
    from tapegrad import sparse
    monkeypatch.setattr(sparse, "RECORD_OPS_PER_OP", 0)
    F = tg.trace(rosen, np.zeros(10))
    x = np.linspace(-1, 1, 10)
    F.hessian(x, sparse=True)
    H = F.hessian(x, sparse=True)
    assert F.coloring("hessian").recorded_ops == 0
    assert_bits(H.data, plan_entries(F, x)[0])


@settings(max_examples=60, deadline=None)
@given(programs(SMOOTH_OPS, max_leaves=5, max_steps=16))
def test_recorded_hessian_equals_the_sweeps_on_random_programs(program):
    n = len(program[0])
    G = tg.trace(lambda x: run(program, tg, list(x))[-1], np.array(program[0], dtype=float))
    rng = np.random.default_rng(len(program[1]))
    points = [np.array(program[0], dtype=float), rng.uniform(0.2, 2.0, n),
              rng.uniform(-2.0, 2.0, n)]
    try:
        G.hessian(points[0], sparse=True)
        G.hessian(points[0], sparse=True)
    except tg.TraceError:
        return
    for x in points:
        try:
            S = G.hessian(x, sparse=True)
        except tg.TraceError:
            continue
        want, failed = plan_entries(G, x)
        assert failed < 0
        assert_same_but_zero_sign(S.data, want, f"at {x}")
        dense = G.hessian(x)
        rows, cols = G.hessian_sparsity().nonzero()
        finite = np.isfinite(dense[rows, cols]) & np.isfinite(S.data)
        if finite.all():  # the dense sweeps run in another order only through 0 + -0
            assert_same_but_zero_sign(S.data, dense[rows, cols])


@pytest.mark.parametrize("name,arity", table_ops())
def test_recorded_hessian_of_every_table_op(name, arity):
    """Each row's rules, recorded: op(v0 * v1, v2) * v2 + op(v1, v0 + v2) (unary: of one
    argument), at generic points, at the rows' branch points and where their derivatives
    are infinite or NaN: the replay equals the sweeps (or declines to them)."""
    op = getattr(tg, name)

    def f(v):
        if arity == 2:
            return op(v[0] * v[1], v[2]) * v[2] + op(v[1], v[0] + v[2])
        return op(v[0] * v[1]) * v[2] + op(v[1])
    F = tg.trace(f, np.array([0.6, 0.7, 1.3]))
    points = [[0.6, 0.7, 1.3], [1.1, 0.9, 2.0], [-0.4, 0.8, 0.5], [0.0, 0.7, 0.0],
              [1.0, 1.0, 1.0], [0.5, 2.0, 1.0], [np.inf, 0.5, 1.0], [np.nan, 1.0, 2.0],
              [-1.0, 1.0, -1.0], [2.0, 0.5, 0.0]]
    try:
        F.hessian(np.array(points[0]), sparse=True)
    except tg.TraceError:
        return
    F.hessian(np.array(points[0]), sparse=True)
    F.hessian(np.array(points[0]), sparse=True)
    c = F.coloring("hessian")
    assert c.recorded_ops > 0 or not len(c._gather)
    rows, cols = F.hessian_sparsity().nonzero()
    for x in points:
        x = np.array(x)
        try:
            S = F.hessian(x, sparse=True)
        except tg.TraceError:
            continue
        want, failed = plan_entries(F, x)
        assert_same_but_zero_sign(S.data, want, f"{name} at {x}")
        dense = F.hessian(x)[rows, cols]
        if np.isfinite(dense).all() and np.isfinite(S.data).all():
            assert_same_but_zero_sign(S.data, dense, f"{name} dense at {x}")


def test_recorded_hessian_declines_non_finite_values_as_the_sweeps_skip_them():
    """0 * inf: x * 0 folded, or a zero adjoint's rule skipped by the sweeps; a replay with
    a NaN or infinite value declines, so the result is the sweeps' bit for bit."""
    def f(x):
        return x[0] * x[1] + tg.exp(x[2]) * x[0] ** 2 + tg.relu(x[1]) * tg.log(x[2])
    F = tg.trace(f, np.ones(3))
    for _ in range(3):
        F.hessian(np.ones(3), sparse=True)
    assert F.coloring("hessian").recorded_ops > 0
    for x in ([np.inf, 1.0, 1.0], [1.0, np.nan, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1e3],
              [1.0, 1.0, -1.0], [-np.inf, -np.inf, np.inf]):
        x = np.array(x)
        S = F.hessian(x, sparse=True)
        assert_bits(S.data, plan_entries(F, x)[0], f"at {x}")


def test_recorded_hessian_guards_rule_branches_and_function_guards():
    def f(x):  # maximum's and abs's rules branch on values; the `if` is a guard
        y = tg.maximum(x[0], x[1]) ** 2 + abs(x[2]) * x[0]
        return y * x[1] if x[0] > 0 else y * x[2]

    F = tg.trace(f, np.array([1.0, 0.5, 0.3]))
    F.hessian(np.array([1.0, 0.5, 0.3]), sparse=True)
    F.hessian(np.array([1.0, 0.5, 0.3]), sparse=True)
    assert F.coloring("hessian").recorded_ops > 0
    for x in ([1.0, 0.5, 0.3], [0.2, 0.5, -0.3], [0.5, 0.5, 0.0], [2.0, 3.0, 1.0]):
        x = np.array(x)
        assert_same_but_zero_sign(F.hessian(x, sparse=True).data, plan_entries(F, x)[0])
    with pytest.raises(tg.TraceError, match="another branch"):
        F.hessian(np.array([-1.0, 0.5, 0.3]), sparse=True)
    G = tg.trace(f, np.array([1.0, 0.5, 0.3]), retrace=True)
    for x in ([1.0, 0.5, 0.3], [-1.0, 0.5, 0.3], [1.0, 0.5, 0.3], [-2.0, 0.5, -0.3]):
        x = np.array(x)
        S = G.hessian(x, sparse=True)
        np.testing.assert_array_equal(S.toarray(), G.hessian(x))


def pendulum_lagrangian(N):
    """The Lagrangian of examples/pendulum_swingup.py's NLP, as tapegrad.optimize traces it."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "pendulum_swingup.py"
    spec = importlib.util.spec_from_file_location("pendulum_swingup", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def lagrangian(z, lam, sigma):
        return sigma * mod.cost(z, N) + sum(lam * np.array(mod.defects(z, N, tg.sin)))
    return tg.trace(lagrangian, mod.start(N), np.zeros(2 * N), 1.0), mod.start(N)


def test_recorded_hessian_of_the_pendulum_lagrangian_with_wrt():
    N = 12
    L, z0 = pendulum_lagrangian(N)
    rng = np.random.default_rng(5)
    lam = rng.normal(size=2 * N)
    for _ in range(3):
        L.hessian(z0, lam, 1.0, sparse=True, wrt=0)
    c = L.coloring("hessian", wrt=0)
    assert c.recorded_ops > 0
    rows, cols = c.pattern.nonzero()
    for z, lam_, sigma in ((z0, lam, 1.0), (z0 + rng.normal(size=z0.size), -lam, 0.5)):
        S = L.hessian(z, lam_, sigma, sparse=True, wrt=0)
        dense = L.hessian(z, lam_, sigma)[0][0]
        assert_same_but_zero_sign(S.toarray()[rows, cols], dense[rows, cols])
