"""``tg.detect_anomaly()``: name the node, the op, the values and the line where a NaN or an
infinity first appears, in the forward pass, in the loss, or in the backward pass.

While it is on (per thread), every op checks its result: the first non-finite value made
from finite inputs raises ``AnomalyError`` at the line of user code that made it (a
NaN that arrives in an input is blamed on that input). ``backward()`` refuses a
non-finite loss, and after its sweep names the first edge where a finite gradient became
non-finite, with the op's rule as the table writes it. A gradient recorded with
``create_graph=True`` is checked node by node as it is made, naming the rule that made
it. Traced ``Function`` replays check what they produce, and re-run the traced Python
function eagerly at the first bad point to find the node and line. Off, it costs
nothing: nothing is recorded, no line is kept.
"""
from __future__ import annotations

import linecache
import math
import os
import sys
from typing import Any

from . import _core
from ._switch import ThreadSwitch

__all__ = ["AnomalyError", "detect_anomaly"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class AnomalyError(ArithmeticError):
    """A NaN or an infinity where the inputs were finite.

    Attributes: ``kind`` ("forward", "input", "loss", "backward" or "recorded": a node of
    a gradient recorded with ``create_graph=True``), ``node`` (the Var
    where it happened), ``op``, ``inputs`` (the input values), ``location`` ("file:line"
    of the user code, or None) and ``source`` (that line's text).

    Examples:
        >>> import tapegrad as tg
        >>> x = tg.Var(0.0)
        >>> try:
        ...     with tg.detect_anomaly():
        ...         y = tg.log(x)
        ... except tg.AnomalyError as err:
        ...     print(err.kind, err.op, err.inputs)
        forward log (0.0,)
    """

    def __init__(self, message: str, *, kind: str, node: Any = None, op: str | None = None,
                 inputs: tuple = (), location: str | None = None, source: str = ""):
        super().__init__(message)
        self.kind, self.node, self.op, self.inputs = kind, node, op, inputs
        self.location, self.source = location, source


def _user_frame() -> tuple[str | None, str]:
    """file:line and source of the innermost frame outside the tapegrad package."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PACKAGE_DIR):
        f = f.f_back
    if f is None:
        return None, ""
    file, line = f.f_code.co_filename, f.f_lineno
    return f"{file}:{line}", linecache.getline(file, line).strip()


def _fmt(x: float) -> str:
    return repr(x) if not math.isfinite(x) else f"{x:.6g}"


def _report(kind: str, node: Any, extra: Any) -> None:
    """Called by the C++ core when it finds an anomaly; raises AnomalyError."""
    inputs = tuple(p.value for p in node.inputs)
    args = ", ".join(_fmt(v) for v in inputs)
    where, source = _user_frame()
    at = f"\n  at {where}" + (f"\n      {source}" if source else "") if where else ""
    if kind == "forward":
        bad = [(k, p) for k, p in enumerate(node.inputs) if not math.isfinite(p.value)]
        if not bad:
            msg = (f"{node.op}({args}) = {_fmt(node.value)}: a non-finite value from finite "
                   f"inputs{at}")
        else:
            k, p = bad[0]
            kind = "input"
            origin = ("an input (a leaf Var)" if p.op == "leaf" else
                      "an input (a constant)" if p.op == "const" else
                      f"{'an' if p.op[0] in 'aeiou' else 'a'} {p.op} node computed before "
                      "anomaly detection was on")
            msg = (f"{node.op}({args}) = {_fmt(node.value)}: its input {k} is "
                   f"{_fmt(p.value)}, which came from {origin}{at}")
    elif kind == "loss":
        msg = (f"backward() from a non-finite loss: {node.op}({args}) = "
               f"{_fmt(node.value)}{at}")
    elif kind == "recorded":
        msg = (f"{node.op}({args}) = {_fmt(node.value)}: a non-finite value from finite "
               f"inputs, made by {extra}'s derivative rule in a gradient recorded with "
               f"create_graph=True{at}")
    else:
        k, g, d, x, rule = extra
        name = "xy"[k] if len(inputs) == 2 else "x"
        msg = (f"backward: the finite gradient {_fmt(g)} at {node.op}({args}) = "
               f"{_fmt(node.value)} became {_fmt(d)} on the edge to input {k}: "
               f"d/d{name} = {rule} with g = {_fmt(g)}"
               + "".join(f", {n} = {_fmt(v)}" for n, v in zip("xy", inputs))
               + f", out = {_fmt(node.value)}{at}")
    raise AnomalyError(msg, kind=kind, node=node, op=node.op, inputs=inputs,
                       location=where, source=source)


_core._set_anomaly_reporter(_report)


class detect_anomaly(ThreadSwitch):
    """Context manager and decorator that turns anomaly detection on for this thread.

        with tg.detect_anomaly():
            loss = model(x)        # AnomalyError here if an op makes a NaN or an inf
            loss.backward()        # ... or here, naming the first bad edge

    Examples:
        >>> import tapegrad as tg
        >>> @tg.detect_anomaly()
        ... def loss(x):
        ...     return tg.sqrt(x - 1.0)
        >>> loss(tg.Var(0.5))
        Traceback (most recent call last):
            ...
        tapegrad.anomaly.AnomalyError: sqrt(-0.5) = nan: a non-finite value from finite inputs...
    """

    _set = staticmethod(_core.set_anomaly_enabled)
    _value = True
