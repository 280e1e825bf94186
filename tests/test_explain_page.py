"""tapegrad.explain_page: the explain page's data (steps, rules, numbers, anomalies) and
its HTML (self-contained, CSP, escaping). The page itself is exercised in a real browser in
test_browser.py."""
import base64
import hashlib
import json
import math
import re
from collections import Counter

import pytest
from helpers import square_plus_product

import tapegrad
from tapegrad import explain_page, viz
from tapegrad.graph import backward_edges, fmt, topo_order

EVIL = "</script><script>window.pwned=1</script>"


# ---------------------------------------------------------------------------------------
# The explain page's data

def test_explain_worked_example_steps(backend):
    f, x, y = square_plus_product(backend)
    data = explain_page.explain_data(f, names={"x": x, "y": y})
    steps = data["steps"]
    assert steps[0]["kind"] == "leaves"
    assert steps[0]["text"] == "Assign values to the leaves: x = 3, y = 4"
    forward = [s for s in steps if s["kind"] == "forward"]
    assert [s["value"] for s in forward] == ["9", "12", "21"]
    assert [s["text"] for s in forward] == ["n1 = x × x = 3 × 3 = 9", "n2 = x × y = 3 × 4 = 12",
                                            "f = n1 + n2 = 9 + 12 = 21"]
    kinds = [s["kind"] for s in steps]
    assert kinds == ["leaves", "forward", "forward", "forward", "seed"] + ["edge"] * 6 + ["done"]
    assert steps[4]["grad"] == "1"
    edges = steps[5:11]
    assert [s["text"] for s in edges] == [
        "+ : ∂/∂a = grad × 1 = 1 × 1 = 1", "+ : ∂/∂b = grad × 1 = 1 × 1 = 1",
        "× : ∂/∂a = grad × b = 1 × 3 = 3", "× : ∂/∂b = grad × a = 1 × 3 = 3",
        "× : ∂/∂a = grad × b = 1 × 4 = 4", "× : ∂/∂b = grad × a = 1 × 3 = 3"]
    ix, iy = (next(n["i"] for n in data["nodes"] if n["name"] == k) for k in "xy")
    into_x = [s for s in edges if s["to"] == ix]
    assert [s["contribution"] for s in into_x] == ["3", "3", "4"]  # the worked example's order
    assert [s["sum"] for s in into_x] == ["3", "3 + 3 = 6", "3 + 3 + 4 = 10"]
    assert [s["sum"] for s in edges if s["to"] == iy] == ["3"]
    assert steps[-1]["text"] == "Done. Leaf gradients: x.grad = 3 + 3 + 4 = 10; y.grad = 3"
    assert (x.grad, y.grad, f.grad) == (0.0, 0.0, 0.0)  # explain does not touch the Vars


def test_explain_edges_agree_with_backward_edges(backend):
    # A graph with shared nodes, a constant, a zero adjoint branch and a unary op.
    a, b = backend.Var(0.7), backend.Var(-1.3)
    h = a * b + backend.sin(a)
    f = h * h / (b + 3.0) + backend.relu(b) * a
    data = explain_page.explain_data(f)
    f.backward()
    order = topo_order(f)
    index = {v.id: i for i, v in enumerate(order)}  # not order.index: Var == builds a node
    expected = Counter((index[e.node.id], e.k, fmt(e.contribution))
                       for e in backward_edges(f, backend))
    shown = Counter((s["node"], s["k"], s["contribution"])
                    for s in data["steps"] if s["kind"] == "edge")
    assert shown == expected
    grads = {n["i"]: n["grad"] for n in data["nodes"]}
    for i, v in enumerate(order):
        if v.op == "leaf":
            assert grads[i] == fmt(v.grad)


def _numbers(text):
    """Evaluate the numeric middle of a rule line, '... = 1 × 0.7311 × 0.2689 = 0.1966'."""
    middle = text.rsplit(" = ", 2)[1]
    for old, new in (("×", "*"), ("÷", "/"), ("−", "-"), ("^", "**"), ("²", "**2"),
                     ("½", "0.5"), ("ln(", "log(")):
        middle = middle.replace(old, new)
    return eval(middle, {"__builtins__": {}}, {"log": math.log, "cos": math.cos, "sin": math.sin})


INPUTS = {"a<b": (1.5, 2.5), "a>b": (2.5, 1.5), "tie": (1.5, 1.5), "negative": (-0.5, 1.5)}
RULE_CASES = [pytest.param(op, arity, a, b, id=f"{op}-{case}") for op, arity in tapegrad.ops()
              for case, (a, b) in INPUTS.items() if not (op in ("sqrt", "log") and a < 0)]


@pytest.mark.parametrize("op, arity, a, b", RULE_CASES)
def test_every_rule_line_matches_local_grads(backend, op, arity, a, b):
    x, y = backend.Var(a), backend.Var(b)
    node = getattr(backend, op)(x, y) if arity == 2 else getattr(backend, op)(x)
    g = 2.0
    for k, c in enumerate(backend.local_grads(node, g)[:arity]):
        text = explain_page._rule_text(node, k, g, c)
        assert text.startswith(f"{explain_page.SYMBOL.get(op, op)} : ∂/∂{'ab'[k]} = ")
        assert text.endswith(f" = {fmt(c)}")
        if math.isfinite(c):  # pow of a negative base: nan, and Python's ** goes complex
            # the factors shown are rounded (0.0175 for 0.017453: up to 0.5% each)
            assert math.isclose(_numbers(text), c, rel_tol=1e-2, abs_tol=1e-12), text


def test_rule_for_an_op_without_a_row_is_the_op_tables_with_local_grads_numbers(monkeypatch):
    monkeypatch.delitem(explain_page.RULES, "mul")
    x, y = tapegrad.Var(3.0), tapegrad.Var(4.0)
    assert explain_page._rule_text(x * y, 0, 1.0, 4.0) == "× : ∂/∂a = g * y = 1 × 4 = 4"


def test_sigmoid_example_numbers():
    w, x = tapegrad.Var(0.5), tapegrad.Var(2.0)
    data = explain_page.explain_data(tapegrad.sigmoid(w * x), names={"w": w, "x": x})
    edges = [s["text"] for s in data["steps"] if s["kind"] == "edge"]
    assert edges == ["σ : ∂/∂a = grad × out × (1 − out) = 1 × 0.7311 × 0.2689 = 0.1966",
                     "× : ∂/∂a = grad × b = 0.1966 × 2 = 0.3932",
                     "× : ∂/∂b = grad × a = 0.1966 × 0.5000 = 0.0983"]


def test_tiny_numbers_are_never_shown_as_zero():
    x = tapegrad.Var(2.0)
    f = x * 1e-9 + tapegrad.exp(-x * 20.0)
    data = explain_page.explain_data(f, names={"x": x})
    shown = [n[k] for n in data["nodes"] for k in ("value", "grad")]
    shown += [s["contribution"] for s in data["steps"] if s["kind"] == "edge"]
    assert "1.000e-09" in shown
    assert not [s for s in shown if re.fullmatch(r"-?0\.0+", s)]
    assert all(s == "0" for s in shown if re.fullmatch(r"-?0[.0e+-]*", s))


def test_nonfinite_nodes_and_their_origin(backend):
    a, b = backend.Var(-1.0), backend.Var(2.0)
    f = backend.log(a) * b + b
    data = explain_page.explain_data(f, names={"a": a, "b": b})
    bad = {n["name"]: n["origin"] for n in data["nodes"] if n["nonfinite"]}
    assert bad == {"n1": True, "n2": False, "f": False, "b": False}  # b's grad is nan


def test_anomalies_are_attached_to_nodes():
    f, x, y = square_plus_product(tapegrad)
    data = explain_page.explain_data(f, names={"x": x, "y": y},
                                     anomalies={x: "used 3 times", f.id: "big"})
    notes = {n["name"]: n["anomaly"] for n in data["nodes"]}
    assert notes == {"x": "used 3 times", "y": None, "n1": None, "n2": None, "f": "big"}
    with pytest.raises(ValueError, match="not in the graph"):
        explain_page.explain_data(f, anomalies={tapegrad.Var(1.0).id: "elsewhere"})


def test_long_sums_stay_short():
    x = tapegrad.Var(0.5)
    f = x
    for _ in range(2000):
        f = f + x
    data = explain_page.explain_data(f, names={"x": x})
    assert data["compact"]
    sums = [s["sum"] for s in data["steps"] if s["kind"] == "edge"]
    assert sums[-1] == "1 + 1 + 1 + 1 + 1 + … 1995 more … + 1 = 2001"
    assert max(map(len, sums)) < 60


# ---------------------------------------------------------------------------------------
# The HTML: self-contained, CSP, escaping

def _script(page):
    return re.search(r"<script>(.*?)</script>", page, re.S).group(1)


def test_explain_html_is_self_contained_with_a_csp(tmp_path):
    f, x, y = square_plus_product(tapegrad)
    out = explain_page.explain(f, tmp_path / "g.html", names={"x": x, "y": y})
    assert out == tmp_path / "g.html"
    page = out.read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1)
    assert page.index("Content-Security-Policy") < page.index("<script")
    digest = base64.b64encode(hashlib.sha256(_script(page).encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in csp
    assert "default-src &#x27;none&#x27;" in csp
    assert "unsafe-inline" not in csp.split("style-src")[0]
    assert set(re.findall(r"https?://[^\s\"')]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe|object)\b|src=|@import|url\((?!#)", page)


def test_explain_html_escapes_every_label():
    x = tapegrad.Var(1.0)
    f = x * 2.0
    page = explain_page.explain(f, names={EVIL: x, "<b>&amp;\u2028": f}, anomalies={x: EVIL},
                                title=EVIL)
    assert EVIL not in page and "<b>" not in page and "\u2028" not in page
    assert page.lower().count("</script") == 2  # the data block's and the script's own
    blob = re.search(r'<script type="application/json" id="tg-data">(.*?)</script>', page,
                     re.S).group(1)
    data = json.loads(blob)
    assert data["title"] == EVIL and data["nodes"][0]["name"] == EVIL
    assert data["nodes"][0]["anomaly"] == EVIL and data["nodes"][-1]["name"] == "<b>&amp;\u2028"
    assert "<title>&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;</title>" in page


def test_not_a_var_is_a_type_error():
    with pytest.raises(TypeError, match=r"explain\(\) expects a Var"):
        explain_page.explain(3.0)
    with pytest.raises(TypeError, match=r"draw\(\) expects a Var"):
        viz.draw([1])


def test_explain_returns_text_without_path():
    f, x, y = square_plus_product(tapegrad)
    page = explain_page.explain(f)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    assert tapegrad.explain is explain_page.explain and tapegrad.draw is viz.draw

