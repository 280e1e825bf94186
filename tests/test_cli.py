"""python -m tapegrad explain: the command line that writes the explain page (or a Graphviz
picture) for an expression; the expressions it accepts (Python's precedence, any depth) and
rejects (one line on stderr, exit code 2, nothing evaluated)."""
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dot_nodes_edges, same

from tapegrad import reference
from tapegrad.__main__ import explain_main, main
from tapegrad.expression import evaluate
from tapegrad.graph import topo_order

PROG = "python -m tapegrad explain"
CHAIN = "x" + "**x" * 5000  # 15 KB, nested 5000 deep: deeper than Python's parser goes


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
    assert len(nodes) == 4 and len(edges) == 3
    assert "{ f | sigmoid σ | value 0.7311 | grad 0 }" in nodes.values()
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
    ("x**2 + x*y", 21.0), ("-x / (y - 1) ** 0.5", -3 / math.sqrt(3)),
    ("sigmoid(x - y) * e", math.e / (1 + math.e)),
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


def explain(capsys, *argv):
    """python -m tapegrad explain ARGV, run in this process: (exit code, stdout, stderr)."""
    try:
        code = main(["explain", *argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------
# An expression may start with '-'

@pytest.mark.parametrize("argv", [
    ["-x*x", "x=3", "-o", "OUT"],
    ["-o", "OUT", "-x*x", "x=3"],
    ["--output=OUT", "--backend", "reference", "-x*x", "x=3"],
    ["-oOUT", "-x*x", "x=3"],
], ids=["first", "after -o", "after long options", "after -oFILE"])
def test_an_expression_may_start_with_a_minus(argv, tmp_path, capsys):
    out = tmp_path / "g.html"
    code, _, err = explain(capsys, *(a.replace("OUT", str(out)) for a in argv))
    assert code == 0, err
    nodes = _page_data(out)["nodes"]
    assert [n["op"] for n in nodes] == ["leaf", "neg", "mul"] and nodes[-1]["value"] == "-9"


# ---------------------------------------------------------------------------------------
# Deep expressions: no parser or evaluator recursion

def test_a_15kb_power_chain_is_explained(tmp_path, capsys):
    out = tmp_path / "g.html"
    code, _, err = explain(capsys, CHAIN, "x=1.5", "-o", str(out))
    assert (code, err) == (0, "")
    nodes = _page_data(out)["nodes"]
    assert len(nodes) == 5001 and {n["op"] for n in nodes} == {"leaf", "pow"}


@pytest.mark.parametrize("expression, ops", [
    ("x" + "+x" * 5000, ["leaf"] + ["add"] * 5000),
    ("-" * 10000 + "x", ["leaf"] + ["neg"] * 10000),
    ("(" * 1000 + "x" + ")" * 1000 + " * x", ["leaf", "mul"]),
    ("sin(" * 3000 + "x" + ")" * 3000, ["leaf"] + ["sin"] * 3000),
], ids=["long sum", "many minuses", "many parentheses", "nested calls"])
def test_deep_expressions_evaluate(backend, expression, ops):
    x = backend.Var(0.5)
    root = evaluate(expression, {"x": x}, backend)
    assert [v.op for v in topo_order(root)] == ops


# ---------------------------------------------------------------------------------------
# Bad input: one line on stderr that says what is wrong, exit code 2, nothing evaluated

BAD = [
    (["9**9**9"], "cannot evaluate '9**9**9': 9 ** 387420489 is too large for a float"),
    (["x + 10.0**400", "x=1"], "10 ** 400 is too large for a float"),
    (["x * " + "1" * 5000, "x=1"],
     "number too large for a float: 11111111111111111111… (5000 digits)"),
    (["x * 1" + "0" * 400, "x=1"], "number too large for a float"),
    (["(-8)**(1/3) * x", "x=1"], "(-8) ** 0.3333 is not a real number"),
    (["x.__class__", "x=1"], "not allowed in an expression: '.' at column 2"),
    (["x.__class__.__mro__[1].__subclasses__()", "x=1"], "not allowed in an expression: '.'"),
    (["().__class__"], "cannot parse '().__class__': expected a number, a name or '(' at column 2"),
    (["__import__('os').system('touch pwned')"], "not a tapegrad op: '__import__'"),
    (["sin.__globals__", "x=1"], "not allowed in an expression: '.'"),
    (["lambda: x", "x=1"], "not allowed in an expression: 'lambda'"),
    (["[x][0]", "x=1"], "not allowed in an expression: '['"),
    (["x if x else x", "x=1"], "not allowed in an expression: 'if'"),
    (["f'{x}'", "x=1"], "not allowed in an expression: \"'\""),
    (["x == x", "x=1"], "not allowed in an expression: '=='"),
    (["x // 2", "x=1"], "not allowed in an expression: '//'"),
    (["x % 2", "x=1"], "not allowed in an expression: '%'"),
    (["x := 2", "x=1"], "not allowed in an expression: ':='"),
    (["x; x", "x=1"], "not allowed in an expression: ';'"),
    (["(x, x)", "x=1"], "not allowed in an expression: ','"),
    (["1j * x", "x=1"], "not allowed in an expression: '1j' at column 1 (complex numbers"),
    (["sin(x=1)", "x=1"], "sin() takes positional arguments only"),
    (["sin(**x)", "x=1"], "sin() takes positional arguments only"),
    (["exp(x)(x)", "x=1"], "expected an operator at column 7, found '('"),
    (["foo(x)", "x=1"], "not a tapegrad op: 'foo'"),
    (["x + z", "x=1"], "unknown name 'z': give it a value (z=1.5)"),
    (["sin(x, x)", "x=1"], "sin() takes 1 argument, got 2"),
    (["where(x, x)", "x=1"], "where() takes 3 arguments, got 2"),
    (["(x", "x=1"], "the '(' at column 1 is never closed"),
    (["x)", "x=1"], "the ')' at column 2 closes nothing"),
    (["x y", "x=1", "y=2"], "expected an operator at column 3, found 'y'"),
    (["x 2", "x=1"], "expected an operator at column 3, found '2'"),
    (["  "], "the expression is empty"),
    (["x * 1__0", "x=1"], "not a number: '1__0' at column 5"),
    ([CHAIN + ")", "x=1"],
     "cannot parse 'x**x**x**x**x**x**x**x**x**x**x**x**x**x**x** … **x**x**x)' "
     "(15002 characters): the ')' at column 15002 closes nothing"),
    (["x", "x=1", "x=2"], "x is given twice"),
    (["x", "if=1"], "expected NAME=VALUE with NAME a variable name, got 'if=1'"),
    (["x", "*", "x", "x=1"], "expected NAME=VALUE, got '*' (quote an expression that has spaces)"),
    (["2 * pi"], "'2 * pi' does not depend on any variable (it is 6.283185307179586)"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = explain(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"{PROG}: error: ") and err.count("\n") == 1 and message in err, err
    assert len(err) < 400
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing was written


def test_an_unwritable_output_is_one_line_and_exit_1(tmp_path, capsys):
    code, out, err = explain(capsys, "x*x", "x=3", "-o", str(tmp_path / "missing" / "g.html"))
    assert (code, out) == (1, "")
    missing = tmp_path / "missing" / "g.html"
    assert err == f"{PROG}: error: cannot write {missing}: No such file or directory\n"


@pytest.mark.parametrize("expression, code", [("-x*x", 0), ("9**9**9", 2)])
def test_python_m_tapegrad_explain_exit_codes(expression, code, tmp_path):
    run = subprocess.run([sys.executable, "-m", "tapegrad", "explain", expression, "x=3"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == code, run.stderr
    assert run.stderr.count("\n") == code // 2 and "Traceback" not in run.stderr
    assert (tmp_path / "graph.html").exists() == (code == 0)


# ---------------------------------------------------------------------------------------
# The grammar is Python's: the same text builds the same graph as Python's eval()

LEAVES = ("x", "y", "2.0", "0.5", "3.0", "1e-3", "pi")
SIGNS = ("", "", "", "-", "+", "--", "-+")
OPERATORS = (" + ", " - ", " * ", " / ", " ** ", "-", "**")


def random_expression(r, depth=2):
    """Operands joined by binary operators, each with unary signs in front: text whose
    meaning is decided by precedence and associativity. Parentheses and calls nest it."""
    def operand():
        kind = r.randrange(6) if depth else 0
        if kind < 3:
            return r.choice(SIGNS) + r.choice(LEAVES)
        inner = random_expression(r, depth - 1)
        return r.choice(SIGNS) + (f"({inner})", f"sin({inner})",
                                  f"maximum({inner}, {r.choice(LEAVES)})")[kind - 3]
    return operand() + "".join(r.choice(OPERATORS) + operand() for _ in range(r.randrange(4)))


def test_the_grammar_matches_python():
    r = random.Random(20261202)
    for _ in range(1000):
        check_like_python(random_expression(r))


def check_like_python(text):
    x, y = reference.Var(0.7), reference.Var(-1.3)
    names = {"x": x, "y": y, "pi": math.pi, "sin": reference.sin, "maximum": reference.maximum}
    try:
        expected = eval(text, {"__builtins__": {}}, names)  # text from random_expression
    except (ArithmeticError, TypeError, ValueError):  # TypeError: a complex number reached sin
        expected = None
    if expected is None or isinstance(expected, complex):
        with pytest.raises(ValueError, match="cannot evaluate"):
            evaluate(text, {"x": x, "y": y}, reference)
        return
    got = evaluate(text, {"x": x, "y": y}, reference)
    if isinstance(expected, float):
        assert same(got, expected), text
    else:  # the same ops in the same order, with the same values
        assert [v.op for v in topo_order(got)] == [v.op for v in topo_order(expected)], text
        assert all(same(a.value, b.value) for a, b in zip(topo_order(got), topo_order(expected)))
