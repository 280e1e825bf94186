"""Loops in a traced program: runs of isomorphic blocks of ops.

A Python loop over data, numpy's elementwise ops on object arrays and their sums leave
the same block of ops many times in a trace, with operands that advance by a fixed
stride. ``Function.structure()`` finds these runs in the compiled program (C++:
csrc/tapegrad/structure.cpp): it is loop rerolling on a straight-line program.

A run is ``count`` consecutive iterations of a block of ``period`` op slots, starting at
slot ``start`` (a program's slots are its inputs, then its constants, then its ops).
Op ``j`` of iteration ``k`` sits at slot ``start + k * period + j``, runs the same op in
every iteration, and each of its operands is, in every iteration, one of:

- ``same``: an earlier op of the same iteration;
- ``carried``: an op of the previous iteration (a recurrence: a running sum, a time
  step's state); in iteration 0, a value from before the run;
- ``strided``: slot ``first + k * stride`` before the run (``x[i]``, ``x[i + 1]``);
- ``invariant``: the same slot before the run in every iteration (a shared constant or
  parameter).

Every run reported is checked slot by slot against these rules, so a block that breaks
the pattern in one iteration ends the run there. Runs of two iterations are left out
unless asked for (``min_count=2``): any two blocks of the same ops reading inputs or
constants fit, each operand's two slots making a "stride".
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _core

KINDS = ("same", "carried", "strided", "invariant")


@dataclasses.dataclass(frozen=True)
class Run:
    """``count`` iterations of a block of ``period`` ops from slot ``start``.

    ``ops`` names the block's ops; ``carried`` lists the block ops whose value the next
    iteration reads; ``operands[j, i]`` is ``(kind, first, source, stride)`` for operand
    ``i`` (0: a, 1: b; a unary op has b == a) of block op ``j``, kind an index into
    ``KINDS``, ``first`` its slot in iteration 0, ``source`` the block op it reads
    (same, carried) and ``stride`` its step (strided). ``swapped``: in some iteration an
    add or mul reads its operands the other way round (the compiled program orders them
    by slot, which flips where a carried value starts as an input); the value is the same.

    Examples:
        >>> import tapegrad as tg
        >>> def f(x):
        ...     for _ in range(10):
        ...         x = x * x + 1.0
        ...     return x
        >>> run = tg.trace(f, 0.5).structure().runs[0]
        >>> run.period, run.count, run.ops, run.carried
        (2, 10, ('mul', 'add'), (1,))
    """

    start: int
    period: int
    count: int
    ops: tuple[str, ...]
    carried: tuple[int, ...]
    operands: np.ndarray = dataclasses.field(repr=False, compare=False)
    swapped: bool = False

    @property
    def size(self) -> int:
        """Op slots the run covers: ``period * count``."""
        return self.period * self.count

    @property
    def stop(self) -> int:
        """The slot after the run's last op."""
        return self.start + self.size

    def kinds(self, j: int) -> tuple[str, ...]:
        """The kind of each operand of block op ``j`` (one for a unary op)."""
        arity = _ARITY[self.ops[j]]
        return tuple(KINDS[int(k)] for k in self.operands[j, :arity, 0])


@dataclasses.dataclass(frozen=True)
class Structure:
    """The runs ``Function.structure()`` found in a program, in slot order.

    ``covered`` is the fraction of the program's ops inside a run; ``seconds`` what
    finding them took.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: np.sum(x * x), np.zeros(100))
        >>> F.structure()  # the squares (stride 1), then the running sum (carried)
        <Structure: 2 runs cover 100.0% of 199 ops; largest 100 x 1 op>
    """

    runs: tuple[Run, ...]
    n_ops: int
    first_op: int
    seconds: float

    @property
    def covered(self) -> float:
        return sum(r.size for r in self.runs) / self.n_ops if self.n_ops else 0.0

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __getitem__(self, k: int) -> Run:
        return self.runs[k]

    def __repr__(self) -> str:
        if not self.runs:
            return f"<Structure: no runs in {self.n_ops} ops>"
        big = max(self.runs, key=lambda r: r.size)
        runs = f"{len(self.runs)} run" + ("s" if len(self.runs) > 1 else "")
        ops = "op" if big.period == 1 else "ops"
        return (f"<Structure: {runs} cover {100 * self.covered:.1f}% of {self.n_ops} ops; "
                f"largest {big.count} x {big.period} {ops}>")


_ARITY = dict(_core.ops())


def find(program: Any, min_count: int = 3) -> Structure:
    """The runs of at least ``min_count`` iterations in a compiled program
    (``_core.Program``); ``Function.structure()``."""
    if min_count < 2:
        raise ValueError(f"structure: min_count must be at least 2, got {min_count}")
    state = program.__getstate__()
    table, first_op, codes = state[1], state[3], np.frombuffer(state[4], dtype=np.uint8)
    t0 = time.perf_counter()
    found = _core.find_runs(program, min_count)
    seconds = time.perf_counter() - t0
    runs = []
    for start, period, count, operands, swapped in found:
        ops = tuple(table[c] for c in codes[start:start + period])
        carried = sorted({int(operands[j, i, 2]) for j in range(period)
                          for i in range(2 if _ARITY[ops[j]] == 2 else 1)
                          if operands[j, i, 0] == 1})
        runs.append(Run(start, period, count, ops, tuple(carried), operands, bool(swapped)))
    return Structure(tuple(runs), program.n_nodes - first_op, first_op, seconds)
