"""Walking a graph from its root, and naming and printing its nodes, for the worked
examples, the drawing and the explain page.

Uses only the public Var API (``op``, ``inputs``, ``id``, ``value``, ``grad``) and the
backend's ``local_grads``, so it works on both backends.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "^"}  # infix
SYMBOL = {**SYMBOLS, "sigmoid": "σ", "neg": "−", "square": "²"}  # what a node shows
MAX_NODES = 500  # above this the page draws compact nodes, and the notebook repr no picture


def fmt(x: float) -> str:
    """Numbers as the worked examples write them: 3, 0.7311, 0.0983, and four significant
    digits below 0.01 (0.002178) and 1e-3 (1.500e-09): never a misleading 0.0000."""
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if 1e-3 <= abs(x) < 0.01:
        return f"{x:.4g}"
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


class Names:
    """Names for the nodes of one graph: the given leaves, then n1, n2, ... in order."""

    def __init__(self, leaves: dict[str, Any]):
        self._by_id = {v.id: name for name, v in leaves.items()}
        self._count = 0

    def __call__(self, v: Any) -> str:
        if v.id not in self._by_id:
            self._count += 1
            self._by_id[v.id] = fmt(v.value) if v.op == "const" else f"n{self._count}"
        return self._by_id[v.id]


def node_names(root: Any, names: Mapping[str, Any] | None, order: list[Any]) -> Names:
    """The given names, the root as f (f_, f__, ... if taken), the other nodes n1, n2, ...
    in tape order."""
    given = dict(names or {})
    if not any(v.id == root.id for v in given.values()):
        free = next(f"f{'_' * k}" for k in range(len(given) + 1) if f"f{'_' * k}" not in given)
        given[free] = root
    name = Names(given)
    for v in order:
        name(v)
    return name


def check_root(function: str, root: Any) -> None:
    if not all(hasattr(root, attr) for attr in ("op", "inputs", "id", "value", "grad")):
        raise TypeError(f"{function}() expects a Var (the graph's root), "
                        f"got {type(root).__name__!r}")


def kind(v: Any) -> str:
    """'leaf', 'const' or 'op': how pictures style a node."""
    return v.op if v.op in ("leaf", "const") else "op"


def topo_order(root: Any) -> list[Any]:
    """Every node reachable from ``root`` once, inputs before the nodes that use them."""
    order: list[Any] = []
    seen: set[int] = set()
    stack = [(root, False)]
    while stack:  # iterative post-order: no recursion limit on deep graphs
        v, done = stack.pop()
        if done:
            order.append(v)
        elif v.id not in seen:
            seen.add(v.id)
            stack.append((v, True))
            stack.extend((p, False) for p in reversed(v.inputs) if p.id not in seen)
    return order


@dataclass(frozen=True)
class Edge:
    """Gradient flowing from ``node`` to its ``k``-th input during backward."""

    node: Any
    k: int
    input: Any
    contribution: float


def backward_edges(root: Any, backend: ModuleType) -> list[Edge]:
    """The edges of a finished backward sweep from ``root``, in the order it visits them.

    Each contribution is the node's local rule applied to its adjoint, by the backend's
    own op table (``backend.local_grads``). Nodes with a zero adjoint, and constants
    (which take no gradient), are skipped, as in backward() itself.
    """
    edges = []
    for v in reversed(topo_order(root)):
        if v.is_leaf or v.grad == 0:
            continue
        for k, (p, c) in enumerate(zip(v.inputs, backend.local_grads(v))):
            if p.op != "const":
                edges.append(Edge(v, k, p, c))
    return edges
