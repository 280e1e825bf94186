"""python -m tapegrad explain: the command line that writes the explain page (or a Graphviz
picture) for an expression, and the expressions it accepts and rejects."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dot_nodes_edges

from tapegrad.__main__ import explain_main
from tapegrad.expression import evaluate


def _page_data(path):
    page = Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'id="tg-data">(.*?)</script>', page, re.S).group(1))


def test_cli_writes_the_page(tmp_path, capsys):
    out = tmp_path / "graph.html"
    assert explain_main(["x*x + x*y", "x=3", "y=4", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = _page_data(out)
    assert data["title"] == "tapegrad: x*x + x*y"
    assert data["steps"][-1]["text"] == "Done. Leaf gradients: x.grad = 3 + 3 + 4 = 10; y.grad = 3"


def test_cli_x_squared_records_square(tmp_path):
    # Python's x**2 records one `square` node (ops.def): x gets 2x = 6 from it, not 3 + 3.
    out = tmp_path / "graph.html"
    assert explain_main(["x**2 + x*y", "x=3", "y=4", "-o", str(out), "--backend", "reference"]) == 0
    data = _page_data(out)
    assert [n["op"] for n in data["nodes"]] == ["leaf", "square", "leaf", "mul", "add"]
    assert data["steps"][-1]["text"] == "Done. Leaf gradients: x.grad = 6 + 4 = 10; y.grad = 3"


def test_cli_dot_svg_stdout_and_open(tmp_path, capsys, monkeypatch):
    pytest.importorskip("graphviz")
    assert explain_main(["sigmoid(w*x)", "w=0.5", "x=2", "--dot", "-o", "-"]) == 0
    source = capsys.readouterr().out
    nodes, edges = dot_nodes_edges(source)
    assert len(nodes) == 4 and len(edges) == 3 and "{ f | sigmoid σ | value 0.7311 | grad 0 }" in nodes.values()
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = tmp_path / "g.html"
    assert explain_main(["x*y", "x=1", "y=2", "-o", str(out), "--open"]) == 0
    assert opened == [out.resolve().as_uri()]
    if shutil.which("dot") or os.environ.get("TAPEGRAD_REQUIRE_DOT") == "1":
        svg = tmp_path / "g.svg"
        assert explain_main(["x*y", "x=1", "y=2", "--svg", "-o", str(svg), "--rankdir", "TB"]) == 0
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
        explain_main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("expression, expected", [
    ("x**2 + x*y", 21.0), ("-x / (y - 1) ** 0.5", -3 / math.sqrt(3)), ("sigmoid(x - y) * e", math.e / (1 + math.e)),
    ("maximum(x, y) + where(lt(x, y), x, y) + +pi", 4 + 3 + math.pi),
])
def test_evaluate(backend, expression, expected):
    x, y = backend.Var(3.0), backend.Var(4.0)
    assert math.isclose(evaluate(expression, {"x": x, "y": y}, backend).value, expected)


def test_python_m_tapegrad_explain(tmp_path):
    out = tmp_path / "g.html"
    run = subprocess.run([sys.executable, "-m", "tapegrad", "explain", "x*x + x*y", "x=3", "y=4",
                          "-o", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert _page_data(out)["nodes"][-1]["value"] == "21"
