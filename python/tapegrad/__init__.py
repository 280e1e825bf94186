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

from ._core import Var, local_grads, ops

__version__ = "0.1.0"

# One module-level function per op in the table (tapegrad.sin, tapegrad.maximum, ...).
_OP_NAMES = tuple(name for name, _ in ops())
globals().update({name: getattr(_core, name) for name in _OP_NAMES})


def zero_grad(vars: Iterable[Var]) -> None:
    """Set the grad of every Var in ``vars`` to 0 (the collection form of Var.zero_grad)."""
    for v in vars:
        v.zero_grad()


__all__ = ["Var", "local_grads", "ops", "zero_grad", *_OP_NAMES]
