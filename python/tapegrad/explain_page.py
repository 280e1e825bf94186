"""The explain page: one self-contained HTML file that steps through the forward and
backward passes of a graph, edge by edge (``explain``).

The page computes nothing: every value, contribution and running sum is computed here,
by the backend's own op table (``local_grads``), and embedded as data that the page's
script only animates. It needs no Graphviz.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from tapegrad.graph import (
    MAX_NODES,
    SYMBOL,
    SYMBOLS,
    Names,
    check_root,
    fmt,
    kind,
    node_names,
    topo_order,
)

__all__ = ["explain", "explain_data"]


def _p(x: float) -> str:
    """A number as it is substituted into a formula: negatives in parentheses."""
    return f"({fmt(x)})" if x < 0 else fmt(x)


def _pick(a: float, b: float, first: bool) -> str:
    """maximum/minimum's factor: ½ at a tie, 1 for the chosen side, and 1 for both sides
    when an operand is NaN (no order)."""
    return "½" if a == b else "1" if first or a != a or b != b else "0"


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
    "pow":      (("grad × b × a^(b−1)",
                  lambda a, b, o, g: f"{_p(g)} × {_p(b)} × {_p(a)}^{_p(b - 1)}"),
                 ("grad × out × ln(a)", lambda a, b, o, g: f"{_p(g)} × {_p(o)} × ln({fmt(a)})")),
    "maximum":  (("grad × [a > b] (½ at a tie, 1 if NaN)",
                  lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, a > b)}"),
                 ("grad × [b > a] (½ at a tie, 1 if NaN)",
                  lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, b > a)}")),
    "minimum":  (("grad × [a < b] (½ at a tie, 1 if NaN)",
                  lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, a < b)}"),
                 ("grad × [b < a] (½ at a tie, 1 if NaN)",
                  lambda a, b, o, g: f"{_p(g)} × {_pick(a, b, b < a)}")),
    **{cmp: (("grad × 0 (a comparison passes no gradient)", lambda a, b, o, g: f"{_p(g)} × 0"),) * 2
       for cmp in ("lt", "le", "gt", "ge", "eq", "ne")},
    **{op: (("grad × 0 (a logical op passes no gradient)", lambda a, b, o, g: f"{_p(g)} × 0"),) * 2
       for op in ("logical_and", "logical_or")},
    "logical_not": (("grad × 0 (a logical op passes no gradient)",
                     lambda a, b, o, g: f"{_p(g)} × 0"),),
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
    "sigmoid":  (("grad × out × (1 − out)",
                  lambda a, b, o, g: f"{_p(g)} × {_p(o)} × {_p(1 - o)}"),),
    "relu":     (("grad × [a > 0]", lambda a, b, o, g: f"{_p(g)} × {int(a > 0)}"),),
}


def _backend(root: Any) -> ModuleType:
    """The module whose local_grads applies to root's graph."""
    from . import _core, reference

    return reference if isinstance(root, reference.Var) else _core


def _backward_order(root: Any, order: list[Any]) -> list[Any]:
    """A reverse topological order that visits a node's inputs left to right, breadth
    first (the worked examples' order: root, then left ×, then right ×), so each node comes after
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
    else:  # no wording here yet: the rule as the op table writes it (x, y, out, g)
        text = f"{_table_rule(v.op, k)} = {_p(g)} × {_p(c / g)}"
    return f"{SYMBOL.get(v.op, v.op)} : ∂/∂{wrt} = {text} = {fmt(c)}"


@functools.cache
def _table_rules() -> dict[str, dict[str, Any]]:
    from tapegrad import _core
    return {row["name"]: row for row in _core.op_rules()}


def _table_rule(op: str, k: int) -> str:
    """Local rule k of op as ops.def writes it, namespaces dropped."""
    text = _table_rules()[op]["dy" if k else "dx"]
    return " ".join(text.replace("math::", "").replace("std::", "").split())



def _layout(order: list[Any], inputs: list[list[int]],
            kinds: list[str]) -> tuple[list[int], list[float]]:
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
    check_root("explain", root)
    backend = _backend(root)
    order = topo_order(root)
    name = node_names(root, names, order)
    index = {v.id: i for i, v in enumerate(order)}
    inputs = [[index[p.id] for p in v.inputs] for v in order]
    kinds = [kind(v) for v in order]
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
        bad_value, bad_grad = not math.isfinite(v.value), not math.isfinite(grad)
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
                 + (f"; constants: {', '.join(nodes[i]['name'] for i in consts)}"
                    if consts else ""))}]
    steps += [{"kind": "forward", "node": i, "value": nodes[i]["value"],
               "text": nodes[i]["formula"]}
              for i in range(len(order)) if kinds[i] == "op"]
    root_i = index[root.id]
    steps.append({"kind": "seed", "node": root_i, "grad": "1",
                  "text": f"Seed the root: ∂{name(root)}/∂{name(root)} = 1 "
                          "(the output's gradient with respect to itself)"})
    steps += backward_steps
    summary = "; ".join(f"{nodes[i]['name']}.grad = "
                        f"{_sum_text(parts[order[i].id], nodes[i]['grad'])}"
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

    Examples:
        >>> import tapegrad as tg
        >>> x, y = tg.Var(3.0), tg.Var(4.0)
        >>> html = tg.explain(x * x + x * y, names={"x": x, "y": y})  # no path: the HTML text
        >>> html.startswith("<!DOCTYPE html>")
        True
    """
    data = explain_data(root, names=names, anomalies=anomalies, title=title, max_nodes=max_nodes)
    script = _asset("explain.js")
    if "</script" in script.lower():
        raise AssertionError("explain.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = ("default-src 'none'; script-src 'sha256-" + digest + "'; style-src 'unsafe-inline'; "
           "img-src data:; font-src 'none'; connect-src 'none'; base-uri 'none'; "
           "form-action 'none'")
    page = _asset("explain.html").format(
        csp=html.escape(csp), title=html.escape(data["title"]), css=_asset("explain.css"),
        data=_json_for_html(data), script=script)
    if path is None:
        return page
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out

