"""tapegrad.viz: the Graphviz drawing (structure and labels), the explain page's data and
HTML (escaping, CSP, numbers), the command line, and the errors when Graphviz is missing.
The page itself is exercised in a real browser in test_browser.py."""
import base64
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import tapegrad
from tapegrad import viz
from tapegrad.__main__ import fmt
from tapegrad.graph import backward_edges, topo_order

EVIL = "</script><script>window.pwned=1</script>"


def needs_dot():
    """Skip when Graphviz's `dot` is absent, unless TAPEGRAD_REQUIRE_DOT=1 (then fail)."""
    if shutil.which("dot") is None:
        message = "Graphviz's `dot` program is not installed (apt install graphviz)"
        if os.environ.get("TAPEGRAD_REQUIRE_DOT") == "1":
            pytest.fail(message + ", and TAPEGRAD_REQUIRE_DOT=1")
        pytest.skip(message)


def seed(backend):
    x, y = backend.Var(3.0), backend.Var(4.0)
    return x * x + x * y, x, y


def dot_nodes_edges(source):
    nodes = dict(re.findall(r'^\s*(n\d+) \[label="(.*?)" ', source, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+)", source, re.M)
    return nodes, edges


# ---------------------------------------------------------------------------------------
# draw()

def test_draw_seed_example_structure(backend):
    pytest.importorskip("graphviz")
    f, x, y = seed(backend)
    f.backward()
    dot = viz.draw(f, names={"x": x, "y": y})
    nodes, edges = dot_nodes_edges(dot.source)
    assert sorted(nodes.values()) == sorted([
        "{ x | leaf | value 3 | grad 10 }", "{ y | leaf | value 4 | grad 3 }",
        "{ n1 | mul × | value 9 | grad 1 }", "{ n2 | mul × | value 12 | grad 1 }",
        "{ f | add + | value 21 | grad 1 }"])
    by_label = {label.split(" | ")[0][2:]: n for n, label in nodes.items()}
    assert Counter(edges) == Counter({  # x feeds x*x twice: two edges
        (by_label["x"], by_label["n1"]): 2, (by_label["x"], by_label["n2"]): 1,
        (by_label["y"], by_label["n2"]): 1, (by_label["n1"], by_label["f"]): 1,
        (by_label["n2"], by_label["f"]): 1})
    assert "rankdir=LR" in dot.source and dot.format == "svg"


def test_draw_kinds_are_visibly_distinct_and_nonfinite_is_red(backend):
    pytest.importorskip("graphviz")
    x = backend.Var(-1.0)
    f = backend.log(x) * 2.0 + x
    dot = viz.draw(f, names={"x": x})
    lines = {label.split(" | ")[0]: label + attrs for label, attrs in
             re.findall(r'^\s*n\d+ \[label="\{ (.*?) \}"(.*)\]$', dot.source, re.M)}
    assert 'fillcolor="#dbeafe"' in lines["x"]  # leaf
    assert 'style="filled,dashed"' in lines["2"] and 'fillcolor="#f3f4f6"' in lines["2"]  # const
    assert 'fillcolor="#fee2e2"' in lines["n1"] and "value nan" in lines["n1"]  # log(-1)
    assert 'fillcolor="#fef3c7"' not in lines["x"] and 'fillcolor="#fee2e2"' not in lines["x"]


def test_draw_options_and_operand_labels(backend):
    pytest.importorskip("graphviz")
    x = backend.Var(2.0)
    f = 1.0 - x / 3.0
    dot = viz.draw(f, rankdir="TB", format="png")
    assert dot.format == "png" and "rankdir=TB" in dot.source
    assert re.findall(r"-> n\d+ \[label=(\w)\]", dot.source) == ["a", "b", "a", "b"]  # sub, div
    with pytest.raises(ValueError, match="rankdir must be one of"):
        viz.draw(f, rankdir="sideways")


def test_draw_escapes_record_syntax_and_renders_it_literally():
    pytest.importorskip("graphviz")
    needs_dot()
    name = 'a|b{c}<d>"e\\'
    x = tapegrad.Var(1.0)
    svg = viz.draw(x * 2.0, names={name: x}).pipe(format="svg", encoding="utf-8")
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "a|b{c}&lt;d&gt;&quot;e\\" in texts
    assert "value 2" in texts and "grad 0" in texts


def test_repr_svg_and_mimebundle():
    pytest.importorskip("graphviz")
    needs_dot()
    f, x, y = seed(tapegrad)
    svg = viz._repr_svg_(f)
    assert svg.lstrip().startswith("<?xml") and "value 21" in svg
    bundle = viz._repr_mimebundle_(f)
    assert set(bundle) == {"image/svg+xml", "text/plain"} and bundle["text/plain"] == repr(f)
    assert set(viz._repr_mimebundle_(f, include={"text/plain"})) == {"text/plain"}
    assert set(viz._repr_mimebundle_(f, exclude={"text/plain"})) == {"image/svg+xml"}


def test_repr_has_no_picture_for_big_graphs():
    x = tapegrad.Var(0.5)
    s = x
    for _ in range(viz.MAX_NODES):
        s = tapegrad.sin(s)
    assert viz._repr_svg_(s) is None
    assert viz._repr_mimebundle_(s) == {"text/plain": repr(s)}


# ---------------------------------------------------------------------------------------
# Graphviz missing: the error says what to install

def test_missing_graphviz_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz -> ImportError
    f, x, y = seed(tapegrad)
    with pytest.raises(ImportError) as err:
        viz.draw(f)
    assert "pip install 'tapegrad[viz]'" in str(err.value) and "apt install graphviz" in str(err.value)
    bundle = viz._repr_mimebundle_(f)
    assert set(bundle) == {"text/plain"}
    assert bundle["text/plain"].startswith(repr(f)) and "tapegrad[viz]" in bundle["text/plain"]
    assert isinstance(viz.explain(f), str)  # the page needs no Graphviz


def test_missing_dot_binary_says_what_to_install(monkeypatch, tmp_path, capsys):
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    f, x, y = seed(tapegrad)
    dot = viz.draw(f)  # building the graph needs no binary
    assert "value 21" in dot.source
    for render in (lambda: dot.pipe(format="svg"), lambda: dot.render(tmp_path / "g")):
        with pytest.raises(RuntimeError, match=r"apt install graphviz"):
            render()
    assert viz._repr_svg_(f) is None
    assert viz.main(["x*y", "x=3", "y=4", "--svg", "-o", str(tmp_path / "g.svg")]) == 1
    assert "apt install graphviz" in capsys.readouterr().err
    assert not (tmp_path / "g.svg").exists()


# ---------------------------------------------------------------------------------------
# The explain page's data

def test_explain_seed_steps(backend):
    f, x, y = seed(backend)
    data = viz.explain_data(f, names={"x": x, "y": y})
    steps = data["steps"]
    assert steps[0]["kind"] == "leaves" and steps[0]["text"] == "Assign values to the leaves: x = 3, y = 4"
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
    assert [s["contribution"] for s in into_x] == ["3", "3", "4"]  # the seed's order
    assert [s["sum"] for s in into_x] == ["3", "3 + 3 = 6", "3 + 3 + 4 = 10"]
    assert [s["sum"] for s in edges if s["to"] == iy] == ["3"]
    assert steps[-1]["text"] == "Done. Leaf gradients: x.grad = 3 + 3 + 4 = 10; y.grad = 3"
    assert (x.grad, y.grad, f.grad) == (0.0, 0.0, 0.0)  # explain does not touch the Vars


def test_explain_edges_agree_with_backward_edges(backend):
    # A graph with shared nodes, a constant, a zero adjoint branch and a unary op.
    a, b = backend.Var(0.7), backend.Var(-1.3)
    h = a * b + backend.sin(a)
    f = h * h / (b + 3.0) + backend.relu(b) * a
    data = viz.explain_data(f)
    f.backward()
    order = topo_order(f)
    index = {v.id: i for i, v in enumerate(order)}  # not order.index: Var == builds a node
    expected = Counter((index[e.node.id], e.k, fmt(e.contribution))
                       for e in backward_edges(f, backend))
    shown = Counter((s["node"], s["k"], s["contribution"]) for s in data["steps"] if s["kind"] == "edge")
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
        text = viz._rule_text(node, k, g, c)
        assert text.startswith(f"{viz.SYMBOL.get(op, op)} : ∂/∂{'ab'[k]} = ")
        assert text.endswith(f" = {fmt(c)}")
        if math.isfinite(c):  # pow of a negative base: nan, and Python's ** goes complex
            assert math.isclose(_numbers(text), c, rel_tol=2e-3, abs_tol=1e-12), text


def test_rule_for_an_op_without_a_row_uses_local_grads(monkeypatch):
    monkeypatch.delitem(viz.RULES, "mul")
    x, y = tapegrad.Var(3.0), tapegrad.Var(4.0)
    assert viz._rule_text(x * y, 0, 1.0, 4.0) == "× : ∂/∂a = grad × ∂out/∂a = 1 × 4 = 4"


def test_sigmoid_example_numbers():
    w, x = tapegrad.Var(0.5), tapegrad.Var(2.0)
    data = viz.explain_data(tapegrad.sigmoid(w * x), names={"w": w, "x": x})
    edges = [s["text"] for s in data["steps"] if s["kind"] == "edge"]
    assert edges == ["σ : ∂/∂a = grad × out × (1 − out) = 1 × 0.7311 × 0.2689 = 0.1966",
                     "× : ∂/∂a = grad × b = 0.1966 × 2 = 0.3932",
                     "× : ∂/∂b = grad × a = 0.1966 × 0.5000 = 0.0983"]


def test_tiny_numbers_are_never_shown_as_zero():
    x = tapegrad.Var(2.0)
    f = x * 1e-9 + tapegrad.exp(-x * 20.0)
    data = viz.explain_data(f, names={"x": x})
    shown = [n[k] for n in data["nodes"] for k in ("value", "grad")]
    shown += [s["contribution"] for s in data["steps"] if s["kind"] == "edge"]
    assert "1.000e-09" in shown
    assert not [s for s in shown if re.fullmatch(r"-?0\.0+", s)]
    assert all(s == "0" for s in shown if re.fullmatch(r"-?0[.0e+-]*", s))


def test_nonfinite_nodes_and_their_origin(backend):
    a, b = backend.Var(-1.0), backend.Var(2.0)
    f = backend.log(a) * b + b
    data = viz.explain_data(f, names={"a": a, "b": b})
    bad = {n["name"]: n["origin"] for n in data["nodes"] if n["nonfinite"]}
    assert bad == {"n1": True, "n2": False, "f": False, "b": False}  # b's grad is nan


def test_anomalies_are_attached_to_nodes():
    f, x, y = seed(tapegrad)
    data = viz.explain_data(f, names={"x": x, "y": y}, anomalies={x: "used 3 times", f.id: "big"})
    notes = {n["name"]: n["anomaly"] for n in data["nodes"]}
    assert notes == {"x": "used 3 times", "y": None, "n1": None, "n2": None, "f": "big"}
    with pytest.raises(ValueError, match="not in the graph"):
        viz.explain_data(f, anomalies={tapegrad.Var(1.0).id: "elsewhere"})


def test_long_sums_stay_short():
    x = tapegrad.Var(0.5)
    f = x
    for _ in range(2000):
        f = f + x
    data = viz.explain_data(f, names={"x": x})
    assert data["compact"]
    sums = [s["sum"] for s in data["steps"] if s["kind"] == "edge"]
    assert sums[-1] == "1 + 1 + 1 + 1 + 1 + … 1995 more … + 1 = 2001"
    assert max(map(len, sums)) < 60


# ---------------------------------------------------------------------------------------
# The HTML: self-contained, CSP, escaping

def _script(page):
    return re.search(r"<script>(.*?)</script>", page, re.S).group(1)


def test_explain_html_is_self_contained_with_a_csp(tmp_path):
    f, x, y = seed(tapegrad)
    out = viz.explain(f, tmp_path / "g.html", names={"x": x, "y": y})
    assert out == tmp_path / "g.html"
    page = out.read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1)
    assert page.index("Content-Security-Policy") < page.index("<script")
    digest = base64.b64encode(hashlib.sha256(_script(page).encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in csp
    assert "default-src &#x27;none&#x27;" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert set(re.findall(r"https?://[^\s\"')]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe|object)\b|src=|@import|url\((?!#)", page)


def test_explain_html_escapes_every_label():
    x = tapegrad.Var(1.0)
    f = x * 2.0
    page = viz.explain(f, names={EVIL: x, "<b>&amp;\u2028": f}, anomalies={x: EVIL}, title=EVIL)
    assert EVIL not in page and "<b>" not in page and "\u2028" not in page
    assert page.lower().count("</script") == 2  # the data block's and the script's own
    blob = re.search(r'<script type="application/json" id="tg-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert data["title"] == EVIL and data["nodes"][0]["name"] == EVIL
    assert data["nodes"][0]["anomaly"] == EVIL and data["nodes"][-1]["name"] == "<b>&amp;\u2028"
    assert "<title>&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;</title>" in page


def test_not_a_var_is_a_type_error():
    with pytest.raises(TypeError, match=r"explain\(\) expects a Var"):
        viz.explain(3.0)
    with pytest.raises(TypeError, match=r"draw\(\) expects a Var"):
        viz.draw([1])


def test_explain_returns_text_without_path():
    f, x, y = seed(tapegrad)
    page = viz.explain(f)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    assert tapegrad.explain is viz.explain and tapegrad.draw is viz.draw


# ---------------------------------------------------------------------------------------
# Command line

def _page_data(path):
    page = Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'id="tg-data">(.*?)</script>', page, re.S).group(1))


def test_cli_writes_the_page(tmp_path, capsys):
    out = tmp_path / "graph.html"
    assert viz.main(["x*x + x*y", "x=3", "y=4", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = _page_data(out)
    assert data["title"] == "tapegrad: x*x + x*y"
    assert data["steps"][-1]["text"] == "Done. Leaf gradients: x.grad = 3 + 3 + 4 = 10; y.grad = 3"


def test_cli_x_squared_records_square(tmp_path):
    # Python's x**2 records one `square` node (ops.def): x gets 2x = 6 from it, not 3 + 3.
    out = tmp_path / "graph.html"
    assert viz.main(["x**2 + x*y", "x=3", "y=4", "-o", str(out), "--backend", "reference"]) == 0
    data = _page_data(out)
    assert [n["op"] for n in data["nodes"]] == ["leaf", "square", "leaf", "mul", "add"]
    assert data["steps"][-1]["text"] == "Done. Leaf gradients: x.grad = 6 + 4 = 10; y.grad = 3"


def test_cli_dot_svg_stdout_and_open(tmp_path, capsys, monkeypatch):
    pytest.importorskip("graphviz")
    assert viz.main(["sigmoid(w*x)", "w=0.5", "x=2", "--dot", "-o", "-"]) == 0
    source = capsys.readouterr().out
    nodes, edges = dot_nodes_edges(source)
    assert len(nodes) == 4 and len(edges) == 3 and "{ f | sigmoid σ | value 0.7311 | grad 0 }" in nodes.values()
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = tmp_path / "g.html"
    assert viz.main(["x*y", "x=1", "y=2", "-o", str(out), "--open"]) == 0
    assert opened == [out.resolve().as_uri()]
    if shutil.which("dot") or os.environ.get("TAPEGRAD_REQUIRE_DOT") == "1":
        svg = tmp_path / "g.svg"
        assert viz.main(["x*y", "x=1", "y=2", "--svg", "-o", str(svg), "--rankdir", "TB"]) == 0
        assert "<svg" in svg.read_text() and "value 2" in svg.read_text()


@pytest.mark.parametrize("argv, message", [
    (["__import__('os').system('echo pwned')"], "not a tapegrad op"),
    (["x.__class__", "x=1"], "not allowed in an expression"),
    (["x if x else y", "x=1", "y=2"], "not allowed in an expression"),
    (["[x]", "x=1"], "not allowed in an expression"),
    (["'a' * 3"], "not allowed in an expression"),
    (["sin(x, *y)", "x=1", "y=1"], "positional arguments only"),
    (["x + z", "x=1"], "unknown name 'z'"),
    (["sin + x", "x=1"], "or call it"),
    (["x +", "x=1"], "cannot parse"),
    (["x", "x"], "expected NAME=VALUE"),
    (["x", "x=abc"], "not a number"),
    (["sin", "sin=3"], "is an op function"),
    (["2 * pi"], "does not depend on any variable"),
    (["1 / 0 * x", "x=1"], "cannot evaluate"),
    (["sin(x, x)", "x=1"], "cannot evaluate"),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        viz.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("expression, expected", [
    ("x**2 + x*y", 21.0), ("-x / (y - 1) ** 0.5", -3 / math.sqrt(3)), ("sigmoid(x - y) * e", math.e / (1 + math.e)),
    ("maximum(x, y) + where(lt(x, y), x, y) + +pi", 4 + 3 + math.pi),
])
def test_evaluate(backend, expression, expected):
    x, y = backend.Var(3.0), backend.Var(4.0)
    assert math.isclose(viz.evaluate(expression, {"x": x, "y": y}, backend).value, expected)


def test_python_m_tapegrad_explain(tmp_path):
    out = tmp_path / "g.html"
    run = subprocess.run([sys.executable, "-m", "tapegrad", "explain", "x*x + x*y", "x=3", "y=4",
                          "-o", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert _page_data(out)["nodes"][-1]["value"] == "21"
