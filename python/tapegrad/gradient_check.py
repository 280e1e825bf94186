"""Is the gradient right? ``gradcheck`` holds the C++ gradient against two independent
oracles: central finite differences of fn's value, and the pure-Python reference backend
run on exactly the graph the C++ tape recorded. When the reference disagrees, it also
names the first node (nearest the root) whose local rule differs between the two op
tables.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._core import Var
from .function import _placeholder
from .graph import topo_order

__all__ = ["GradcheckError", "GradcheckReport", "InputCheck", "RuleMismatch", "gradcheck"]


class GradcheckError(AssertionError):
    """gradcheck(..., raise_exception=True) failed. An AssertionError because a failed
    gradcheck is a failed claim about the code (as under pytest), not a bad argument.
    The report is attached as ``.report``."""

    def __init__(self, report: GradcheckReport):
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class InputCheck:
    """One scalar input: the C++ gradient against finite differences and the reference."""

    name: str              # "x", or "w[1, 2]" for an element of an array argument
    value: float
    grad: float            # the C++ gradient (the traced replay's, for a Function)
    fd: float              # central finite differences (6-point stencil)
    ref: float | None      # the reference backend on the same graph (None: not run)
    fd_abs: float
    fd_rel: float
    ref_abs: float | None
    ref_rel: float | None
    fd_ok: bool
    ref_ok: bool

    @property
    def ok(self) -> bool:
        return self.fd_ok and self.ref_ok


@dataclass(frozen=True)
class RuleMismatch:
    """A node whose local derivative differs between the C++ and the reference op tables
    (both evaluated with adjoint 1 at the node's recorded inputs)."""

    op: str
    position: int          # the node's index in topological order (0 = first input)
    input_values: tuple[float, ...]
    cpp: tuple[float, ...]
    ref: tuple[float, ...]

    def __str__(self) -> str:
        args = ", ".join(f"{x:.6g}" for x in self.input_values)
        return (f"{self.op}({args}) at node #{self.position}: local grads C++ "
                f"{_fmt_tuple(self.cpp)} vs reference {_fmt_tuple(self.ref)}")


@dataclass
class GradcheckReport:
    """What ``gradcheck`` found; ``ok`` is True when every check passed."""

    inputs: list[InputCheck]
    value: float                       # fn's C++ value at the point
    ref_value: float | None            # the reference's value of the same graph
    traced: bool                       # fn was a traced Function
    eps: float
    rtol: float
    atol: float
    ref_rtol: float
    ref_atol: float
    value_ok: bool = True
    rule_mismatches: list[RuleMismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value_ok and not self.rule_mismatches and all(c.ok for c in self.inputs)

    @property
    def failures(self) -> list[InputCheck]:
        return [c for c in self.inputs if not c.ok]

    @property
    def max_fd_error(self) -> float:
        return max((c.fd_abs for c in self.inputs), default=0.0)

    @property
    def max_ref_error(self) -> float:
        return max((c.ref_abs for c in self.inputs if c.ref_abs is not None), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def __str__(self) -> str:
        kind = "traced Function" if self.traced else "eager fn"
        head = (f"gradcheck {'passed' if self.ok else 'FAILED'} ({kind}, {len(self.inputs)} "
                f"input(s), eps={self.eps:g}; vs finite differences rtol={self.rtol:g} "
                f"atol={self.atol:g}, vs reference rtol={self.ref_rtol:g} atol={self.ref_atol:g})")
        lines = [head]
        if not self.value_ok:
            lines.append(f"  value differs: C++ {self.value!r}, reference {self.ref_value!r}")
        rows = [("input", "value", "C++ grad", "finite diff", "abs err", "reference", "abs err",
                 "")]
        for c in self.inputs:
            rows.append((c.name, f"{c.value:.6g}", f"{c.grad:.10g}", f"{c.fd:.10g}",
                         f"{c.fd_abs:.2e}", "—" if c.ref is None else f"{c.ref:.10g}",
                         "—" if c.ref_abs is None else f"{c.ref_abs:.2e}",
                         "ok" if c.ok else "<-- " + " and ".join(
                             w for w, bad in (("finite diff", not c.fd_ok),
                                              ("reference", not c.ref_ok)) if bad)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip() for r in rows]
        if self.rule_mismatches:
            lines.append("  local rules that differ between the C++ and reference tables "
                         "(nearest the root first):")
            lines += [f"    {m}" for m in self.rule_mismatches[:5]]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


_STENCIL = ((3, 1.0), (2, -9.0), (1, 45.0), (-1, -45.0), (-2, 9.0), (-3, -1.0))  # / 60 h


def gradcheck(fn: Callable | Any, *args: Any, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-6, ref_rtol: float = 1e-9, ref_atol: float = 1e-12,
              raise_exception: bool = False) -> GradcheckReport:
    """Check fn's C++ gradient at ``args`` against finite differences and the reference.

    ``fn`` is a Python function of numbers and arrays returning a scalar Var (run eagerly;
    an array argument reaches it as a numpy object array of Vars, as in ``tg.trace``), or a
    traced ``tapegrad.Function`` (its replayed ``F.grad`` is checked, and ``F.fn``
    is run eagerly once to get the graph for the reference).

    Finite differences use the 6-point central stencil (error O(eps^6) + about
    2e-16 |f| / eps), accepted when ``|grad - fd| <= atol + rtol |fd|``. The reference runs
    the very graph C++ recorded, op by op, through ``tapegrad.reference``'s table, so it
    must agree to a few ulps: ``ref_rtol`` / ``ref_atol``. NaN matches NaN and an infinity
    the same infinity. Returns a ``GradcheckReport``; with ``raise_exception=True`` a
    failure raises ``GradcheckError`` (an ``AssertionError``) carrying the report.

    Examples:
        >>> import tapegrad as tg
        >>> report = tg.gradcheck(lambda x, y: x * tg.sin(y), 0.5, 1.5)
        >>> report.ok
        True
        >>> print(report)
        gradcheck passed (eager fn, 2 input(s), ...)
        ...
    """
    from .function import Function

    traced = isinstance(fn, Function)
    if not traced and not callable(fn):
        raise TypeError(f"gradcheck: fn must be callable or a tapegrad.Function, got "
                        f"{type(fn).__name__}")
    if traced and fn.out_shape != ():
        raise ValueError(f"gradcheck: fn must return a scalar, this Function returns shape "
                         f"{fn.out_shape}")
    arrays = [_as_array(a, k) for k, a in enumerate(args)]
    shapes = [a.shape for a in arrays]
    point = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    py_fn = fn.fn if traced else fn
    names = _input_names(py_fn, shapes)
    notes: list[str] = []

    # The graph, recorded eagerly with C++ Vars (also the C++ gradient of an eager fn).
    root, leaves = (None, None)
    if py_fn is not None:
        root, leaves = _record(py_fn, arrays)
        root.backward()
    elif traced:
        notes.append("this Function carries no Python fn (unpickled without retrace=True): "
                     "the reference check was skipped")

    if traced:
        value, g = fn.value_and_grad(*arrays)
        value = float(value)
        parts = list(g) if len(arrays) > 1 else [g]
        grads = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts]) \
            if parts else np.zeros(0)
    else:
        value = root.value
        grads = np.array([leaf.grad for leaf in leaves], dtype=np.float64)

    def f_at(x: np.ndarray) -> float:
        xs = _unflatten(x, shapes)
        if traced:
            return float(fn(*xs))
        out, _ = _record(py_fn, xs)
        return out.value

    fd = np.empty(point.size)
    for i in range(point.size):
        total = 0.0
        for k, c in _STENCIL:
            x = point.copy()
            x[i] += k * eps
            total += c * f_at(x)
        fd[i] = total / (60.0 * eps)

    ref_grads: list[float] | None = None
    ref_value = None
    value_ok = True
    mismatches: list[RuleMismatch] = []
    if root is not None:
        ref_value, ref_grads, mismatches, value_ok = _reference_check(
            root, leaves, ref_rtol, ref_atol)
        if traced and mismatches == [] and not all(
                _close(a, b, ref_rtol, ref_atol) for a, b in zip(grads, ref_grads)):
            eager = [leaf.grad for leaf in leaves]
            if all(_close(a, b, ref_rtol, ref_atol) for a, b in zip(eager, ref_grads)):
                notes.append("the eager C++ tape agrees with the reference but the traced "
                             "replay does not: suspect the compiled program, not an op rule")
        if not value_ok:
            notes.append("the C++ and reference forward values differ on the same graph")
        bad = [i for i, (a, b) in enumerate(zip(grads, ref_grads))
               if not _close(a, b, ref_rtol, ref_atol)]
        if bad:
            fd_side = ["C++" if _close(grads[i], fd[i], rtol, atol)
                       else "reference" if _close(ref_grads[i], fd[i], rtol, atol) else None
                       for i in bad]
            if all(side == fd_side[0] for side in fd_side) and fd_side[0] is not None:
                other = "reference" if fd_side[0] == "C++" else "C++"
                notes.append(f"finite differences side with {fd_side[0]}: suspect the {other} "
                             "rule")

    checks = []
    for i, name in enumerate(names):
        g, d = float(grads[i]), float(fd[i])
        r = None if ref_grads is None else float(ref_grads[i])
        checks.append(InputCheck(
            name=name, value=float(point[i]), grad=g, fd=d, ref=r,
            fd_abs=_abs_err(g, d), fd_rel=_rel_err(g, d),
            ref_abs=None if r is None else _abs_err(g, r),
            ref_rel=None if r is None else _rel_err(g, r),
            fd_ok=_close(g, d, rtol, atol),
            ref_ok=True if r is None else _close(g, r, ref_rtol, ref_atol)))
    report = GradcheckReport(checks, value, ref_value, traced, eps, rtol, atol, ref_rtol,
                             ref_atol, value_ok, mismatches, notes)
    if raise_exception and not report.ok:
        raise GradcheckError(report)
    return report


def _as_array(a: Any, k: int) -> np.ndarray:
    if isinstance(a, Var) or (isinstance(a, np.ndarray) and a.dtype.kind == "O"):
        raise TypeError(f"gradcheck: argument {k} holds Vars; pass numbers or arrays of "
                        "numbers (leaves are made for you)")
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"gradcheck: argument {k}: expected a real number or an array of "
                        f"them, got {type(a).__name__}") from err
    return arr


def _unflatten(x: np.ndarray, shapes: list[tuple[int, ...]]) -> list[Any]:
    out, i = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=np.int64))
        out.append(float(x[i]) if s == () else x[i:i + n].reshape(s).copy())
        i += n
    return out


def _record(fn: Callable, xs: list[Any]) -> tuple[Any, list[Any]]:
    """fn called eagerly on fresh C++ leaves: (its scalar result as a Var, the leaves)."""
    leaves: list[Any] = []
    args = []
    for x in xs:
        arr = np.asarray(x, dtype=np.float64)
        arg = _placeholder(arr, arr.shape)
        leaves.extend([arg] if arr.shape == () else arg.reshape(-1))
        args.append(arg)
    out = fn(*args)
    if isinstance(out, np.ndarray) and out.size == 1:
        out = out.reshape(-1)[0]
    if isinstance(out, (int, float, np.floating, np.integer)) and not isinstance(out, bool):
        out = Var(float(out)).detach()  # a constant function
    if not isinstance(out, Var):
        shape = f" of shape {out.shape}" if isinstance(out, np.ndarray) else ""
        raise TypeError(f"gradcheck: fn must return a scalar Var, got "
                        f"{type(out).__name__}{shape}")
    return out, leaves


def _input_names(fn: Callable | None, shapes: list[tuple[int, ...]]) -> list[str]:
    params: list[str] = []
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)] if fn else []
    except (TypeError, ValueError):  # builtins and C functions have no signature
        pass
    names = []
    for k, s in enumerate(shapes):
        base = params[k] if k < len(params) else f"arg{k}"
        if s == ():
            names.append(base)
        else:
            names += [f"{base}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*s)]
    return names


def _reference_check(root: Any, leaves: list[Any], rtol: float, atol: float):
    """Rebuild root's recorded graph node for node in the reference backend and run its
    backward: (value, leaf grads, rule mismatches nearest the root first, forward ok)."""
    from . import reference

    order = topo_order(root)
    mapped: dict[int, Any] = {}
    for v in order:
        if v.op == "leaf":
            r = reference.Var(v.value)
        elif v.op == "const":
            r = reference.Var(v.value).detach()
        elif v.op in reference.OPS:
            r = getattr(reference, v.op)(*(mapped[p.id] for p in v.inputs))
        else:
            raise ValueError(f"gradcheck: the graph has op {v.op!r}, which the reference "
                             "table (tapegrad.reference.OPS) lacks")
        mapped[v.id] = r
    ref_root = mapped[root.id]
    ref_root.backward()

    value_ok = all(_close(v.value, mapped[v.id].value, rtol, atol) for v in order)
    mismatches = []
    for pos in range(len(order) - 1, -1, -1):  # nearest the root first
        v = order[pos]
        if v.is_leaf:
            continue
        r = mapped[v.id]
        cpp, ref = tuple(_core.local_grads(v, 1.0)), tuple(reference.local_grads(r, 1.0))
        if len(cpp) != len(ref) or not all(_close(a, b, rtol, atol) for a, b in zip(cpp, ref)):
            mismatches.append(RuleMismatch(v.op, pos, tuple(p.value for p in v.inputs), cpp, ref))
    grads = [mapped[leaf.id].grad if leaf.id in mapped else 0.0 for leaf in leaves]
    return ref_root.value, grads, mismatches, value_ok


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def _abs_err(a: float, b: float) -> float:
    if (math.isnan(a) and math.isnan(b)) or (math.isinf(a) and a == b):
        return 0.0
    return abs(a - b)


def _rel_err(a: float, b: float) -> float:
    e = _abs_err(a, b)
    return e if e == 0.0 or math.isnan(e) else (e / abs(b) if b != 0 else math.inf)


def _fmt_tuple(t: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{x:.10g}" for x in t) + ")"
