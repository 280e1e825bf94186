"""Sparse Jacobians and Hessians of a traced Function.

A program knows its exact dependency structure, so the sparsity pattern of its Jacobian
or Hessian is read off it without evaluating anything (C++: csrc/tapegrad/sparsity.cpp).
A coloring then groups columns that never meet in a row, and each group is one seed
vector: a Jacobian takes one tangent sweep per color of its columns, or one adjoint sweep
per color of its rows, whichever needs fewer; a Hessian takes one Hessian-vector product
per color of a star coloring. The seeds run as one batch through the lanes, and every
structural nonzero is read directly out of the compressed products.

``Function.jacobian_sparsity``, ``hessian_sparsity``, ``jacobian(..., sparse=True)``,
``hessian(..., sparse=True)`` and ``coloring`` are the entry points; this module holds
their machinery. scipy is needed for the ``scipy.sparse`` results (extra ``sparse``).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core

if TYPE_CHECKING:
    from .function import Function


def _scipy_sparse() -> Any:
    try:
        import scipy.sparse
    except ImportError as err:  # pragma: no cover - the test extra installs scipy
        raise ImportError("sparse derivatives return scipy.sparse matrices: "
                          "pip install 'tapegrad[sparse]' (or scipy)") from err
    return scipy.sparse


@dataclasses.dataclass(frozen=True)
class Coloring:
    """How a sparse Jacobian or Hessian is compressed: its pattern, the seed colors and
    what finding them cost.

    ``mode`` is ``"forward"`` (one tangent sweep per color of the columns), ``"reverse"``
    (one adjoint sweep per color of the rows) or ``"star"`` (a Hessian: one
    Hessian-vector product per color of a star coloring). ``colors[k]`` is column k's
    color (row k's in reverse mode); ``n_colors`` is how many sweeps an evaluation runs.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: sum((x[1:] - x[:-1] ** 2) ** 2), np.zeros(6))
        >>> c = F.coloring("hessian")
        >>> c.mode, c.n_colors, c.pattern.nnz  # tridiagonal: 3 colors for any size
        ('star', 3, 16)
    """
    kind: str
    mode: str
    pattern: Any = dataclasses.field(repr=False)  # scipy.sparse.csr_matrix of bool
    colors: np.ndarray = dataclasses.field(repr=False)
    n_colors: int
    pattern_seconds: float
    coloring_seconds: float
    # Evaluation: flat index of each nonzero in the compressed products as the sweeps
    # return them, the inputs (flat, over all arguments) the rows/columns stand for.
    _gather: np.ndarray = dataclasses.field(repr=False, compare=False)
    _inputs: np.ndarray = dataclasses.field(repr=False, compare=False)
    # The Hessian plan (star mode) or the seed matrix, made at the first evaluation.
    _plan: Any = dataclasses.field(default=None, repr=False, compare=False)
    # Star mode: how many evaluations held before the recorded Hessian program was tried
    # (at the second).
    _evaluations: int = dataclasses.field(default=0, repr=False, compare=False)

    @property
    def recorded_ops(self) -> int:
        """Star mode: the op count of the recorded Hessian program that evaluations
        replay (0: none yet, the second evaluation records it; or it would be larger
        than ``RECORD_OPS_PER_OP`` allows)."""
        return 0 if self._plan is None or self.mode != "star" else self._plan.recorded_ops


# A sparse Hessian is recorded as a program of its own (csrc/tapegrad/hessian_program.hpp)
# unless that takes more op slots than this many per op of the function's program (or
# RECORD_MIN_OPS, whichever is larger); 0 keeps every evaluation on the plan's sweeps.
RECORD_OPS_PER_OP = 32
RECORD_MIN_OPS = 1 << 16


def wrt_inputs(F: Function, wrt: Any) -> np.ndarray:
    """The flat input indices of the arguments listed in ``wrt`` (None: all of them)."""
    n_args = len(F._arg_shapes)
    if wrt is None:
        return np.arange(F._offsets[-1], dtype=np.int64)
    ks = (wrt,) if isinstance(wrt, (int, np.integer)) and not isinstance(wrt, bool) else wrt
    if not isinstance(ks, (tuple, list)) or not ks or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in ks):
        raise TypeError(f"wrt: an argument index or a tuple of them, got {wrt!r}")
    ks = [int(k) + n_args if k < 0 else int(k) for k in ks]
    if any(not 0 <= k < n_args for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"wrt: argument indices must be distinct and in range for a "
                         f"Function of {n_args} argument(s), got {wrt!r}")
    return np.concatenate([np.arange(F._offsets[k], F._offsets[k + 1], dtype=np.int64)
                           for k in sorted(ks)])


def _csr(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int]) -> Any:
    sp = _scipy_sparse()
    return sp.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=shape)


def _select(P: Any, rows: np.ndarray | None, cols: np.ndarray) -> Any:
    """P restricted to these rows (None: all) and columns, rows' columns ascending."""
    full = P.shape[1] == len(cols) and (rows is None or P.shape[0] == len(rows))
    if not full:
        P = P[:, cols] if rows is None else P[rows][:, cols]
        P = P.tocsr()
        P.sort_indices()
    return P


def pattern(F: Function, program: Any, kind: str, wrt: Any) -> tuple[Any, np.ndarray, float]:
    """The pattern (bool CSR) of F's Jacobian or Hessian over the inputs of ``wrt``, the
    inputs, and the seconds it took."""
    inputs = wrt_inputs(F, wrt)
    t0 = time.perf_counter()
    if kind == "jacobian":
        indptr, indices = _core.jacobian_pattern(program)
        P = _select(_csr(indptr, indices, (F._n_out, F._offsets[-1])), None, inputs)
    else:
        if F._n_out != 1:
            raise ValueError(f"a Hessian needs a scalar function; this one returns shape "
                             f"{F._out_shape}")
        indptr, indices = _core.hessian_pattern(program)
        n = F._offsets[-1]
        P = _select(_csr(indptr, indices, (n, n)), inputs, inputs)
    return P, inputs, time.perf_counter() - t0


def coloring(F: Function, program: Any, kind: str, wrt: Any) -> Coloring:
    """The pattern and seed coloring of F's Jacobian ("jacobian") or Hessian ("hessian")
    for this program, cached on F."""
    if kind not in ("jacobian", "hessian"):
        raise ValueError(f"kind: 'jacobian' or 'hessian', got {kind!r}")
    key = (kind, id(program), None if wrt is None else tuple(np.atleast_1d(wrt).tolist()))
    cached = F._colorings.get(key)
    if cached is not None:
        return cached
    P, inputs, pattern_s = pattern(F, program, kind, wrt)
    t0 = time.perf_counter()
    m, n = P.shape
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(P.indptr))
    if kind == "hessian":
        colors = _core.star_color(P.indptr, P.indices)
        at = _core.star_recovery(P.indptr, P.indices, colors)  # color * n + row
        k = int(colors.max()) + 1 if n else 0
        gather = inputs[at % max(n, 1)] * k + at // max(n, 1)  # in Program.hessian_columns'
        mode = "star"
    else:
        by_column = _core.color_columns(P.indptr, P.indices, n)
        T = P.T.tocsr()
        T.sort_indices()
        by_row = _core.color_columns(T.indptr, T.indices, m)
        k_col = int(by_column.max()) + 1 if n else 0
        k_row = int(by_row.max()) + 1 if m else 0
        if k_col <= k_row:  # a tangent sweep costs less than an adjoint sweep
            mode, colors = "forward", by_column
            gather = colors[P.indices].astype(np.int64) * m + rows
        else:
            mode, colors = "reverse", by_row
            gather = colors[rows].astype(np.int64) * F._offsets[-1] + inputs[P.indices]
    n_colors = int(colors.max()) + 1 if len(colors) else 0
    result = Coloring(kind, mode, P, colors, n_colors, pattern_s,
                      time.perf_counter() - t0, gather, inputs)
    F._colorings[key] = result
    return result


def _compressed(F: Function, program: Any, c: Coloring, x: np.ndarray) -> tuple[Any, int]:
    """The compressed products at x on this program, as the sweeps return them (C order),
    and the failing guard (or -1)."""
    n_all = F._offsets[-1]
    m, p = c.pattern.shape[0], c.n_colors
    if c._plan is None:  # made once per Coloring (a race makes two equal ones)
        if c.mode == "star":  # the Hessian plan: per color, the union of its inputs' cones;
            # each nonzero's (input, color) in the compressed products
            plan = program.hessian_plan([c._inputs[c.colors == k].tolist() for k in range(p)],
                                        c._gather // p, c._gather % p)
        else:  # the seed vectors, one row per color
            plan = np.zeros((p, n_all if c.mode == "forward" else m))
            plan[c.colors, c._inputs if c.mode == "forward" else np.arange(m)] = 1.0
        object.__setattr__(c, "_plan", plan)
    if c.mode == "star":  # the nonzeros themselves, in c._gather's order
        data, failed = program.hessian_entries(x, c._plan)
        if failed < 0 and c._evaluations < 2:
            # A one-off Hessian does not pay for recording; the second one records, at a
            # point whose branches hold.
            object.__setattr__(c, "_evaluations", c._evaluations + 1)
            max_ops = RECORD_OPS_PER_OP * program.n_ops
            if c._evaluations == 2 and max_ops:
                program.record_hessian(x, c._plan, max(max_ops, RECORD_MIN_OPS))
        return data, failed
    if c.mode == "forward":
        _, tout, _, failed = program.point_sweeps(x, tangents=c._plan)
        return tout, failed
    _, _, grads, failed = program.point_sweeps(x, seeds=c._plan)
    return grads, failed


def evaluate(F: Function, args: Sequence[Any], kind: str, wrt: Any) -> Any:
    """F's Jacobian or Hessian at one point as a scipy.sparse CSR matrix."""
    from .function import Mode

    arrays, batch = F._arrays(args)
    if batch != ():
        raise ValueError(f"sparse=True takes one point (the traced shapes); these arguments "
                         f"have batch dimensions {batch}: call it once per point")
    if kind == "hessian" and F._n_out != 1:
        raise ValueError(f"hessian needs a scalar function; this one returns shape "
                         f"{F._out_shape}")
    sp = _scipy_sparse()
    x = (np.concatenate([a.reshape(-1) for a in arrays]) if len(arrays) != 1
         else np.ascontiguousarray(arrays[0].reshape(-1)))
    # The first program whose guards hold at x; past them all, a retrace (retrace=True)
    # or the TraceError a replay raises.
    programs, retraced = list(F._programs), False
    while True:
        for program in programs:
            c = coloring(F, program, kind, wrt)
            if not len(c._gather):  # no structural nonzero
                if program.point(x, Mode.VALUE)[2] < 0:
                    return sp.csr_matrix(c.pattern.shape, dtype=np.float64)
                continue
            flat, failed = _compressed(F, program, c, x)
            if failed < 0:
                data = flat if c.mode == "star" else flat.reshape(-1)[c._gather]
                F._checked(args, (data,), True)
                return sp.csr_matrix((data, c.pattern.indices, c.pattern.indptr),
                                     shape=c.pattern.shape)
        if retraced:  # pragma: no cover - a fresh trace at x takes x's branch
            raise RuntimeError("the program traced at this point fails its own guards")
        F._eval_point(x, Mode.VALUE)  # retraces (retrace=True), else raises TraceError
        programs, retraced = [F._programs[-1]], True
