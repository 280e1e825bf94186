"""python -m tapegrad: the worked examples, step by step, then a speed check.

Subcommands:
    python -m tapegrad explain "x**2 + x*y" x=3 y=4 -o graph.html   (tapegrad.explain_page)
    python -m tapegrad demo moons [--steps 100] [--mode eager|traced|both] [--out DIR]
        (tapegrad.nn.demo)
"""
from __future__ import annotations

import argparse
import keyword
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import tapegrad
from tapegrad.graph import SYMBOLS, Names, backward_edges, fmt, topo_order


def expression(v: Any, name: Names) -> str:
    args = [name(p) for p in v.inputs]
    if v.op in SYMBOLS:
        return f" {SYMBOLS[v.op]} ".join(args)
    return f"{v.op}({', '.join(args)})"


def draw_tree(root: Any, name: Names) -> list[str]:
    """The graph as the worked examples draw it: a tree, shared leaves repeated."""
    lines = []
    stack = [(root, "", "", True)]
    while stack:
        v, prefix, branch, last = stack.pop()
        label = f"[{SYMBOLS.get(v.op, v.op)}] {name(v)}" if not v.is_leaf else name(v)
        lines.append(prefix + branch + label)
        child_prefix = prefix + ("" if not branch else ("    " if last else "│   "))
        kids = list(v.inputs)
        for i in reversed(range(len(kids))):
            end = i == len(kids) - 1
            stack.append((kids[i], child_prefix, "└── " if end else "├── ", end))
    return lines


def walk_through(
    title: str, build: Callable[[ModuleType], tuple[Any, dict[str, Any]]],
    symbolic: dict[str, tuple[str, float]],
) -> bool:
    """Print one example's graph, forward and backward passes; check the gradients."""
    f, leaves = build(tapegrad)
    name = Names({**leaves, "f": f})
    print(f"\n== {title}")
    print("graph:")
    for line in draw_tree(f, name):
        print("   ", line)

    print("forward pass (leaves to root):")
    for v in topo_order(f):
        if v.op == "leaf":
            print(f"    {name(v)} = {fmt(v.value)}")
        elif not v.is_leaf:
            print(f"    {name(v)} = {expression(v, name)} = {fmt(v.value)}")

    f.backward()
    print("backward pass (root to leaves):")
    print(f"    {name(f)}.grad = 1  (seed: ∂f/∂f = 1)")
    # Contributions per leaf, listed in the order the leaf was used (as the worked examples do).
    position = {v.id: i for i, v in enumerate(topo_order(f))}
    received: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for e in backward_edges(f, tapegrad):
        received[e.input.id].append(((position[e.node.id], e.k), e.contribution))
        print(f"    {e.node.op} {name(e.node)} → {name(e.input)} (input {e.k + 1}): "
              f"{fmt(e.contribution)}")
    print("accumulated at the leaves:")
    ok = True
    for leaf_name, v in leaves.items():
        parts = [c for _, c in sorted(received[v.id])]
        total = " + ".join(fmt(c) for c in parts)
        shown = f"{total} = {fmt(v.grad)}" if len(parts) > 1 else fmt(v.grad)
        formula, expected = symbolic[leaf_name]
        match = math.isclose(v.grad, expected, rel_tol=1e-12)
        ok &= match and math.isclose(sum(parts), v.grad, rel_tol=1e-12)
        print(f"    {leaf_name}.grad = {shown}    symbolic ∂f/∂{leaf_name} = {formula} = "
              f"{fmt(expected)} {'✓' if match else '✗ MISMATCH'}")
    return ok


def worked_examples() -> bool:
    def square_plus_product(tg: ModuleType) -> tuple[Any, dict[str, Any]]:
        x, y = tg.Var(3.0), tg.Var(4.0)
        return x * x + x * y, {"x": x, "y": y}

    def neuron(tg: ModuleType) -> tuple[Any, dict[str, Any]]:
        w, x = tg.Var(0.5), tg.Var(2.0)
        return tg.sigmoid(w * x), {"w": w, "x": x}

    s = 1 / (1 + math.exp(-1.0))
    ok = walk_through("f(x, y) = x² + xy at x = 3, y = 4", square_plus_product,
                      {"x": ("2x + y", 10.0), "y": ("x", 3.0)})
    ok &= walk_through("f(w, x) = sigmoid(w × x) at w = 0.5, x = 2", neuron,
                       {"w": ("σ(wx)(1 − σ(wx))·x", s * (1 - s) * 2),
                        "x": ("σ(wx)(1 − σ(wx))·w", s * (1 - s) * 0.5)})
    return ok


def speed(n: int = 100_000) -> None:
    """Build and differentiate the same n-node graph on both backends."""
    from tapegrad import reference

    def run(tg: ModuleType) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        x, y = tg.Var(0.5), tg.Var(-0.25)
        s = x
        for i in range(n // 4):  # four nodes per step: mul, add, sin, const
            s = tg.sin(s * y + x) if i % 2 else s * 0.5 + x
        s.backward()
        t2 = time.perf_counter()
        return t2 - t0, s.value, x.grad

    print(f"\n== speed: build + backward of a ~{n:,}-node graph")
    results = {}
    for label, tg in (("C++ tape", tapegrad), ("pure-Python reference", reference)):
        times = []
        for _ in range(3):
            dt, value, grad = run(tg)
            times.append(dt)
        results[label] = (sorted(times)[1], value, grad)
    fast = results["C++ tape"][0]
    for label, (dt, value, grad) in results.items():
        print(f"    {label:<22} {dt * 1e3:8.2f} ms  ({dt / n * 1e9:7.1f} ns/node)  "
              f"{fast and dt / fast:6.1f}×   f = {value:.12g}, ∂f/∂x = {grad:.12g}")


# ---------------------------------------------------------------------------------------
# python -m tapegrad explain "x**2 + x*y" x=3 y=4 -o graph.html

_HELD = "\0expression"  # stands in for an expression argparse would read as an option


def _expression_position(argv: list[str], options: list[argparse.Action]) -> int | None:
    """Where the expression is in ``argv``: the first argument that is neither an option
    nor an option's value. argparse reads an expression that starts with '-' ("-x*x") as
    an unknown option; here a word with one leading dash is an option only when it is -h,
    or -o with or without its value attached. None when the expression comes after "--"."""
    with_value = {s for a in options if a.nargs != 0 for s in a.option_strings}
    longs = [s for a in options for s in a.option_strings if s.startswith("--")]
    value_next = False
    for i, arg in enumerate(argv):
        if value_next:
            value_next = False
        elif arg == "--":
            return None
        elif arg.startswith("--"):
            name, has_value, _ = arg.partition("=")
            known = [s for s in longs if s == name] or [s for s in longs if s.startswith(name)]
            value_next = not has_value and len(known) == 1 and known[0] in with_value
        elif arg == "-h":
            pass
        elif arg.startswith("-o"):
            value_next = arg == "-o"
        else:
            return i
    return None


def explain_main(argv: list[str] | None = None) -> int:
    """``python -m tapegrad explain EXPR NAME=VALUE ... [-o FILE] [--dot | --svg] [--open]``"""
    from tapegrad.explain_page import explain
    from tapegrad.expression import ExpressionError, evaluate, shown
    from tapegrad.viz import RANKDIRS, draw

    parser = argparse.ArgumentParser(
        prog="python -m tapegrad explain",
        description="Write a self-contained HTML page that steps through the forward and "
                    "backward passes of an expression (or, with --dot/--svg, a Graphviz picture).",
        epilog='example: python -m tapegrad explain "x*x + x*y" x=3 y=4 -o graph.html')
    parser.add_argument("expression", help="e.g. 'x**2 + x*y', 'sigmoid(w*x)' or '-x*x' (an "
                                           "expression may start with '-', unless with '-o')")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE", help="the variables, e.g. x=3")
    options = [parser.add_argument("-o", "--output", help="output file (default graph.html / "
                                                          ".dot / .svg; '-' for standard output)")]
    static = parser.add_mutually_exclusive_group()
    options.append(static.add_argument("--dot", action="store_true",
                                       help="write Graphviz DOT source instead"))
    options.append(static.add_argument("--svg", action="store_true",
                                       help="write an SVG picture (needs dot)"))
    options.append(parser.add_argument("--rankdir", choices=RANKDIRS, default="LR",
                                       help="for --dot/--svg"))
    options.append(parser.add_argument("--backend", choices=("cpp", "reference"), default="cpp"))
    options.append(parser.add_argument("--open", action="store_true",
                                       help="open the result in a browser"))
    argv = sys.argv[1:] if argv is None else list(argv)
    held = _expression_position(argv, options)
    if held is not None:
        argv[held], held_text = _HELD, argv[held]
    args = parser.parse_args(argv)
    if args.expression == _HELD:
        args.expression = held_text

    def error(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 1

    def fail(message: str) -> NoReturn:
        """Bad input: one line on stderr (argparse's usage adds nothing here), exit code 2."""
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    backend = tapegrad.reference if args.backend == "reference" else tapegrad
    functions = {op for op, _ in backend.ops()} | {"where"}
    variables = {}
    for item in args.values:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            fail(f"expected NAME=VALUE, got {item!r} (quote an expression that has spaces)")
        if not key.isidentifier() or keyword.iskeyword(key):
            fail(f"expected NAME=VALUE with NAME a variable name, got {item!r}")
        if key in functions:
            fail(f"{key!r} is an op function; pick another variable name")
        if key in variables:
            fail(f"{key} is given twice")
        try:
            variables[key] = backend.Var(float(text))
        except ValueError:
            fail(f"{key}: not a number: {text!r}")
    try:
        root = evaluate(args.expression, variables, backend)
    except ExpressionError as err:
        fail(str(err))
    if not isinstance(root, backend.Var):
        fail(f"{shown(args.expression)} does not depend on any variable (it is {root!r})")

    kind = "dot" if args.dot else "svg" if args.svg else "html"
    out = args.output or f"graph.{kind}"
    try:
        if kind == "html":
            text = explain(root, names=variables, title=f"tapegrad: {args.expression}")
        else:
            dot = draw(root, rankdir=args.rankdir, names=variables)
            text = dot.source if kind == "dot" else dot.pipe(format="svg", encoding="utf-8")
    except (ImportError, RuntimeError) as err:
        return error(str(err))
    assert isinstance(text, str)
    if out == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as err:
        return error(f"cannot write {out}: {err.strerror or err}")
    print(f"wrote {out}")
    if args.open:
        import webbrowser
        webbrowser.open(Path(out).resolve().as_uri())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "explain":
        return explain_main(argv[1:])
    if argv and argv[0] == "demo":
        from tapegrad.nn.demo import main as demo_main
        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tapegrad", description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000,
                        help="size of the graph for the speed check (default 100000)")
    args = parser.parse_args(argv)
    print("tapegrad", tapegrad.__version__, "— computational graphs, forward and backward")
    ok = worked_examples()
    speed(args.nodes)
    print("\nall gradients match their symbolic derivatives" if ok else "\nMISMATCH found")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
