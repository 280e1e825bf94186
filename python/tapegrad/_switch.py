"""A per-thread switch of the C++ core, held for a block or a function call."""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class ThreadSwitch:
    """Context manager and decorator: ``_set(_value)`` on this thread for the block, then
    the previous setting back (nested and re-entered uses, and exceptions, included).
    Subclasses name the core's setter (it returns the previous setting) and the value."""

    _set: Callable[[bool], bool]
    _value: bool

    def __init__(self) -> None:
        self._saved = threading.local()

    def __enter__(self) -> Any:
        self._saved.__dict__.setdefault("stack", []).append(self._set(self._value))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._set(self._saved.stack.pop())

    def __call__(self, fn: Callable) -> Callable:
        switch = type(self)

        @functools.wraps(fn)
        def switched(*args: Any, **kwargs: Any) -> Any:
            with switch():
                return fn(*args, **kwargs)

        return switched
