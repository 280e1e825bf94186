"""tapegrad.viz: the Graphviz drawing (structure and labels), a Var's rich display in
Jupyter, and the errors when Graphviz is missing."""
import os
import re
import shutil
import sys
from collections import Counter

import pytest
from helpers import dot_nodes_edges, square_plus_product

import tapegrad
from tapegrad import explain_page, viz
from tapegrad.__main__ import explain_main


def needs_dot():
    """Skip when Graphviz's `dot` is absent, unless TAPEGRAD_REQUIRE_DOT=1 (then fail)."""
    if shutil.which("dot") is None:
        message = "Graphviz's `dot` program is not installed (apt install graphviz)"
        if os.environ.get("TAPEGRAD_REQUIRE_DOT") == "1":
            pytest.fail(message + ", and TAPEGRAD_REQUIRE_DOT=1")
        pytest.skip(message)


# ---------------------------------------------------------------------------------------
# draw()

def test_draw_worked_example_structure(backend):
    pytest.importorskip("graphviz")
    f, x, y = square_plus_product(backend)
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
    f, x, y = square_plus_product(tapegrad)
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
    f, x, y = square_plus_product(tapegrad)
    with pytest.raises(ImportError) as err:
        viz.draw(f)
    assert "pip install 'tapegrad[viz]'" in str(err.value)
    assert "apt install graphviz" in str(err.value)
    bundle = viz._repr_mimebundle_(f)
    assert set(bundle) == {"text/plain"}
    assert bundle["text/plain"].startswith(repr(f)) and "tapegrad[viz]" in bundle["text/plain"]
    assert isinstance(explain_page.explain(f), str)  # the page needs no Graphviz


def test_missing_dot_binary_says_what_to_install(monkeypatch, tmp_path, capsys):
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    f, x, y = square_plus_product(tapegrad)
    dot = viz.draw(f)  # building the graph needs no binary
    assert "value 21" in dot.source
    for render in (lambda: dot.pipe(format="svg"), lambda: dot.render(tmp_path / "g")):
        with pytest.raises(RuntimeError, match=r"apt install graphviz"):
            render()
    assert viz._repr_svg_(f) is None
    assert explain_main(["x*y", "x=3", "y=4", "--svg", "-o", str(tmp_path / "g.svg")]) == 1
    assert "apt install graphviz" in capsys.readouterr().err
    assert not (tmp_path / "g.svg").exists()

