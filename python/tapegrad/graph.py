"""Walking a graph from its root, for printing, explaining and drawing it.

Uses only the public Var API (``op``, ``inputs``, ``id``, ``grad``) and the backend's
``local_grads``, so it works on both backends.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "^"}


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
