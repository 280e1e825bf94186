"""tapegrad: scalar reverse-mode automatic differentiation on a flat C++ tape.

    >>> import tapegrad as tg
    >>> x, y = tg.Var(3.0), tg.Var(4.0)
    >>> f = x * x + x * y
    >>> f.backward()
    >>> f.value, x.grad, y.grad
    (21.0, 10.0, 3.0)
"""
from __future__ import annotations

from collections.abc import Iterable

try:
    from . import _core
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "tapegrad's compiled core (tapegrad._core) could not be imported. "
        "Did you forget to build it? Run `pip install .` from the source tree "
        f"(original error: {err})"
    ) from err

from ._core import Condition, Var, clip, local_grads, op_aliases, ops
from .anomaly import AnomalyError, detect_anomaly
from .function import Function, TraceError, trace
from .transforms import (grad, hessian, hvp, is_grad_enabled, jacobian, jvp, no_grad,
                         value_and_grad, vjp)

__version__ = "0.1.0"

# One module-level function per op in the table (tapegrad.sin, tapegrad.maximum, ...),
# and per alias (numpy's names: tapegrad.arcsin is tapegrad.asin's op).
_OP_NAMES = tuple(name for name, _ in ops()) + tuple(alias for alias, _ in op_aliases())
globals().update({name: getattr(_core, name) for name in _OP_NAMES})


def where(cond, a, b):
    """``a`` where ``cond`` is nonzero, else ``b``, as a branch-free graph node
    (``if_true(cond, a) + if_false(cond, b)``), so a traced Function replays it correctly
    for any input. Only the chosen side gets a gradient.

    ``cond`` is a comparison such as ``x > 0``: eagerly a Python bool; while tracing a
    ``Condition`` (the comparison's node), so ``tg.where(x > 0, a, b)`` records no
    guard. Combine conditions with ``&``, ``|`` and ``~`` (not ``and``/``or``/``not``,
    which ask for a truth value and so record a guard). ``tg.lt/le/gt/ge/eq/ne`` and
    ``tg.logical_and/or/not`` give the same nodes, or any Var serves: nonzero is true.

    Examples:
        >>> import tapegrad as tg
        >>> x = tg.Var(-1.0)
        >>> z = tg.where(x > 0, tg.sqrt(x), 0.0)  # sqrt(-1) is NaN, but only the chosen side counts
        >>> z.backward(); z.value, x.grad
        (0.0, 0.0)
    """
    if not any(isinstance(v, Var) for v in (cond, a, b)):
        return a if cond else b
    return _core.if_true(cond, a) + _core.if_false(cond, b)


def zero_grad(vars: Iterable[Var]) -> None:
    """Set the grad of every Var in ``vars`` to 0 (the collection form of Var.zero_grad).

    Examples:
        >>> import tapegrad as tg
        >>> a, b = tg.Var(1.0), tg.Var(2.0)
        >>> (a * b).backward(); a.grad, b.grad
        (2.0, 1.0)
        >>> tg.zero_grad([a, b]); a.grad, b.grad
        (0.0, 0.0)
    """
    for v in vars:
        v.zero_grad()


# Higher layers load on first use, so `import tapegrad` never pulls in graphviz, dask, ...
_LAZY = {
    "draw": "viz", "explain": "explain_page",
    "gradcheck": "gradient_check", "grad_report": "gradient_report",
    "CompileError": "native", "CompileWarning": "native",
}
_SUBMODULES = ("nn", "viz", "explain_page", "gradient_check", "gradient_report", "dask",
               "reference", "autograd", "optimize", "native")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tapegrad' has no attribute {name!r}")


# Built on the C++ engine (tracing, forward mode, second order, pictures, diagnostics);
# everything else in __all__ is the core API that tapegrad.reference mirrors.
_ENGINE_ONLY = ("Function", "TraceError", "trace", "Condition", "grad", "value_and_grad",
                "jacobian", "hessian", "jvp", "vjp", "hvp", "no_grad", "is_grad_enabled",
                "detect_anomaly", "AnomalyError", *_LAZY)

__all__ = [*_ENGINE_ONLY, "Var", "clip", "local_grads", "op_aliases", "ops", "where", "zero_grad",
           *_OP_NAMES]
