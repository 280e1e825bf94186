"""Pictures of a graph with Graphviz: ``draw`` (micrograd's ``draw_dot``) and a Var's
rich display in Jupyter (``_repr_svg_``, ``_repr_mimebundle_``). Graphviz is optional:
only these need it, and tapegrad.explain_page's pages do not.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from tapegrad.graph import MAX_NODES, SYMBOL, check_root, fmt, kind, node_names, topo_order

__all__ = ["draw"]

INSTALL_GRAPHVIZ = ("pip install 'tapegrad[viz]'  (or: pip install graphviz)")
INSTALL_DOT = ("apt install graphviz  (Debian/Ubuntu; macOS: brew install graphviz; "
               "conda: conda install graphviz)")
RANKDIRS = ("LR", "TB", "RL", "BT")
ORDERED = {"sub", "div", "pow", "lt", "le", "gt", "ge", "if_true", "if_false"}  # a, b differ


def _graphviz() -> ModuleType:
    try:
        import graphviz
    except ImportError as err:
        raise ImportError(
            "tapegrad.draw needs the graphviz Python package, which is not installed: "
            f"{INSTALL_GRAPHVIZ}. Rendering also needs Graphviz's `dot` program: {INSTALL_DOT}."
        ) from err
    return graphviz


def _dot_missing(err: Exception) -> RuntimeError:
    return RuntimeError(
        f"Graphviz's `dot` program was not found on PATH ({err}). Install it: {INSTALL_DOT}. "
        "(tapegrad.explain pages need no Graphviz at all.)")


def _digraph_class(graphviz: ModuleType) -> type:
    class Digraph(graphviz.Digraph):
        """A graphviz.Digraph whose rendering says what to install when `dot` is missing."""

        def pipe(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().pipe(*args, **kwargs)
            except graphviz.ExecutableNotFound as err:
                raise _dot_missing(err) from err

        def render(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().render(*args, **kwargs)
            except graphviz.ExecutableNotFound as err:
                raise _dot_missing(err) from err

    return Digraph


def _record(text: str) -> str:
    """Text as one field of a Graphviz record label (its special characters escaped)."""
    text = " ".join(str(text).split())
    for ch in '\\"{}|<>':
        text = text.replace(ch, "\\" + ch)
    return text



def draw(root: Any, rankdir: str = "LR", format: str = "svg", *,
         names: Mapping[str, Any] | None = None) -> Any:
    """The graph below ``root`` as a ``graphviz.Digraph``, as micrograd's ``draw_dot`` draws
    it: one record per node with its op, value and grad (as they are now, so call
    ``backward()`` first to see gradients). Leaves are blue, constants grey and dashed,
    ops yellow; NaN/Inf nodes are red. ``names`` maps names to Vars (``{"x": x}``);
    other nodes are called n1, n2, ... in tape order.

    Needs the graphviz package (``pip install 'tapegrad[viz]'``); rendering the picture
    (``.pipe()``, ``.render()``, Jupyter) also needs the ``dot`` program (``apt install
    graphviz``). ``tapegrad.explain`` needs neither.

    Examples:
        >>> import tapegrad as tg
        >>> x, y = tg.Var(3.0), tg.Var(4.0)
        >>> dot = tg.draw(x * x + x * y)  # needs the graphviz package; rendering needs `dot`
        >>> type(dot).__name__
        'Digraph'
    """
    check_root("draw", root)
    if rankdir not in RANKDIRS:
        raise ValueError(f"draw(): rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    graphviz = _graphviz()
    order = topo_order(root)
    name = node_names(root, names, order)
    index = {v.id: i for i, v in enumerate(order)}
    dot = _digraph_class(graphviz)(format=format, graph_attr={"rankdir": rankdir},
                                   node_attr={"shape": "record", "fontname": "Helvetica",
                                              "fontsize": "11", "style": "filled"},
                                   edge_attr={"fontsize": "9", "color": "#555555"})
    styles = {"leaf": {"fillcolor": "#dbeafe", "color": "#1d4ed8"},
              "const": {"fillcolor": "#f3f4f6", "style": "filled,dashed", "color": "#6b7280",
                        "fontcolor": "#4b5563"},
              "op": {"fillcolor": "#fef3c7", "color": "#92400e"}}
    for i, v in enumerate(order):
        op = v.op if v.is_leaf else f"{v.op} {SYMBOL[v.op]}" if v.op in SYMBOL else v.op
        fields = [name(v), op, f"value {fmt(v.value)}", f"grad {fmt(v.grad)}"]
        label = graphviz.nohtml("{ " + " | ".join(_record(f) for f in fields) + " }")
        style = dict(styles[kind(v)])
        if not (math.isfinite(v.value) and math.isfinite(v.grad)):
            style.update(fillcolor="#fee2e2", color="#dc2626", penwidth="2.5")
        if v.id == root.id:
            style.setdefault("penwidth", "2")
        dot.node(f"n{i}", label, **style)
    for i, v in enumerate(order):
        for k, p in enumerate(v.inputs):
            label = "ab"[k] if v.op in ORDERED and len(v.inputs) == 2 else None
            dot.edge(f"n{index[p.id]}", f"n{i}", **({"label": label} if label else {}))
    return dot


def _repr_svg_(var: Any) -> str | None:
    """The graph below ``var`` as SVG for Jupyter, or None (text repr only) when the graph
    has more than 500 nodes or Graphviz is not installed."""
    if len(topo_order(var)) > MAX_NODES:
        return None
    try:
        return draw(var).pipe(format="svg", encoding="utf-8")
    except (ImportError, RuntimeError):
        return None


def _repr_mimebundle_(var: Any, include: Any = None, exclude: Any = None) -> dict[str, str]:
    """Jupyter's rich repr of a Var: the graph as SVG (see ``_repr_svg_``) and the text repr.
    Without Graphviz, the text repr says what to install for the picture."""
    wanted = lambda mime: (include is None or mime in include) and not (exclude and mime in exclude)  # noqa: E731
    bundle = {}
    svg = _repr_svg_(var) if wanted("image/svg+xml") else None
    if svg is not None:
        bundle["image/svg+xml"] = svg
    if wanted("text/plain"):
        text = repr(var)
        if svg is None and wanted("image/svg+xml") and len(topo_order(var)) <= MAX_NODES:
            text += f"\n(graph picture: {INSTALL_GRAPHVIZ}; and {INSTALL_DOT})"
        bundle["text/plain"] = text
    return bundle

