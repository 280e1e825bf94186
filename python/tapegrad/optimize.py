"""Sparse derivatives for optimisation solvers: IPOPT through cyipopt.

``ipopt_problem(objective, x0, constraints)`` traces the objective, the constraints and
their Lagrangian once and returns a ``cyipopt.Problem`` that hands IPOPT the sparsity
structures of the constraint Jacobian and of the Lagrangian's Hessian once, and their
values at each iterate (IPOPT's exact-Hessian interior point method). cyipopt is the
optional extra ``ipopt``: ``pip install "tapegrad[ipopt]"``, which builds against the
system's IPOPT (Debian: ``apt install coinor-libipopt-dev pkg-config liblapack-dev
libblas-dev``).

The callbacks themselves are a ``SparseNLP``, which needs no cyipopt: the same values
and structures for any solver that takes IPOPT's form (triplets, the Hessian's lower
triangle).

scipy's solvers need nothing from here, only the traced Function's methods::

    F = tg.trace(f, x0)                                    # scalar f
    minimize(F, x0, jac=F.grad, hess=lambda x: F.hessian(x, sparse=True),
             method="trust-constr")
    R = tg.trace(residual, x0)                             # vector residual
    least_squares(R, x0, jac=lambda x: R.jacobian(x, sparse=True))
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .function import Function, trace

__all__ = ["SparseNLP", "ipopt_problem"]

# The derivative callbacks (each evaluates a sparse or dense derivative); the others
# evaluate values only.
DERIVATIVE_CALLBACKS = ("gradient", "jacobian", "hessian")


class SparseNLP:
    """The problem min f(x) subject to g(x) within bounds, traced once, with the callbacks
    IPOPT (through cyipopt) calls: values, the objective's gradient, and the constraint
    Jacobian and the Lagrangian's Hessian as sparse triplets whose structure is fixed.

    ``objective(x)`` returns a scalar and ``constraints(x)`` a vector (a numpy object
    array of Vars, or a list), each of a vector ``x`` shaped like ``x0``. The Lagrangian
    ``L(x, lam, sigma) = sigma * f(x) + lam @ g(x)`` is traced as a third Function whose
    Hessian with respect to ``x`` (``L.hessian(x, lam, sigma, sparse=True, wrt=0)``)
    IPOPT gets as its lower triangle.

    Attributes: ``n`` and ``m`` (variables and constraints), ``objective_fn``,
    ``constraints_fn`` (None without constraints) and ``lagrangian_fn`` (the traced
    Functions), ``timings`` (per callback: calls and seconds spent in it),
    ``iterations`` (IPOPT's count, kept by the ``intermediate`` callback).

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> nlp = tg.optimize.SparseNLP(lambda x: (x[0] - 1) ** 2 + x[1] ** 2, np.zeros(3),
        ...                             lambda x: np.array([x[0] * x[1] - x[2]]))
        >>> nlp.n, nlp.m
        (3, 1)
        >>> nlp.jacobianstructure()   # rows, columns: g depends on x0, x1, x2
        (array([0, 0, 0], dtype=int32), array([0, 1, 2], dtype=int32))
        >>> nlp.jacobian(np.array([2.0, 3.0, 4.0]))
        array([ 3.,  2., -1.])
        >>> nlp.hessianstructure()    # lower triangle: (0, 0), (1, 0), (1, 1)
        (array([0, 1, 1], dtype=int32), array([0, 0, 1], dtype=int32))
        >>> nlp.hessian(np.array([2.0, 3.0, 4.0]), np.array([5.0]), 1.0)
        array([2., 5., 2.])
    """

    def __init__(self, objective: Callable, x0: Any, constraints: Callable | None = None):
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.ndim != 1 or x0.size == 0:
            raise ValueError(f"SparseNLP: x0 must be a non-empty vector, got shape {x0.shape}")
        self.n = x0.size
        self.objective_fn = trace(objective, x0)
        if self.objective_fn.out_shape != ():
            raise ValueError("SparseNLP: objective must return a scalar, got shape "
                             f"{self.objective_fn.out_shape}")
        self.constraints_fn: Function | None = None
        self.m = 0
        if constraints is not None:
            self.constraints_fn = trace(constraints, x0)
            self.m = int(np.prod(self.constraints_fn.out_shape))
        if self.m:
            def lagrangian(x, lam, sigma):
                g = np.asarray(constraints(x), dtype=object).ravel()
                return sigma * objective(x) + np.dot(lam, g)

            self.lagrangian_fn = trace(lagrangian, x0, np.zeros(self.m), 1.0)
        else:
            self.lagrangian_fn = trace(lambda x, sigma: sigma * objective(x), x0, 1.0)
        self._jac = _Triplets(self.constraints_fn.jacobian_sparsity()) if self.m else None
        self._hess = _Triplets(self.lagrangian_fn.hessian_sparsity(wrt=0), lower=True)
        self.timings: dict[str, list] = {}  # callback -> [calls, seconds]
        self.iterations = 0

    # -- what IPOPT calls ------------------------------------------------------------

    def objective(self, x: np.ndarray) -> float:
        """f(x)."""
        with self._timed("objective"):
            return float(self.objective_fn(x))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The gradient of f at x, shape (n,)."""
        with self._timed("gradient"):
            return self.objective_fn.grad(x)

    def constraints(self, x: np.ndarray) -> np.ndarray:
        """g(x), shape (m,)."""
        with self._timed("constraints"):
            if self.constraints_fn is None:
                return np.zeros(0)
            return np.reshape(self.constraints_fn(x), (self.m,))

    def jacobianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) of the constraint Jacobian's structural nonzeros."""
        if self._jac is None:
            return _EMPTY, _EMPTY
        return self._jac.rows, self._jac.cols

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """The constraint Jacobian's values at x, in jacobianstructure's order."""
        with self._timed("jacobian"):
            if self._jac is None:
                return np.zeros(0)
            return self._jac.values(self.constraints_fn.jacobian(x, sparse=True))

    def hessianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) of the lower triangle of the Lagrangian's Hessian."""
        return self._hess.rows, self._hess.cols

    def hessian(self, x: np.ndarray, lagrange: np.ndarray, obj_factor: float) -> np.ndarray:
        """The Hessian of ``obj_factor * f + lagrange @ g`` at x, in hessianstructure's
        order."""
        with self._timed("hessian"):
            args = (x, lagrange, obj_factor) if self.m else (x, obj_factor)
            return self._hess.values(self.lagrangian_fn.hessian(*args, sparse=True, wrt=0))

    def intermediate(self, alg_mod: int, iter_count: int, *info: float) -> bool:
        """IPOPT's per-iteration callback: records the iteration count (``iterations``)."""
        self.iterations = iter_count
        return True

    # -- insight -----------------------------------------------------------------------

    @property
    def derivative_seconds(self) -> float:
        """Seconds spent so far in the gradient, Jacobian and Hessian callbacks."""
        return sum(self.timings.get(k, (0, 0.0))[1] for k in DERIVATIVE_CALLBACKS)

    def _timed(self, name: str) -> _Timer:
        return _Timer(self.timings.setdefault(name, [0, 0.0]))


_EMPTY = np.zeros(0, dtype=np.int32)


class _Timer:
    __slots__ = ("entry", "t0")

    def __init__(self, entry: list):
        self.entry = entry

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.entry[0] += 1
        self.entry[1] += time.perf_counter() - self.t0


class _Triplets:
    """A fixed sparsity structure as (rows, cols) in CSR order, and the map from a CSR
    matrix of values with that structure to the values in that order."""

    def __init__(self, pattern: Any, lower: bool = False):
        P = pattern.tocsr()
        P.sort_indices()
        self.indptr, self.indices = P.indptr.copy(), P.indices.copy()
        rows = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
        keep = rows >= P.indices if lower else np.ones(P.nnz, dtype=bool)
        self.take = np.flatnonzero(keep)
        self.rows = rows[keep].astype(np.int32)
        self.cols = P.indices[keep].astype(np.int32)

    def values(self, M: Any) -> np.ndarray:
        if not M.has_sorted_indices:
            M = M.copy()
            M.sort_indices()
        if np.array_equal(M.indptr, self.indptr) and np.array_equal(M.indices, self.indices):
            return M.data[self.take]
        # another structure (explicit zeros dropped, say): look each entry up
        return np.asarray(M[self.rows, self.cols], dtype=np.float64).ravel()


def _cyipopt():
    try:
        import cyipopt
    except ImportError as err:
        raise ImportError(
            "tapegrad.optimize.ipopt_problem needs cyipopt, the optional extra 'ipopt': "
            "pip install \"tapegrad[ipopt]\" (it builds against the system's IPOPT; on "
            "Debian: apt install coinor-libipopt-dev pkg-config liblapack-dev libblas-dev)"
        ) from err
    return cyipopt


_PROBLEM_CLASS: type | None = None


def _problem_class() -> type:
    global _PROBLEM_CLASS
    if _PROBLEM_CLASS is None:
        cyipopt = _cyipopt()

        class Problem(cyipopt.Problem):
            """A cyipopt.Problem whose callbacks are a tapegrad SparseNLP (``.nlp``)."""

        Problem.__module__, Problem.__qualname__ = __name__, "IpoptProblem"
        Problem.__name__ = "IpoptProblem"
        _PROBLEM_CLASS = Problem
    return _PROBLEM_CLASS


def ipopt_problem(objective: Callable, x0: Any, constraints: Callable | None = None, *,
                  lb: Any = None, ub: Any = None, cl: Any = None, cu: Any = None,
                  options: dict[str, Any] | None = None) -> Any:
    """An IPOPT problem (``cyipopt.Problem``) for min objective(x) subject to
    ``cl <= constraints(x) <= cu`` and ``lb <= x <= ub``, with exact sparse derivatives.

    ``objective`` and ``constraints`` are traced once at ``x0`` (a vector) into a
    ``SparseNLP``, the problem's ``.nlp``: its Jacobian and Hessian structures go to IPOPT
    once, their values at every iterate. ``lb``, ``ub`` (default: unbounded) are bounds on
    x, scalars or vectors; ``cl``, ``cu`` on the constraints (default 0 and 0: equalities).
    ``options`` are IPOPT options (``problem.add_option``), e.g. ``{"print_level": 0}``.
    Solve with ``x, info = problem.solve(x0)``; ``problem.nlp.timings`` then holds the
    calls and seconds per callback. Needs cyipopt (the extra ``ipopt``).

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> problem = tg.optimize.ipopt_problem(             # doctest: +SKIP
        ...     lambda x: x[0] ** 2 + x[1] ** 2, np.array([2.0, 2.0]),
        ...     lambda x: np.array([x[0] + x[1]]), cl=1.0, cu=1.0,
        ...     options={"print_level": 0, "sb": "yes"})
        >>> x, info = problem.solve(np.array([2.0, 2.0]))    # doctest: +SKIP
        >>> x.round(6), info["status"]                       # doctest: +SKIP
        (array([0.5, 0.5]), 0)
    """
    nlp = SparseNLP(objective, x0, constraints)
    n, m = nlp.n, nlp.m

    def bounds(value: Any, default: float, size: int) -> np.ndarray:
        out = np.full(size, default) if value is None else \
            np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy()
        return out

    problem = _problem_class()(
        n=n, m=m, problem_obj=nlp,
        lb=bounds(lb, -np.inf, n), ub=bounds(ub, np.inf, n),
        cl=bounds(cl, 0.0, m), cu=bounds(cu, 0.0, m))
    problem.nlp = nlp
    for key, value in (options or {}).items():
        problem.add_option(key, value)
    return problem
