"""tapegrad.optimize and the solver examples: IPOPT's callbacks (SparseNLP) against dense
derivatives, ipopt_problem on problems with known optima and against CasADi's IPOPT, and
scipy's trust-constr and least_squares with sparse derivatives against dense ones and
finite differences.

Tests that need cyipopt (the extra 'ipopt') skip without it, unless
TAPEGRAD_REQUIRE_IPOPT=1 (CI's IPOPT step), where a missing cyipopt fails."""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import tapegrad as tg
from tapegrad import optimize

ROOT = pathlib.Path(__file__).resolve().parents[1]


def example(name):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs_cyipopt():
    """Skip when cyipopt is not installed, unless TAPEGRAD_REQUIRE_IPOPT=1 (then fail)."""
    try:
        import cyipopt  # noqa: F401
    except ImportError as err:
        message = f"cyipopt is not installed (pip install '.[ipopt]'): {err}"
        if os.environ.get("TAPEGRAD_REQUIRE_IPOPT") == "1":
            pytest.fail(message + ", and TAPEGRAD_REQUIRE_IPOPT=1")
        pytest.skip(message)


# hs071, the problem of IPOPT's and cyipopt's tutorials: min x0 x3 (x0 + x1 + x2) + x2
# s.t. x0 x1 x2 x3 >= 25, |x|^2 = 40, 1 <= x <= 5.
def hs071_objective(x):
    return x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]


def hs071_constraints(x):
    return np.array([x[0] * x[1] * x[2] * x[3], x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2])


HS071_X = np.array([1.0, 4.74299963, 3.82114998, 1.37940829])
HS071_F = 17.014017145


# A problem with a little of everything: a banded objective with a nonlinear coupling, a
# linear constraint, one that involves every variable, and a variable (x7) that enters the
# objective linearly.
def mixed_objective(x):
    return sum((x[i + 1] - x[i] ** 2) ** 2 for i in range(5)) + tg.exp(x[0] * x[6]) + x[7]


def mixed_constraints(x):
    return np.array([x[1] + 2 * x[2], tg.sin(x[3]) * x[4], sum(x * x), x[6] / (1 + x[5] ** 2)])


def lagrangian_hessian_dense(objective, constraints, x, lam, sigma):
    """sigma * Hessian(f) + sum_k lam_k Hessian(g_k), each by a dense F.hessian."""
    Hf = tg.trace(objective, x).hessian(x)
    total = sigma * Hf
    m = len(lam)
    for k in range(m):
        Gk = tg.trace(lambda v, k=k: constraints(v)[k], x)
        total = total + lam[k] * Gk.hessian(x)
    return total


def test_sparse_nlp_matches_dense_derivatives():
    x = np.linspace(0.3, 1.1, 8)
    nlp = optimize.SparseNLP(mixed_objective, x, mixed_constraints)
    assert (nlp.n, nlp.m) == (8, 4)
    assert nlp.objective(x) == pytest.approx(float(tg.trace(mixed_objective, x)(x)), rel=1e-15)
    np.testing.assert_array_equal(nlp.gradient(x), tg.trace(mixed_objective, x).grad(x))
    G = tg.trace(mixed_constraints, x)
    np.testing.assert_array_equal(nlp.constraints(x), G(x))
    rows, cols = nlp.jacobianstructure()
    J = np.zeros((4, 8))
    J[rows, cols] = nlp.jacobian(x)
    np.testing.assert_allclose(J, G.jacobian(x), rtol=1e-14, atol=1e-15)
    assert len(rows) == np.count_nonzero(G.jacobian(x))  # this x has no accidental zeros
    lam, sigma = np.array([0.5, -1.5, 2.0, 0.25]), 0.7
    hrows, hcols = nlp.hessianstructure()
    assert (hrows >= hcols).all()  # the lower triangle, as IPOPT wants
    assert len(set(zip(hrows, hcols))) == len(hrows)
    Hl = np.zeros((8, 8))
    Hl[hrows, hcols] = nlp.hessian(x, lam, sigma)
    want = lagrangian_hessian_dense(mixed_objective, mixed_constraints, x, lam, sigma)
    np.testing.assert_allclose(np.tril(want), Hl, rtol=1e-13, atol=1e-13)
    # exact: the structure is the nonzeros of the dense Hessian (no accidental zeros here)
    assert set(zip(hrows, hcols)) == set(zip(*np.nonzero(np.tril(want))))


def test_structure_does_not_depend_on_the_multipliers():
    x = np.linspace(0.3, 1.1, 8)
    nlp = optimize.SparseNLP(mixed_objective, x, mixed_constraints)
    a = nlp.hessian(x, np.zeros(4), 0.0)  # IPOPT's restoration phase: all zero factors
    b = nlp.hessian(x, np.ones(4), 1.0)
    assert a.shape == b.shape == nlp.hessianstructure()[0].shape
    assert not a.any()


def test_unconstrained_problem():
    x = np.array([-1.2, 1.0, 0.5])
    f = lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2 + v[2] ** 4  # noqa: E731
    nlp = optimize.SparseNLP(f, x)
    assert (nlp.m, nlp.constraints_fn) == (0, None)
    assert nlp.constraints(x).shape == (0,) and nlp.jacobian(x).shape == (0,)
    assert [len(a) for a in nlp.jacobianstructure()] == [0, 0]
    rows, cols = nlp.hessianstructure()
    H = np.zeros((3, 3))
    H[rows, cols] = nlp.hessian(x, np.zeros(0), 2.0)
    np.testing.assert_allclose(H, np.tril(2 * tg.trace(f, x).hessian(x)), rtol=1e-15)


def test_timings_count_calls():
    x = np.linspace(0.3, 1.1, 8)
    nlp = optimize.SparseNLP(mixed_objective, x, mixed_constraints)
    for _ in range(3):
        nlp.gradient(x)
    nlp.hessian(x, np.ones(4), 1.0)
    assert nlp.timings["gradient"][0] == 3 and nlp.timings["hessian"][0] == 1
    assert nlp.derivative_seconds == pytest.approx(
        nlp.timings["gradient"][1] + nlp.timings["hessian"][1])
    assert nlp.intermediate(0, 7, *[0.0] * 9) is True and nlp.iterations == 7


def test_values_keep_the_structure_order_when_a_matrix_drops_zeros():
    P = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool))
    trip = optimize._Triplets(P, lower=True)
    assert list(zip(trip.rows, trip.cols)) == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
    M = sp.csr_matrix(np.array([[1.0, 2.0, 0], [2.0, 0.0, 4.0], [0, 4.0, 5.0]]))  # (1, 1) gone
    assert M.nnz == 6
    np.testing.assert_array_equal(trip.values(M), [1.0, 2.0, 0.0, 4.0, 5.0])
    full = sp.csr_matrix((np.arange(1.0, 8.0), P.indices, P.indptr), shape=P.shape)
    np.testing.assert_array_equal(trip.values(full), [1.0, 3.0, 4.0, 6.0, 7.0])


@pytest.mark.parametrize("x0, objective, match", [
    (np.zeros((2, 2)), lambda x: x[0, 0], "x0 must be a non-empty vector"),
    (np.zeros(0), lambda x: 0.0, "x0 must be a non-empty vector"),
    (np.zeros(3), lambda x: x * 2.0, "objective must return a scalar"),
])
def test_bad_problems_say_what_is_wrong(x0, objective, match):
    with pytest.raises(ValueError, match=match):
        optimize.SparseNLP(objective, x0)


def test_missing_cyipopt_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cyipopt", None)  # import cyipopt raises ImportError
    monkeypatch.setattr(optimize, "_PROBLEM_CLASS", None)
    with pytest.raises(ImportError, match=r"pip install \"tapegrad\[ipopt\]\""):
        optimize.ipopt_problem(lambda x: x[0] ** 2, np.ones(2))


# ---------------------------------------------------------------- IPOPT

QUIET = {"print_level": 0, "sb": "yes"}


def test_ipopt_solves_hs071():
    needs_cyipopt()
    x0 = np.array([1.0, 5.0, 5.0, 1.0])
    problem = optimize.ipopt_problem(hs071_objective, x0, hs071_constraints, lb=1.0, ub=5.0,
                                     cl=[25.0, 40.0], cu=[2e19, 40.0],
                                     options={**QUIET, "tol": 1e-10})
    x, info = problem.solve(x0)
    assert info["status"] == 0, info["status_msg"]
    np.testing.assert_allclose(x, HS071_X, rtol=1e-7)
    assert info["obj_val"] == pytest.approx(HS071_F, rel=1e-9)
    nlp = problem.nlp
    assert 5 <= nlp.iterations <= 20  # IPOPT's own log says 8
    assert {"objective", "gradient", "constraints", "jacobian", "hessian"} <= set(nlp.timings)
    assert nlp.derivative_seconds > 0


def test_ipopt_problem_defaults_equalities_and_no_bounds():
    needs_cyipopt()
    problem = optimize.ipopt_problem(lambda x: x[0] ** 2 + x[1] ** 2, np.array([2.0, 2.0]),
                                     lambda x: np.array([x[0] + x[1]]), cl=1.0, cu=1.0,
                                     options=QUIET)
    x, info = problem.solve(np.array([2.0, 2.0]))
    assert info["status"] == 0
    np.testing.assert_allclose(x, [0.5, 0.5], atol=1e-8)
    # cl, cu default to 0: g(x) = 0
    problem = optimize.ipopt_problem(lambda x: (x[0] - 3) ** 2 + x[1] ** 2, np.zeros(2),
                                     lambda x: np.array([x[0] - 2 * x[1]]), options=QUIET)
    x, info = problem.solve(np.zeros(2))
    np.testing.assert_allclose(x, [2.4, 1.2], atol=1e-8)  # projection onto x0 = 2 x1


def test_ipopt_unconstrained_rosenbrock():
    needs_cyipopt()
    d = 50
    f = lambda x: sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa: E731
    problem = optimize.ipopt_problem(f, np.full(d, 0.5), options={**QUIET, "tol": 1e-12})
    x, info = problem.solve(np.full(d, 0.5))
    assert info["status"] == 0
    np.testing.assert_allclose(x, np.ones(d), atol=1e-8)
    assert type(problem).__name__ == "IpoptProblem"


def test_pendulum_example_converges_and_agrees_with_casadi():
    needs_cyipopt()
    P = example("pendulum_swingup")
    ours = P.solve_tapegrad(60)
    assert ours["converged"], ours["status"]
    z = ours["z"].reshape(-1, 3)
    assert np.abs(z[:, 2]).max() <= P.U_MAX + 1e-8  # the torque bound holds
    np.testing.assert_allclose(z[[0, -1], :2], [[0.0, 0.0], [np.pi, 0.0]], atol=1e-12)
    assert ours["nnz_hessian"] == 2 * 61  # sin(theta) and u^2: a diagonal Hessian
    pytest.importorskip("casadi")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # casadi dlopens its IPOPT plugin with RTLD_DEEPBIND, which the sanitizer runtime
        # refuses (google/sanitizers#611) and aborts the process; the plain suite runs it.
        pytest.skip("casadi's IPOPT plugin cannot load under ASan (RTLD_DEEPBIND)")
    theirs = P.solve_casadi(60)
    assert theirs["converged"]
    dcost, dz = P.compare(ours, theirs)
    assert dcost <= 1e-6 and dz <= 1e-4, (dcost, dz)


def test_pendulum_example_check_mode(capsys):
    needs_cyipopt()
    P = example("pendulum_swingup")
    assert P.main(["--intervals", "40", "--check", "--no-casadi"]) == 0
    assert "check: ok" in capsys.readouterr().out


def test_docs_page_runs_with_its_ipopt_blocks():
    """docs/sparse.md marks its IPOPT blocks skip (the main suite has no cyipopt); with
    cyipopt the whole page runs here, in order."""
    needs_cyipopt()
    from test_docs_examples import python_blocks, run_block

    blocks = python_blocks(ROOT / "docs" / "sparse.md")
    assert any(b.skip and "cyipopt" in b.skip for b in blocks)
    namespace = {"__name__": "docs:sparse.md"}
    for block in blocks:
        run_block(block, namespace)


# ---------------------------------------------------------------- scipy


def test_trust_constr_with_a_sparse_hessian():
    RC = example("rosenbrock_trust_constr")
    runs = RC.run(300)
    assert [r["label"] for r in runs] == ["tapegrad sparse Hessian", "tapegrad dense Hessian",
                                          "finite differences of the gradient"]
    for r in runs:
        np.testing.assert_allclose(r["x"], 1.0, atol=1e-8)
    # the sparse and the dense Hessian agree, so trust-constr takes the same path
    assert runs[0]["iterations"] == runs[1]["iterations"]
    np.testing.assert_allclose(runs[0]["x"], runs[1]["x"], atol=1e-12)


def test_trust_constr_example_check_mode(capsys):
    RC = example("rosenbrock_trust_constr")
    assert RC.main(["--dim", "200", "--check"]) == 0
    assert "check: ok" in capsys.readouterr().out


def test_least_squares_with_a_sparse_jacobian(capsys):
    B = example("broyden_least_squares")
    runs = B.solve(1000)
    for r in runs:
        assert r["res"].success and np.abs(r["res"].fun).max() <= 1e-10
    np.testing.assert_allclose(runs[0]["res"].x, runs[1]["res"].x, atol=1e-10)
    R = tg.trace(B.residual, -np.ones(1000))
    J = R.jacobian(runs[0]["res"].x, sparse=True)
    assert sp.issparse(J) and J.nnz == 3 * 1000 - 2
    assert B.main(["--n", "500", "--check"]) == 0
    assert "check: ok" in capsys.readouterr().out
