"""tg.trace / tg.Function: replay against eager evaluation, optimisation, guards and
branch-free selects, vector functions, independence, bad input, insight.

Tracing is a C++-backend feature (the reference backend has no trace), so these tests use
`tapegrad` directly, like test_memory_threads. The pure-Python helpers below (program
builder, reference sweeps) are shared with test_trace_batch.py and test_trace_pickle.py.
"""
import gc
import importlib
import math
import random

import numpy as np
import pytest
from helpers import STYLES, in_new_thread, leaf_values, programs, run
from hypothesis import given, settings
from hypothesis import strategies as st

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
REF_OPS = importlib.import_module("tapegrad.reference").OPS  # ops.def's formulas in Python

OPS = tg.ops()
EPS = 2.0 ** -52  # the largest relative spacing of float64 numbers (1 ulp at 1.0)


# ---------------------------------------------------------------------------- shared helpers

def trace_program(program, cse=True):
    """The program traced at its own leaf values, one scalar argument per leaf."""
    return tg.trace(lambda *xs: run(program, tg, xs)[-1], *program[0], cse=cse)


def eager(program, x):
    """[value, d/dleaf...] of the program's last node, by the eager C++ tape at x."""
    nodes = run((list(x), program[1]), tg)
    nodes[-1].backward()
    return np.array([nodes[-1].value] + [nodes[i].grad for i in range(len(x))])


def replay(F, x):
    """[value, d/darg...] of a Function of scalar arguments at one point."""
    value, grad = F.value_and_grad(*x)
    return np.array([value, *(grad if len(x) > 1 else (grad,))], dtype=np.float64)


def same_bits(a, b):
    """Elementwise: bit-for-bit equal (so the sign of zero too), or both NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def assert_bits(actual, expected, context=""):
    ok = same_bits(actual, expected)
    assert ok.all(), f"{context}\n  actual   {actual!r}\n  expected {expected!r}"


def within(a, b, tol):
    """Elementwise: the same NaN/Inf pattern, finite values within tol (array or scalar).
    A tol that is not a finite number puts no bound on finite values."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
    nan = np.isnan(a) | np.isnan(b)
    inf = ~nan & (np.isinf(a) | np.isinf(b))
    finite = ~nan & ~inf
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= np.where(np.isfinite(tol), tol, np.inf)
    return np.where(nan, np.isnan(a) & np.isnan(b), np.where(inf, a == b, finite & close))


def central_difference(f, x, h=1e-3):
    """Stan's 6-point stencil: error O(h**6), about 1e-10 for smooth f."""
    return (f(x + 3 * h) - 9 * f(x + 2 * h) + 45 * f(x + h)
            - 45 * f(x - h) + 9 * f(x - 2 * h) - f(x - 3 * h)) / (60 * h)


LIBM_FORWARD = {"pow", "exp", "log", "sin", "cos", "tan", "tanh", "sigmoid"}
LIBM_RULE = {"pow": (0, 1), "sin": (0,), "cos": (0,)}  # which rule outputs call libm


def reference_sweep(program, x, perturb=None, absolute=False):
    """[value, d/dleaf...] of the program's last node at leaf values x, in Python."""
    leaves, steps = program
    n = len(leaves)
    val = [float(v) for v in x]
    for i, (op, _, args) in enumerate(steps):
        arity, forward, *_ = REF_OPS[op]
        a = [val[j] if isinstance(j, int) else float(j) for j in args]
        v = forward(a[0], a[1] if arity == 2 else 0.0)
        if perturb is not None and perturb[0] == ("value", n + i):
            v *= 1.0 + perturb[1]
        val.append(v)
    adj = [0.0] * len(val)
    adj[-1] = 1.0
    for k in range(len(val) - 1, n - 1, -1):
        g = adj[k]
        if g == 0.0:  # zero adjoints are skipped, as in both C++ sweeps
            continue
        op, _, args = steps[k - n]
        arity, _, rule, *_ = REF_OPS[op]
        a = [val[j] if isinstance(j, int) else float(j) for j in args]
        d = list(rule(a[0], a[1] if arity == 2 else 0.0, val[k], abs(g) if absolute else g))
        if perturb is not None and perturb[0][0] == "rule" and perturb[0][1] == k:
            d[perturb[0][2]] *= 1.0 + perturb[1]
        for j, dj in zip(args[:arity], d):
            if isinstance(j, int):
                adj[j] += abs(dj) if absolute else dj
    return np.array([val[-1]] + adj[:n])


def libm_sites(program):
    n = len(program[0])
    for i, (op, _, _) in enumerate(program[1]):
        if op in LIBM_FORWARD:
            yield ("value", n + i)
        for w in LIBM_RULE.get(op, ()):
            yield ("rule", n + i, w)


def reordering_tolerance(program, x, rel=1e-12):
    """rel * sum(|terms|) per gradient component (NaN/Inf: no bound on finite values)."""
    with np.errstate(all="ignore"):
        return rel * reference_sweep(program, x, absolute=True)[1:]


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
        k = c * 3.0 + tg.exp(c) - tg.Var(0.25)  # no input reaches k: one constant
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


# ---------------------------------------------------------------------------- oracles

def f3(x, y, z, lib=tg):
    """The issue's 3-input function; lib is tapegrad or torch."""
    return lib.sin(x * y) + lib.exp(-z * z) / (1 + x * x) + lib.tanh(y - z) * x + lib.log(1 + y * y)


def rosenbrock(x):
    """Extended Rosenbrock: sum 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2."""
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def test_f3_gradient_matches_finite_differences():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    r = random.Random(3)
    for _ in range(10):
        p = [r.uniform(-2, 2) for _ in range(3)]
        grad = F.grad(*p)
        for i in range(3):
            def along(t, i=i):
                q = list(p)
                q[i] = t
                return float(F(*q))
            fd = central_difference(along, p[i])
            assert math.isclose(grad[i], fd, rel_tol=1e-8, abs_tol=1e-8), (p, i, grad[i], fd)


def test_rosenbrock_gradient_matches_finite_differences():
    d = 10
    F = tg.trace(rosenbrock, np.zeros(d))
    rng = np.random.default_rng(10)
    for _ in range(3):
        x = rng.uniform(-2, 2, d)
        grad = F.grad(x)
        assert grad.shape == (d,) and grad.dtype == np.float64
        for i in range(d):
            e = np.eye(d)[i]
            fd = central_difference(lambda t: float(F(x + (t - x[i]) * e)), x[i])
            assert math.isclose(grad[i], fd, rel_tol=1e-8, abs_tol=1e-6), (i, grad[i], fd)
        # and the closed form
        want = np.zeros(d)
        want[:-1] += -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
        want[1:] += 200 * (x[1:] - x[:-1] ** 2)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-9)


def torch_value_and_grad(fn, *args):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    out = fn(*ts)
    out.backward()
    return out.item(), [t.grad.numpy() for t in ts]


def test_f3_matches_torch():
    torch = pytest.importorskip("torch")
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    rng = np.random.default_rng(4)
    P = rng.uniform(-2, 2, (50, 3))
    values, grads = F.value_and_grad(*P.T)
    for p, point in enumerate(P):
        tv, tgrads = torch_value_and_grad(lambda *t: f3(*t, lib=torch), *point)
        v, g = F.value_and_grad(*point)
        # terms are O(1): a libm/sleef ulp or two each, so 1e-12 absolute is generous
        assert math.isclose(v, tv, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(values[p], tv, rel_tol=1e-12, abs_tol=1e-12)
        for i in range(3):
            assert math.isclose(g[i], tgrads[i], rel_tol=1e-12, abs_tol=1e-12), (point, i)
            assert math.isclose(grads[i][p], tgrads[i], rel_tol=1e-12, abs_tol=1e-12), (point, i)


@pytest.mark.parametrize("d", [10, 1000])
def test_rosenbrock_matches_torch(d):
    torch = pytest.importorskip("torch")
    F = tg.trace(rosenbrock, np.zeros(d))
    rng = np.random.default_rng(d)
    X = rng.uniform(-2, 2, (3, d))

    def torch_rosenbrock(x):
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    values, grads = F.value_and_grad(X)
    assert values.shape == (3,) and grads.shape == (3, d)
    for p, x in enumerate(X):
        tv, (tgrad,) = torch_value_and_grad(torch_rosenbrock, x)
        v, g = F.value_and_grad(x)
        # the value sums d-1 positive terms in another order: n*eps relative at most
        assert math.isclose(v, tv, rel_tol=1e-12) and math.isclose(values[p], tv, rel_tol=1e-12)
        # each component has <= 3 terms of size <= ~1e4: 1e-9 absolute is ~1e4 * 1e-13
        np.testing.assert_allclose(g, tgrad, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(grads[p], tgrad, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------- vector functions

def vec_fn(x):
    return [x[0] * x[1], tg.sin(x[2]) * x[0], tg.exp(x[1]) - x[2], x[0]]


def test_vector_function_values_and_jacobian():
    F = tg.trace(vec_fn, np.zeros(3), cse=False)
    rng = np.random.default_rng(6)
    for x in rng.uniform(-2, 2, (4, 3)):
        values = F(x)
        assert values.shape == (4,) and values.dtype == np.float64
        jac = F.jacobian(x)
        assert jac.shape == (4, 3) and jac.dtype == np.float64
        # against per-output eager gradients: the same sweep, seeded at one output
        for k in range(4):
            leaves = np.array([tg.Var(float(v)) for v in x], dtype=object)
            out = vec_fn(leaves)[k]
            out.backward()
            assert_bits(values[k], out.value)
            assert_bits(jac[k], [leaf.grad for leaf in leaves], f"row {k}")
        # against finite differences, column by column
        for i in range(3):
            e = np.eye(3)[i]
            fd = central_difference(lambda t: F(x + (t - x[i]) * e), x[i])
            np.testing.assert_allclose(jac[:, i], fd, rtol=1e-8, atol=1e-8)
        with pytest.raises(ValueError, match="scalar function"):
            F.grad(x)
        with pytest.raises(ValueError, match="scalar function"):
            F.value_and_grad(x)


def test_vector_function_of_several_arguments_and_2d_output():
    def fn(s, v):
        return [[s * v[0], v[1] / s], [tg.tanh(v[0] * v[1]), 1.5]]  # 1.5: a constant output

    F = tg.trace(fn, 1.0, np.ones(2))
    s, v = 0.7, np.array([-1.2, 0.4])
    values = F(s, v)
    assert values.shape == (2, 2)
    js, jv = F.jacobian(s, v)
    assert js.shape == (2, 2) and jv.shape == (2, 2, 2)
    assert values[1, 1] == 1.5 and js[1, 1] == 0 and (jv[1, 1] == 0).all()
    np.testing.assert_allclose(js[0], [v[0], -v[1] / s ** 2], rtol=1e-15)
    assert_bits(jv[0, 0], [s, 0.0])
    for i in range(2):
        e = np.eye(2)[i]
        fd = central_difference(lambda t: F(s, v + (t - v[i]) * e), v[i])
        np.testing.assert_allclose(jv[..., i], fd, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(js, central_difference(lambda t: F(t, v), s), rtol=1e-8, atol=1e-8)


def test_batched_jacobian_matches_per_point():
    F = tg.trace(vec_fn, np.zeros(3))
    X = np.random.default_rng(7).uniform(-2, 2, (2, 3, 3))
    values, jac = F(X), F.jacobian(X)
    assert values.shape == (2, 3, 4) and jac.shape == (2, 3, 4, 3)
    for idx in np.ndindex(2, 3):
        # entries combine at most one libm result (<= 4 ulp in libmvec) with O(1) inputs
        point, point_jac = F(X[idx]), F.jacobian(X[idx])
        assert within(values[idx], point, 1e-13 * np.maximum(np.abs(point), 1)).all()
        assert within(jac[idx], point_jac, 1e-13 * np.maximum(np.abs(point_jac), 1)).all()


# ---------------------------------------------------------------------------- guards

def test_issue_abs_example_names_the_comparison():
    f = lambda x: x if x > 0 else -x  # noqa: E731 - the issue's example, as written
    F = tg.trace(f, 1)
    assert F(2.5) == 2.5 and F.grad(2.5) == 1.0 and F.n_guards == 1
    where = f"{__file__}:{f.__code__.co_firstlineno}"
    for call in (F, F.grad, F.value_and_grad):
        with pytest.raises(tg.TraceError) as err:
            call(-1)
        assert where in str(err.value), str(err.value)
        assert "x if x > 0 else -x" in str(err.value)  # the source line is shown


def test_retrace_evaluates_both_branches():
    f = lambda x: x if x > 0 else -x  # noqa: E731
    F = tg.trace(f, 1.0, retrace=True)
    assert (F(-1.0), F.grad(-1.0)) == (1.0, -1.0)
    assert (F(3.0), F.grad(3.0)) == (3.0, 1.0)
    X = np.array([[-1.5, 2.0, -3.0], [0.5, -0.25, 4.0]])
    values, grads = F.value_and_grad(X)
    assert_bits(values, np.abs(X))
    assert_bits(grads, np.sign(X))
    assert_bits(F(X[::-1, ::2]), np.abs(X[::-1, ::2]))


def test_batch_that_leaves_the_branch_lists_the_points():
    f = lambda x: x if x > 0 else -x  # noqa: E731
    F = tg.trace(f, 1.0)
    with pytest.raises(tg.TraceError) as err:
        F.grad(np.array([1.0, -2.0, 3.0, -4.0]))
    msg = str(err.value)
    assert "2 of 4 points" in msg and "indices 1, 3" in msg, msg
    assert f"{__file__}:{f.__code__.co_firstlineno}" in msg
    X = -np.ones((3, 5))
    X[1, 2] = 1.0
    with pytest.raises(tg.TraceError) as err:
        F(X)
    msg = str(err.value)
    assert "14 of 15 points" in msg and "indices 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, ..." in msg, msg
    assert_bits(F(np.array([1.0, 2.0])), [1.0, 2.0])  # still fine on the traced branch


def test_bool_of_a_var_is_a_guard():
    F = tg.trace(lambda x: x * 2.0 if x else x * 3.0, 2.0)  # bool(x): x != 0
    assert F(-5.0) == -10.0
    with pytest.raises(tg.TraceError):
        F(0.0)
    G = tg.trace(lambda x: x * 2.0 if x else x * 3.0, 0.0)
    assert G(0.0) == 0.0 and G.grad(0.0) == 3.0
    with pytest.raises(tg.TraceError):
        G(1.0)


ESCAPES = {
    "float": float,
    "int": int,
    "value": lambda v: v.value,
    "data": lambda v: v.data,
    "item": lambda v: v.item(),
    "math.floor": math.floor,
    "numpy.float64": np.float64,
    "format": lambda v: float(format(v, ".17g")),
}


@pytest.mark.parametrize("escape", list(ESCAPES.values()), ids=list(ESCAPES))
def test_values_escaping_into_python_are_guards(escape):
    def fn(x):
        return x * escape(x * 1.0) + 1.0

    F = tg.trace(fn, 2.0)
    assert (F(2.0), F.grad(2.0)) == (5.0, 2.0)  # the escaped number is a constant: d/dx 2x
    with pytest.raises(tg.TraceError):
        F(3.0)  # the escaped value would differ: never silently reuse 2.0


def test_escaped_nan_value_is_guarded():
    """float() of a NaN while tracing: the recorded guard compares `v == nan`, which is
    False at the trace AND at every replay, so it never fails and the NaN constant is
    silently reused at inputs where v is an ordinary number."""
    def fn(x):
        return x * float(tg.log(x))

    F = tg.trace(fn, -1.0)  # log(-1) = nan escapes
    try:
        got = F(math.e)
    except tg.TraceError:
        return  # detected: fine
    assert got == math.e * float(tg.log(math.e)), f"F(e) = {got}, eager gives e * 1 = {math.e}"


def test_while_loop():
    def doubling(x):
        while x < 10:
            x = x * 2
        return x

    loop_line = doubling.__code__.co_firstlineno + 1
    F = tg.trace(doubling, 1.0)  # 1, 2, 4, 8, 16: four doublings
    assert (F(1.2), F.grad(1.2)) == (1.2 * 16, 16.0)
    with pytest.raises(tg.TraceError, match=f"{__file__}:{loop_line}"):
        F(3.0)  # two doublings
    R = tg.trace(doubling, 1.0, retrace=True)
    X = np.array([1.0, 3.0, 6.0, 20.0, 1.2])
    values, grads = R.value_and_grad(X)
    assert_bits(values, [16.0, 12.0, 12.0, 20.0, 1.2 * 16])
    assert_bits(grads, [16.0, 4.0, 2.0, 1.0, 16.0])


def test_guard_survives_tape_compaction_during_trace():
    """A long fn leaves garbage below live nodes, so the tape compacts while tracing and
    nodes move; the comparison recorded before that must still guard the same node."""
    def fn(x):
        a, b = x.sin(), x.cos()
        del a  # garbage below a live node: compaction will move everything above it
        out = x * 2.0 if x - 1.0 > 0 else x * 3.0
        acc = b
        for _ in range(10000):  # > 4096 appends on a fresh tape: at least one compaction
            junk = x.exp()  # noqa: F841 - garbage between live nodes
            acc = acc + 1.0
        return out + acc * 0.0

    F = in_new_thread(tg.trace, fn, 2.0)
    assert F(2.0) == 4.0
    assert F.n_guards == 1, f"{F.n_guards} guards after tracing one comparison"
    with pytest.raises(tg.TraceError):
        F(0.5)  # x - 1 < 0: the other branch (eager: 0.5 * 3)


# ---------------------------------------------------------------------------- where

def test_where_is_branch_free_with_gradient_on_the_chosen_side():
    def fn(x):
        return tg.where(tg.gt(x, 0), x * x, 3.0 * x)

    F = tg.trace(fn, 1.0)
    assert F.n_guards == 0
    for x in (2.0, -2.0, 0.0, 1e-300):
        X = tg.Var(x)
        out = fn(X)
        out.backward()
        want = (x * x, 2 * x) if x > 0 else (3.0 * x, 3.0)
        assert_bits(replay(F, (x,)), want)
        assert_bits(replay(F, (x,)), [out.value, X.grad])
    # where() is if_true(c, a) + if_false(c, b): the unchosen half is +0.0, so a chosen -0.0
    # comes back as +0.0 (equal, not bit-equal)
    assert F(-0.0) == 0.0 and F.grad(-0.0) == 3.0
    X = np.array([2.0, -2.0, 0.0, 0.5])
    values, grads = F.value_and_grad(X)
    assert_bits(values, np.where(X > 0, X * X, 3.0 * X))
    assert_bits(grads, np.where(X > 0, 2 * X, 3.0))


@pytest.mark.parametrize("cmp, numpy_cmp", [(tg.lt, np.less), (tg.le, np.less_equal),
                                           (tg.gt, np.greater), (tg.ge, np.greater_equal)])
def test_where_with_each_comparison(cmp, numpy_cmp):
    F = tg.trace(lambda x, y: tg.where(cmp(x, y), x - y, y * 2.0), 0.0, 0.0)
    X = np.array([-1.0, 0.0, 1.0, 2.0, np.nan])[:, None]
    Y = np.array([0.0, 1.0, np.inf])
    values, (gx, gy) = F.value_and_grad(X, Y)
    chosen = numpy_cmp(X, Y)
    assert_bits(values, np.where(chosen, X - Y, Y * 2.0))
    assert_bits(gx, np.broadcast_to(np.where(chosen, 1.0, 0.0), values.shape))
    assert_bits(gy, np.where(chosen, -1.0, 2.0))


def test_where_does_not_leak_nan_from_the_unchosen_side():
    """where(x > 0, sqrt(x), 0) at x = -1: sqrt(-1) = nan is computed but not chosen. The
    engine gives value 0 AND grad 0: if_true's rule hands the sqrt node an adjoint of
    exactly 0 (no NaN arithmetic), and zero adjoints are skipped, so sqrt's rule
    1/(2*nan) never runs. (PyTorch's where gives grad nan here: 0 * nan.)"""
    def fn(x):
        return tg.where(tg.gt(x, 0), tg.sqrt(x), 0.0) + tg.where(tg.lt(x, 0), x, tg.log(x))

    F = tg.trace(fn, 4.0)
    X = tg.Var(-1.0)
    out = fn(X)
    out.backward()
    assert (out.value, X.grad) == (-1.0, 1.0)  # eager: the same
    assert (F(-1.0), F.grad(-1.0)) == (-1.0, 1.0)
    values, grads = F.value_and_grad(np.array([-1.0, 4.0, -4.0, 0.0]))
    assert_bits(values, [-1.0, 2.0 + math.log(4.0), -4.0, -math.inf])
    assert_bits(grads, [1.0, 0.25 + 0.25, 1.0, math.inf])


def test_where_with_a_python_bool_is_a_guard():
    F = tg.trace(lambda x: tg.where(x > 0, x, -x), 1.0)  # `>` is Python control flow
    assert F.n_guards == 1
    with pytest.raises(tg.TraceError):
        F(-1.0)


# ---------------------------------------------------------------------------- independence

def test_function_survives_eager_churn_and_dead_closures():
    in_new_thread(churn)  # a fresh tape, so its compactions are predictable


def churn():
    holder = [tg.Var(1.5)]
    F = tg.trace(lambda x: tg.sin(x * holder[0]) + holder[0] / x, 0.3)
    points = np.linspace(-2.0, 2.0, 9) + 0.05
    before = [replay(F, (x,)) for x in points]
    batched_before = F.value_and_grad(points)

    holder.clear()  # the closure Var dies
    gc.collect()
    live, made = [], 0
    for i in range(60000):  # garbage between live nodes: the tape compacts again and again
        v = tg.Var(float(i)) * 2.0 + 1.0
        made += 3
        if i % 50 == 0:
            live.append(v)
        if i % 20000 == 0:
            other = tg.trace(lambda x: x * x, 1.0)  # more tracing meanwhile
            assert other(3.0) == 9.0
    assert core.tape_stats()["size"] < made // 2  # compaction happened
    del live
    for x, want in zip(points, before):
        assert_bits(replay(F, (x,)), want)
    after = F.value_and_grad(points)
    assert_bits(after[0], batched_before[0])
    assert_bits(after[1], batched_before[1])


def test_function_traced_in_a_thread_outlives_it():
    F = in_new_thread(lambda: tg.trace(lambda x, y: tg.tanh(x) * y, 0.1, 0.2))
    assert_bits(replay(F, (0.5, 2.0)), [math.tanh(0.5) * 2.0, (1 - math.tanh(0.5) ** 2) * 2.0,
                                        math.tanh(0.5)])


# ---------------------------------------------------------------------------- bad input

def two_args(x, v):
    return x * v[0] + v[1]


@pytest.mark.parametrize("args, error, fragment", [
    ((1.0,), TypeError, "takes 2 argument"),
    ((1.0, np.ones(2), 3.0), TypeError, "takes 2 argument"),
    ((1.0, np.ones(3)), ValueError, "trailing shape (2,)"),
    ((np.ones(3), np.ones((2, 2))), ValueError, "batch dimensions do not broadcast"),
    ((np.ones((2, 1)), np.ones((3, 3, 2))), ValueError, "batch dimensions do not broadcast"),
    ((1.0, 5.0), ValueError, "argument 1"),
    ((object(), np.ones(2)), TypeError, "argument 0"),
    (("abc", np.ones(2)), TypeError, "argument 0"),
    (("1.5", np.ones(2)), TypeError, "argument 0"),  # a numeric string is still a string
    ((None, np.ones(2)), TypeError, "argument 0"),
    (([1.0, None], np.ones(2)), TypeError, "argument 0"),
    ((1.0, [[1.0, 2.0], [3.0]]), (TypeError, ValueError), "argument 1"),
    ((1 + 2j, np.ones(2)), TypeError, "argument 0"),
    ((1.0, {"a": 1}), TypeError, "argument 1"),
])
def test_bad_call_arguments(args, error, fragment):
    F = tg.trace(two_args, 1.0, np.ones(2))
    for call in (F, F.grad, F.value_and_grad):
        with pytest.raises(error) as err:
            call(*args)
        assert fragment in str(err.value), str(err.value)


@pytest.mark.parametrize("fn, examples, fragment", [
    (lambda x: "x", (1.0,), "must return a Var"),
    (lambda x: None, (1.0,), "must return a Var"),
    (lambda x: {"out": x}, (1.0,), "must return a Var"),
    (lambda x: [x, "y"], (1.0,), "returned a str"),
    (lambda x: x, (tg.Var(1.0),), "is a Var"),
    (lambda x: x, ("abc",), "example argument 0"),
    (lambda x: x, (None,), "example argument 0"),
    (lambda x: x, (1 + 2j,), "example argument 0"),
    (42, (1.0,), "callable"),
])
def test_bad_trace_arguments(fn, examples, fragment):
    with pytest.raises(TypeError) as err:
        tg.trace(fn, *examples)
    assert fragment in str(err.value), str(err.value)


# ---------------------------------------------------------------------------- insight

def test_repr_node_counts_and_histogram():
    def scaled_sine(x, v):
        t = x * v[0]
        return tg.sin(t) + t * 2.0 + (v[1] if v[1] > 0 else -v[1])

    F = tg.trace(scaled_sine, 0.5, np.ones(3))
    assert F.ops_histogram() == {"mul": 2, "sin": 1, "add": 2}
    assert sum(F.ops_histogram().values()) == F.n_ops == 5
    assert F.n_nodes == 4 + 2 + 5  # inputs (1 + 3), constants (2.0 and the guard's 0), ops
    assert F.n_guards == 1
    assert repr(F) == ("<tapegrad.Function scaled_sine(scalar, 3) -> scalar: "
                       f"{F.n_nodes} nodes, 5 ops, 1 guards>")
    V = tg.trace(vec_fn, np.zeros(3))
    assert "vec_fn(3) -> 4:" in repr(V)
    assert sum(V.ops_histogram().values()) == V.n_ops


@settings(max_examples=60)
@given(program=programs(OPS))
def test_histogram_sums_to_the_op_count(program):
    for cse in (True, False):
        F = trace_program(program, cse=cse)
        h = F.ops_histogram()
        assert sum(h.values()) == F.n_ops and set(h) <= {op for op, _ in OPS}
        assert F.n_nodes >= F.n_ops + len(program[0])
        assert F.n_ops <= len(program[1])


def test_inputs_that_are_outputs_stay_inputs():
    """An input returned as an output (or compared in a guard) is still read from the
    call's arguments, never frozen at its trace-time value."""
    F = tg.trace(lambda x, y: (x, x * y, y), 1.0, 2.0)
    assert_bits(F(3.0, 4.0), [3.0, 12.0, 4.0])
    jx, jy = F.jacobian(3.0, 4.0)
    assert_bits(list(jx) + list(jy), [1.0, 4.0, 0.0, 0.0, 3.0, 1.0])
    G = tg.trace(lambda x: x, np.zeros(3))
    assert_bits(G(np.arange(3.0)), [0.0, 1.0, 2.0])
    H = tg.trace(lambda x: x if x > 0 else -x, 1.0, retrace=True)
    assert H(-2.5) == 2.5 and H(4.0) == 4.0
