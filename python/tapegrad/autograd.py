"""Gradients of Vars with respect to Vars, PyTorch's ``torch.autograd.grad``:

    >>> import tapegrad as tg
    >>> x = tg.Var(2.0)
    >>> (g,) = tg.autograd.grad(x ** 3, x, create_graph=True)   # 3 x^2, a Var with a graph
    >>> (h,) = tg.autograd.grad(g, x)                           # 6 x, a float
    >>> g.value, h
    (12.0, 12.0)

With ``create_graph=True`` the reverse sweep is recorded on the tape as ordinary nodes,
built from the op table's own rules (csrc/tapegrad/backward_graph.hpp), so the gradients
are Vars that can be differentiated again, to any order. Without it the gradients are
floats. Either way the inputs' ``.grad`` is left alone (``backward()`` accumulates there;
``v.backward(create_graph=True)`` is the same recorded sweep, accumulated into the leaves'
``.grad`` as Vars).

A rule's branches take the side the current values take, as in PyTorch (``relu``'s
recorded derivative at x > 0 is the adjoint itself). Values equal ``backward()``'s, but a
gradient that is a single -0.0 contribution stays -0.0, and where an adjoint is 0 the
recorded sweep keeps the contributions with finite values (their derivatives need not be
0), while ``backward()`` skips them.
"""
from __future__ import annotations

from typing import Any

from . import _autograd_args as _args
from . import _core
from ._core import Var

__all__ = ["grad"]


def _caller() -> str:
    """file:line of the innermost frame outside tapegrad (where a trace error should
    point: the user's tg.grad or autograd.grad call)."""
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(
            frame.f_code.co_filename)) == here:
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "<unknown>"


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None,
         create_graph: bool = False) -> tuple:
    """d(sum_k grad_outputs[k] * outputs[k]) / d inputs, one entry per input, as a tuple
    (``torch.autograd.grad``).

    ``outputs``: a Var or a sequence of Vars; ``inputs``: a Var, a sequence of Vars or an
    object array of Vars (its entry in the result is an array of the same shape);
    ``grad_outputs``: the seeds (numbers or Vars), 1.0 for each output by default.
    An input the outputs do not depend on gets 0.0 (JAX's convention; PyTorch's default
    raises). With ``create_graph=True`` each gradient is a Var whose graph is the
    recorded reverse sweep, else a float.

    Examples:
        >>> import tapegrad as tg
        >>> x = tg.Var(3.0)
        >>> tg.autograd.grad(x * x, x)
        (6.0,)
        >>> (dx,) = tg.autograd.grad(x ** 3, x, create_graph=True)  # a Var: differentiate again
        >>> dx.value, tg.autograd.grad(dx, x)
        (27.0, (18.0,))
    """
    outs = [v for vs, _ in _args.groups(outputs, "outputs", Var) for v in vs]
    seeds = _args.seeds(grad_outputs, len(outs), create_graph, Var)
    parts = _args.groups(inputs, "inputs", Var)
    grads = _core._gradient(outs, seeds, [v for vs, _ in parts for v in vs], create_graph,
                            _caller() if _core.is_tracing() else "")
    return _args.regroup(grads, parts, create_graph)
