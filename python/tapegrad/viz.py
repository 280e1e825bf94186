"""Pictures of a graph: a Graphviz drawing (``draw``) and a self-contained page that steps
through the forward and backward passes, edge by edge (``explain``).

The page computes nothing: every value, contribution and running sum is computed here,
by the backend's own op table (``local_grads``), and embedded as data that the page's
script only animates. Graphviz is optional and only ``draw`` needs it.
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import html
import json
import math
import sys
from collections import defaultdict, deque
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from tapegrad.__main__ import Names, fmt
from tapegrad.graph import SYMBOLS, topo_order

__all__ = ["draw", "explain", "explain_data", "evaluate", "main"]

INSTALL_GRAPHVIZ = ("pip install 'tapegrad[viz]'  (or: pip install graphviz)")
INSTALL_DOT = ("apt install graphviz  (Debian/Ubuntu; macOS: brew install graphviz; "
               "conda: conda install graphviz)")
MAX_NODES = 500  # above this the page draws compact nodes, and the notebook repr no picture
RANKDIRS = ("LR", "TB", "RL", "BT")
SYMBOL = {**SYMBOLS, "sigmoid": "σ", "neg": "−", "square": "²"}
ORDERED = {"sub", "div", "pow", "lt", "le", "gt", "ge", "if_true", "if_false"}  # a, b differ


def _p(x: float) -> str:
    """A number as it is substituted into a formula: negatives in parentheses."""
    return f"({fmt(x)})" if x < 0 else fmt(x)


def _pick(a: float, b: float, first: bool) -> str:
    return "½" if a == b else "1" if first else "0"


Rule = tuple[str, Callable[[float, float, float, float], str]]

# Local rules as the page prints them, one row per op: for each input, the rule in words
# and the same rule with numbers (a, b: input values; out: node value; g: its adjoint).
# Text only: the contribution itself always comes from the backend's local_grads.
RULES: dict[str, tuple[Rule, ...]] = {
    "add":      (("grad × 1", lambda a, b, o, g: f"{_p(g)} × 1"),
                 ("grad × 1", lambda a, b, o, g: f"{_p(g)} × 1")),
    "sub":      (("grad × 1", lambda a, b, o, g: f"{_p(g)} × 1"),
                 ("grad × (−1)", lambda a, b, o, g: f"{_p(g)} × (−1)")),
    "mul":      (("grad × b", lambda a, b, o, g: f"{_p(g)} × {_p(b)}"),
                 ("grad × a", lambda a, b, o, g: f"{_p(g)} × {_p(a)}")),
    "div":      (("grad ÷ b", lambda a, b, o, g: f"{_p(g)} ÷ {_p(b)}"),
                 ("−grad × out ÷ b", lambda a, b, o, g: f"−{_p(g)} × {_p(o)} ÷ {_p(b)}")),
    "pow":      (("grad × b × a^(b−1)", lambda a, b, o, g: f"{_p(g)} × {_p(b)} × {_p(a)}^{_p(b - 1)}"),
                 ("grad × out × ln(a)", lambda a, b, o, g: f"{_p(g)} × {_p(o)} × ln({fmt(a)})")),
    "maximum":  (("grad × [a > b] (½ at a tie)", lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, a > b)}"),
                 ("grad × [b > a] (½ at a tie)", lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, b > a)}")),
    "minimum":  (("grad × [a < b] (½ at a tie)", lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, a < b)}"),
                 ("grad × [b < a] (½ at a tie)", lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, b < a)}")),
    **{cmp: (("grad × 0 (a comparison passes no gradient)", lambda a, b, o, g: f"{_p(g)} × 0"),) * 2
       for cmp in ("lt", "le", "gt", "ge")},
    "if_true":  (("grad × 0 (the condition takes no gradient)", lambda a, b, o, g: f"{_p(g)} × 0"),
                 ("grad × [a ≠ 0]", lambda a, b, o, g: f"{_p(g)} × {int(a != 0)}")),
    "if_false": (("grad × 0 (the condition takes no gradient)", lambda a, b, o, g: f"{_p(g)} × 0"),
                 ("grad × [a = 0]", lambda a, b, o, g: f"{_p(g)} × {int(a == 0)}")),
    "square":   (("grad × 2a", lambda a, b, o, g: f"{_p(g)} × 2 × {_p(a)}"),),
    "neg":      (("−grad", lambda a, b, o, g: f"−{_p(g)}"),),
    "abs":      (("grad × sign(a)", lambda a, b, o, g: f"{_p(g)} × {_p((a > 0) - (a < 0))}"),),
    "sqrt":     (("grad ÷ (2 × out)", lambda a, b, o, g: f"{_p(g)} ÷ (2 × {_p(o)})"),),
    "exp":      (("grad × out", lambda a, b, o, g: f"{_p(g)} × {_p(o)}"),),
    "log":      (("grad ÷ a", lambda a, b, o, g: f"{_p(g)} ÷ {_p(a)}"),),
    "sin":      (("grad × cos(a)", lambda a, b, o, g: f"{_p(g)} × cos({fmt(a)})"),),
    "cos":      (("−grad × sin(a)", lambda a, b, o, g: f"−{_p(g)} × sin({fmt(a)})"),),
    "tan":      (("grad × (1 + out²)", lambda a, b, o, g: f"{_p(g)} × (1 + {_p(o)}²)"),),
    "tanh":     (("grad × (1 − out²)", lambda a, b, o, g: f"{_p(g)} × (1 − {_p(o)}²)"),),
    "sigmoid":  (("grad × out × (1 − out)", lambda a, b, o, g: f"{_p(g)} × {_p(o)} × {_p(1 - o)}"),),
    "relu":     (("grad × [a > 0]", lambda a, b, o, g: f"{_p(g)} × {int(a > 0)}"),),
}


# ---------------------------------------------------------------------------------------
# Graphviz (optional)

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


def _kind(v: Any) -> str:
    return v.op if v.op in ("leaf", "const") else "op"


def _nonfinite(x: float) -> bool:
    return not math.isfinite(x)


def _check_root(function: str, root: Any) -> None:
    if not all(hasattr(root, attr) for attr in ("op", "inputs", "id", "value", "grad")):
        raise TypeError(f"{function}() expects a Var (the graph's root), got {type(root).__name__!r}")


def _node_names(root: Any, names: Mapping[str, Any] | None, order: list[Any]) -> Names:
    given = dict(names or {})
    if not any(v.id == root.id for v in given.values()):
        given[next(f"f{'_' * k}" for k in range(len(given) + 1) if f"f{'_' * k}" not in given)] = root
    name = Names(given)
    for v in order:  # number the unnamed nodes n1, n2, ... in tape order
        name(v)
    return name


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
    """
    _check_root("draw", root)
    if rankdir not in RANKDIRS:
        raise ValueError(f"draw(): rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    graphviz = _graphviz()
    order = topo_order(root)
    name = _node_names(root, names, order)
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
        style = dict(styles[_kind(v)])
        if _nonfinite(v.value) or _nonfinite(v.grad):
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


# ---------------------------------------------------------------------------------------
# The explain page

def _backend(root: Any) -> ModuleType:
    from tapegrad import reference
    if isinstance(root, reference.Var):
        return reference
    import tapegrad
    return tapegrad


def _backward_order(root: Any, order: list[Any]) -> list[Any]:
    """A reverse topological order that visits a node's inputs left to right, breadth
    first (the seed's order: root, then left ×, then right ×), so each node comes after
    every node that uses it. Any such order gives the same sums as the tape's reverse."""
    pending: dict[int, int] = defaultdict(int)
    for v in order:
        for p in {p.id: p for p in v.inputs}.values():
            pending[p.id] += 1
    result, queue = [], deque([root])
    while queue:
        v = queue.popleft()
        result.append(v)
        for p in {p.id: p for p in v.inputs}.values():
            pending[p.id] -= 1
            if pending[p.id] == 0:
                queue.append(p)
    return result


def _forward_text(v: Any, name: Names) -> str:
    args, nums = [name(p) for p in v.inputs], [_p(p.value) for p in v.inputs]
    if v.op in SYMBOLS:
        expr, sub = f" {SYMBOLS[v.op]} ".join(args), f" {SYMBOLS[v.op]} ".join(nums)
    else:
        nums = [fmt(p.value) for p in v.inputs]
        expr, sub = f"{v.op}({', '.join(args)})", f"{v.op}({', '.join(nums)})"
    return f"{name(v)} = {expr} = {sub} = {fmt(v.value)}"


def _rule_text(v: Any, k: int, g: float, c: float) -> str:
    a = v.inputs[0].value
    b = v.inputs[1].value if len(v.inputs) > 1 else math.nan
    wrt = "ab"[k] if len(v.inputs) <= 2 else f"x{k + 1}"
    if v.op in RULES:
        rule, numbers = RULES[v.op][k]
        text = f"{rule} = {numbers(a, b, v.value, g)}"
    else:  # an op this table does not know yet: its local derivative, from local_grads
        text = f"grad × ∂out/∂{wrt} = {_p(g)} × {_p(c / g)}"
    return f"{SYMBOL.get(v.op, v.op)} : ∂/∂{wrt} = {text} = {fmt(c)}"


def _layout(order: list[Any], inputs: list[list[int]], kinds: list[str]) -> tuple[list[int], list[float]]:
    """Layered DAG layout: rank = longest path from the leaves (constants just below their
    first user), then a few barycenter sweeps to untangle each layer."""
    n = len(order)
    rank = [0] * n
    users: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in inputs[i]:
            users[j].append(i)
        if inputs[i]:
            rank[i] = 1 + max(rank[j] for j in inputs[i])
    for i in range(n):
        if kinds[i] == "const" and users[i]:
            rank[i] = min(rank[u] for u in users[i]) - 1
    layers: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        layers[rank[i]].append(i)
    pos = [0.0] * n

    def place(layer: list[int]) -> None:
        for slot, i in enumerate(layer):
            pos[i] = slot - (len(layer) - 1) / 2

    for layer in layers.values():
        place(layer)
    ranks = sorted(layers)
    for _ in range(4):
        for sweep, neighbours in ((ranks[1:], inputs), (ranks[-2::-1], users)):
            for r in sweep:
                key = {i: (sum(pos[j] for j in neighbours[i]) / len(neighbours[i])
                           if neighbours[i] else pos[i]) for i in layers[r]}
                layers[r].sort(key=key.__getitem__)
                place(layers[r])
    top = max(ranks)
    return [top - r for r in rank], pos


def _json_for_html(data: Any) -> str:
    """JSON that is safe inside a <script> data block: no '<', '>', '&' or line separators."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("viz_assets", name).read_text(encoding="utf-8")


def explain_data(root: Any, *, names: Mapping[str, Any] | None = None,
                 anomalies: Mapping[Any, str] | None = None, title: str | None = None,
                 max_nodes: int = MAX_NODES) -> dict[str, Any]:
    """Everything the explain page shows, as plain data (what ``explain`` embeds)."""
    _check_root("explain", root)
    backend = _backend(root)
    order = topo_order(root)
    name = _node_names(root, names, order)
    index = {v.id: i for i, v in enumerate(order)}
    inputs = [[index[p.id] for p in v.inputs] for v in order]
    kinds = [_kind(v) for v in order]
    layer, pos = _layout(order, inputs, kinds)
    compact = len(order) > max_nodes

    notes: dict[int, str] = {}
    for key, message in (anomalies or {}).items():
        node_id = getattr(key, "id", key)
        if node_id not in index:
            raise ValueError(f"explain(): anomalies names node id {node_id!r}, "
                             "which is not in the graph below root")
        notes[index[node_id]] = str(message)

    # The backward sweep, seeded with 1 at the root, by the backend's own rules. The Vars'
    # .grad fields are neither read nor changed.
    adjoint = defaultdict(float, {root.id: 1.0})
    parts: dict[int, list[str]] = defaultdict(list)
    backward_steps = []
    for v in _backward_order(root, order):
        g = adjoint[v.id]
        if v.is_leaf or g == 0:  # as backward(): a zero adjoint sends nothing
            continue
        for k, (p, c) in enumerate(zip(v.inputs, backend.local_grads(v, g))):
            if p.op == "const":  # constants take no gradient
                continue
            adjoint[p.id] += c
            parts[p.id].append(fmt(c))
            total = fmt(adjoint[p.id])
            running = _sum_text(parts[p.id], total)
            backward_steps.append({
                "kind": "edge", "edge": f"edge-{index[v.id]}-{k}", "node": index[v.id],
                "to": index[p.id], "k": k, "contribution": fmt(c), "grad": total,
                "sum": running, "text": _rule_text(v, k, g, c),
                "detail": f"{name(v)} → {name(p)}: {name(p)}.grad = {running}"})

    nodes = []
    for i, v in enumerate(order):
        grad = adjoint[v.id] if v.op != "const" else 0.0
        bad_value, bad_grad = _nonfinite(v.value), _nonfinite(grad)
        nodes.append({
            "i": i, "id": str(v.id), "name": name(v), "op": v.op, "kind": kinds[i],
            "symbol": SYMBOL.get(v.op, v.op) if kinds[i] == "op" else "",
            "value": fmt(v.value), "valueExact": repr(v.value), "grad": fmt(grad),
            "gradExact": repr(grad), "inputs": inputs[i], "layer": layer[i], "pos": pos[i],
            "nonfinite": bad_value or bad_grad,
            "origin": bad_value and all(math.isfinite(p.value) for p in v.inputs),
            "anomaly": notes.get(i),
            "formula": _forward_text(v, name) if kinds[i] == "op" else "",
        })

    leaves = [i for i, v in enumerate(order) if v.op == "leaf"]
    consts = [i for i, v in enumerate(order) if v.op == "const"]
    assigned = ", ".join(f"{nodes[i]['name']} = {nodes[i]['value']}" for i in leaves)
    steps: list[dict[str, Any]] = [{
        "kind": "leaves", "nodes": leaves + consts,
        "text": (f"Assign values to the leaves: {assigned or '(none)'}"
                 + (f"; constants: {', '.join(nodes[i]['name'] for i in consts)}" if consts else ""))}]
    steps += [{"kind": "forward", "node": i, "value": nodes[i]["value"], "text": nodes[i]["formula"]}
              for i in range(len(order)) if kinds[i] == "op"]
    root_i = index[root.id]
    steps.append({"kind": "seed", "node": root_i, "grad": "1",
                  "text": f"Seed the root: ∂{name(root)}/∂{name(root)} = 1 "
                          "(the output's gradient with respect to itself)"})
    steps += backward_steps
    summary = "; ".join(f"{nodes[i]['name']}.grad = {_sum_text(parts[order[i].id], nodes[i]['grad'])}"
                        for i in leaves)
    steps.append({"kind": "done", "text": f"Done. Leaf gradients: {summary or '(no leaves)'}"})

    edges = [{"id": f"edge-{i}-{k}", "from": j, "to": i, "k": k}
             for i in range(len(order)) for k, j in enumerate(inputs[i])]
    return {
        "title": title or f"tapegrad: the graph of {name(root)}",
        "root": root_i, "nodes": nodes, "edges": edges, "steps": steps, "leaves": leaves,
        "compact": compact, "maxNodes": max_nodes,
        "forwardSteps": sum(s["kind"] in ("leaves", "forward") for s in steps),
        "backwardSteps": len(backward_steps),
        "backwardNote": ("Backward visits every node after all the nodes that use it, inputs "
                         "left to right; backward() walks the tape in reverse, which adds the "
                         "same contributions in another order."),
    }


def _sum_text(parts: list[str], total: str, most: int = 8) -> str:
    """``3 + 3 + 4 = 10``; long sums keep their first and last terms (so that the steps of
    a leaf used n times take O(n) text, not O(n²))."""
    if len(parts) <= 1:
        return total
    if len(parts) > most:
        hidden = len(parts) - most + 2
        parts = [*parts[:most - 3], f"… {hidden} more …", *parts[-1:]]
    return f"{' + '.join(parts)} = {total}"


def explain(root: Any, path: str | Path | None = None, *, names: Mapping[str, Any] | None = None,
            anomalies: Mapping[Any, str] | None = None, title: str | None = None,
            max_nodes: int = MAX_NODES) -> Path | str:
    """Write one self-contained HTML page that steps through the forward pass of the graph
    below ``root`` in tape order, then its backward pass edge by edge, with each edge's
    local rule and numbers and the running sum at every node that accumulates.

    The page has no external resources and a Content-Security-Policy that forbids network
    access. ``names`` maps names to Vars (``{"x": x, "y": y}``); ``anomalies`` maps node
    ids (or Vars) to messages the page shows prominently. Above ``max_nodes`` nodes the
    page draws compact nodes (pan and zoom; details in the side panel) and says so.
    The Vars' ``.grad`` are not used or changed: the page runs its own sweep from root.

    Returns the path written, or the HTML text when ``path`` is None.
    """
    data = explain_data(root, names=names, anomalies=anomalies, title=title, max_nodes=max_nodes)
    script = _asset("explain.js")
    if "</script" in script.lower():
        raise AssertionError("explain.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = ("default-src 'none'; script-src 'sha256-" + digest + "'; style-src 'unsafe-inline'; "
           "img-src data:; font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    page = _asset("explain.html").format(
        csp=html.escape(csp), title=html.escape(data["title"]), css=_asset("explain.css"),
        data=_json_for_html(data), script=script)
    if path is None:
        return page
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------
# Command line: python -m tapegrad explain "x**2 + x*y" x=3 y=4 -o graph.html

class ExpressionError(ValueError):
    """An expression the command line does not accept."""


def evaluate(expression: str, variables: Mapping[str, Any], backend: ModuleType) -> Any:
    """Evaluate ``expression`` over ``variables`` with the backend's op functions, by
    walking its syntax tree: numbers, names, + - * / **, unary -/+, and calls of op
    functions only. Nothing is passed to eval()."""
    functions = {op: getattr(backend, op) for op, _ in backend.ops()}
    if hasattr(backend, "where"):
        functions["where"] = backend.where
    constants = {"pi": math.pi, "e": math.e}
    binary = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.Pow: lambda a, b: a ** b}
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as err:
        raise ExpressionError(f"cannot parse {expression!r}: {err}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in variables:
                return variables[node.id]
            if node.id in constants:
                return constants[node.id]
            raise ExpressionError(
                f"unknown name {node.id!r}: give it a value ({node.id}=1.5)"
                + (" or call it, e.g. sin(x)" if node.id in functions else ""))
        if isinstance(node, ast.BinOp) and type(node.op) in binary:
            return binary[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                raise ExpressionError(
                    f"not a tapegrad op: {ast.unparse(node.func)!r}; "
                    f"the functions are: {', '.join(sorted(functions))}")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"{node.func.id}() takes positional arguments only")
            return functions[node.func.id](*[ev(a) for a in node.args])
        raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r} "
                              "(use numbers, variables, + - * / **, and op functions)")

    try:
        return ev(tree.body)
    except ExpressionError:
        raise
    except (ArithmeticError, TypeError, ValueError, RecursionError) as err:
        raise ExpressionError(f"cannot evaluate {expression!r}: {err}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m tapegrad explain EXPR NAME=VALUE ... [-o FILE] [--dot | --svg] [--open]``"""
    parser = argparse.ArgumentParser(
        prog="python -m tapegrad explain",
        description="Write a self-contained HTML page that steps through the forward and "
                    "backward passes of an expression (or, with --dot/--svg, a Graphviz picture).",
        epilog='example: python -m tapegrad explain "x*x + x*y" x=3 y=4 -o graph.html')
    parser.add_argument("expression", help="e.g. 'x**2 + x*y' or 'sigmoid(w*x)'")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE", help="the variables, e.g. x=3")
    parser.add_argument("-o", "--output", help="output file (default graph.html / .dot / .svg; "
                                                "'-' for standard output)")
    static = parser.add_mutually_exclusive_group()
    static.add_argument("--dot", action="store_true", help="write Graphviz DOT source instead")
    static.add_argument("--svg", action="store_true", help="write an SVG picture (needs dot)")
    parser.add_argument("--rankdir", choices=RANKDIRS, default="LR", help="for --dot/--svg")
    parser.add_argument("--backend", choices=("cpp", "reference"), default="cpp")
    parser.add_argument("--open", action="store_true", help="open the result in a browser")
    args = parser.parse_args(argv)

    import tapegrad
    backend = tapegrad.reference if args.backend == "reference" else tapegrad
    functions = {op for op, _ in backend.ops()} | {"where"}
    variables = {}
    for item in args.values:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            parser.error(f"expected NAME=VALUE, got {item!r}")
        if key in functions:
            parser.error(f"{key!r} is an op function; pick another variable name")
        try:
            variables[key] = backend.Var(float(text))
        except ValueError:
            parser.error(f"{key}: not a number: {text!r}")
    try:
        root = evaluate(args.expression, variables, backend)
    except ExpressionError as err:
        parser.error(str(err))
    if not isinstance(root, backend.Var):
        parser.error(f"{args.expression!r} does not depend on any variable (it is {root!r})")

    kind = "dot" if args.dot else "svg" if args.svg else "html"
    out = args.output or f"graph.{kind}"
    try:
        if kind == "html":
            text = explain(root, names=variables, title=f"tapegrad: {args.expression}")
        else:
            dot = draw(root, rankdir=args.rankdir, names=variables)
            text = dot.source if kind == "dot" else dot.pipe(format="svg", encoding="utf-8")
    except (ImportError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert isinstance(text, str)
    if out == "-":
        sys.stdout.write(text)
        return 0
    Path(out).write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    if args.open:
        import webbrowser
        webbrowser.open(Path(out).resolve().as_uri())
    return 0
