"""The arguments of ``autograd.grad`` (``torch.autograd.grad``'s): checked, flattened and
the results shaped back. Shared by the native ``tapegrad.autograd`` and the pure-Python
``tapegrad.reference``, which differ only in the Var type and the sweep they run."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def _group(x: Any, what: str, var: type) -> tuple[list, tuple | None]:
    """A Var, or an object array of Vars: its Vars, flat, and its shape (None for a Var)."""
    if isinstance(x, var):
        return [x], None
    if isinstance(x, np.ndarray) and x.dtype == object and x.size and all(
            isinstance(v, var) for v in x.reshape(-1)):
        return list(x.reshape(-1)), x.shape
    raise TypeError(f"autograd.grad: {what} must be a Var or an array of Vars, got "
                    f"{type(x).__name__}{getattr(x, 'shape', '')}")


def groups(xs: Any, what: str, var: type) -> list[tuple[list, tuple | None]]:
    """``outputs`` or ``inputs``: a Var, an object array of Vars, or a sequence of them."""
    parts = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    if not parts:
        raise ValueError(f"autograd.grad: {what} is empty")
    return [_group(g, f"{what}[{k}]" if isinstance(xs, (list, tuple)) else what, var)
            for k, g in enumerate(parts)]


def seeds(grad_outputs: Any, n_outputs: int, create_graph: Any, var: type) -> list:
    """The seeds, one float or Var per output (1.0 each when ``grad_outputs`` is None);
    checks ``create_graph`` too."""
    if grad_outputs is None:
        out: list = [1.0] * n_outputs
    else:
        out = list(np.asarray(grad_outputs, dtype=object).reshape(-1))
        for s in out:
            if not isinstance(s, var) and not (isinstance(s, numbers.Real)
                                               and not isinstance(s, bool)):
                raise TypeError("autograd.grad: grad_outputs must be numbers or Vars, got "
                                f"{type(s).__name__}")
        if len(out) != n_outputs:
            raise ValueError(f"autograd.grad: {len(out)} grad_outputs for {n_outputs} "
                             "outputs")
    if not isinstance(create_graph, bool):
        raise TypeError("autograd.grad: create_graph must be True or False")
    return [s if isinstance(s, var) else float(s) for s in out]


def regroup(grads: list, parts: list[tuple[list, tuple | None]], create_graph: bool) -> tuple:
    """The flat gradients back in the inputs' shapes: a Var's entry is a scalar, an
    array's an array (of Vars with ``create_graph``)."""
    result, at = [], 0
    for vs, shape in parts:
        part = grads[at:at + len(vs)]
        at += len(vs)
        if shape is None:
            result.append(part[0])
        else:
            arr = np.empty(len(part), dtype=object if create_graph else np.float64)
            arr[:] = part
            result.append(arr.reshape(shape))
    return tuple(result)
