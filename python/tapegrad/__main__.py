"""python -m tapegrad: the seed's worked examples, step by step, then a speed check.

Subcommands:
    python -m tapegrad explain "x**2 + x*y" x=3 y=4 -o graph.html   (tapegrad.viz)
    python -m tapegrad demo moons [--steps 100] [--mode eager|traced|both] [--out DIR] (tapegrad.nn.demo)
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from types import ModuleType
from typing import Any, Callable

import tapegrad
from tapegrad.graph import SYMBOLS, backward_edges, topo_order


def fmt(x: float) -> str:
    """Numbers as the seed writes them: 3, 0.7311, and 1.500e-09 (never a misleading 0.0000)."""
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


class Names:
    """Names for the nodes of one graph: the given leaves, then n1, n2, ... in order."""

    def __init__(self, leaves: dict[str, Any]):
        self._by_id = {v.id: name for name, v in leaves.items()}
        self._count = 0

    def __call__(self, v: Any) -> str:
        if v.id not in self._by_id:
            self._count += 1
            self._by_id[v.id] = fmt(v.value) if v.op == "const" else f"n{self._count}"
        return self._by_id[v.id]


def expression(v: Any, name: Names) -> str:
    args = [name(p) for p in v.inputs]
    if v.op in SYMBOLS:
        return f" {SYMBOLS[v.op]} ".join(args)
    return f"{v.op}({', '.join(args)})"


def draw_tree(root: Any, name: Names) -> list[str]:
    """The graph as the seed draws it: a tree, shared leaves repeated."""
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
    # Contributions per leaf, listed in the order the leaf was used (as the seed does).
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


def seed_examples() -> bool:
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "explain":
        from tapegrad.viz import main as explain_main
        return explain_main(argv[1:])
    if argv and argv[0] == "demo":
        from tapegrad.nn.demo import main as demo_main
        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tapegrad", description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000,
                        help="size of the graph for the speed check (default 100000)")
    args = parser.parse_args(argv)
    print("tapegrad", tapegrad.__version__, "— computational graphs, forward and backward")
    ok = seed_examples()
    speed(args.nodes)
    print("\nall gradients match their symbolic derivatives" if ok else "\nMISMATCH found")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
