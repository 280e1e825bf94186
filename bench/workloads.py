"""Workloads and per-system adapters shared by bench/test_bench_core.py and bench/compare_core.py.

Every system runs the SAME workload function; only the leaf constructor and the math
functions differ, so the definitions cannot drift between systems.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

# ---------------------------------------------------------------- W1

# A handful of shared leaves in [0.6, 1.4]; every term reuses three of them.
LEAF_VALUES = tuple(0.6 + 0.8 * k / 7 for k in range(8))
OPS_PER_TERM = 12  # 11 ops building a term + 1 add into the running total
CONSTS_PER_TERM = 2  # Python numbers lifted into the graph: * 0.5, 0.25 * (** 2 is `square`)


def w1_terms(n_ops: int) -> int:
    return max(1, round(n_ops / OPS_PER_TERM))


def w1_op_count(n_terms: int) -> int:
    return OPS_PER_TERM * n_terms - 1  # the first term starts the total: no add


def w1_tape_nodes(n_terms: int) -> int:
    """Nodes a tapegrad tape holds for W1: leaves + ops + lifted constants."""
    return len(LEAF_VALUES) + w1_op_count(n_terms) + CONSTS_PER_TERM * n_terms


def w1(leaf: Callable, sin: Callable, exp: Callable, tanh: Callable, n_terms: int):
    """W1: a sum of n_terms 11-op terms over 8 shared leaves, built op by op.

    Ops follow a fixed cycle (* sin ** + *float exp - / neg float* tanh, then + into the
    total); the leaves each term uses follow a fixed cycle too. Every intermediate stays in
    [-1.2, 3.4] for leaves in [0.6, 1.4], so nothing overflows and no tanh saturates: every
    adjoint is a normal nonzero number (no system gets to skip work on zero adjoints).
    The longest path is ~n_terms deep (the running total). Returns (root, leaves).
    """
    xs = [leaf(v) for v in LEAF_VALUES]
    n = len(xs)
    total = None
    for k in range(n_terms):
        a, b, c = xs[k % n], xs[(3 * k + 1) % n], xs[(5 * k + 2) % n]
        t = a * b
        t = sin(t)
        t = t**2
        t = t + c
        t = t * 0.5
        t = exp(t)
        t = t - a
        t = t / b
        t = -t
        t = 0.25 * t
        t = tanh(t)
        total = t if total is None else total + t
    return total, xs


# ---------------------------------------------------------------- simple chain


def chain(leaf: Callable, n_ops: int):
    """z = z * y, n_ops times (one Var*Var node per op; every adjoint is 1)."""
    y = leaf(1.0)
    z = leaf(1.5)
    for _ in range(n_ops):
        z = z * y
    return z, [y, z]


# ---------------------------------------------------------------- eager per-op kernels

UNROLL = 10
# name -> (expression on z (the Var chain) and y (a leaf), expression for plain floats)
EAGER_OPS = {
    "Var*Var": ("z * y", "z * y"),
    "Var*float": ("z * 1.0", "z * 1.0"),
    "Var+Var": ("z + y", "z + y"),
    "Var+float": ("z + 1.0", "z + 1.0"),
    "float*Var": ("1.0 * z", "1.0 * z"),
    "Var.sin()": ("z.sin()", "sin(z)"),
}


def make_eager_kernel(expr: str, unroll: int = UNROLL) -> Callable:
    """f(z, y, loops): `z = <expr>` unrolled `unroll` times inside a loop; returns z.

    Unrolling amortises the Python loop overhead, so the time is mostly the op itself
    (the same kernel on plain floats measures the interpreter's floor).
    """
    body = "".join(f"        z = {expr}\n" for _ in range(unroll))
    src = f"def kernel(z, y, loops):\n    for _ in range(loops):\n{body}    return z\n"
    ns: dict[str, Any] = {"sin": math.sin}
    exec(compile(src, f"<eager {expr}>", "exec"), ns)
    return ns["kernel"]


# ---------------------------------------------------------------- systems


@dataclass
class System:
    name: str
    version: str
    leaf: Callable
    sin: Callable
    exp: Callable
    tanh: Callable
    value: Callable  # root -> float
    grad: Callable  # leaf -> float
    backward: Callable  # root -> None
    note: str = ""
    recursion_limit: Callable[[int], int] | None = None  # W1 n_terms -> limit it needs

    def prepare_w1(self, n_terms: int) -> None:
        """Settings W1 of this size needs (micrograd: the recursion limit), set untimed."""
        if self.recursion_limit is not None:
            need = self.recursion_limit(n_terms)
            if sys.getrecursionlimit() < need:
                sys.setrecursionlimit(need)

    def run_w1(self, n_terms: int):
        """Build W1 and run backward from its root: the end-to-end workload."""
        root, xs = w1(self.leaf, self.sin, self.exp, self.tanh, n_terms)
        self.backward(root)
        return root, xs

    def result(self, root, xs) -> tuple[float, list[float]]:
        return self.value(root), [self.grad(x) for x in xs]


def system_tapegrad() -> System:
    import tapegrad as tg

    return System(
        "tapegrad", tg.__version__, tg.Var, tg.sin, tg.exp, tg.tanh,
        value=lambda r: r.value, grad=lambda x: x.grad, backward=lambda r: r.backward(),
    )


def system_reference() -> System:
    import tapegrad
    import tapegrad.reference as ref

    return System(
        "tapegrad.reference", getattr(ref, "__version__", tapegrad.__version__),
        ref.Var, ref.sin, ref.exp, ref.tanh,
        value=lambda r: r.value, grad=lambda x: x.grad, backward=lambda r: r.backward(),
    )


def _micrograd_unaries():
    """sin/exp/tanh for micrograd 0.1.0, which lacks them: written exactly in the style of
    its own ops (a new Value whose _backward closure accumulates into its input)."""
    from micrograd.engine import Value

    def sin(x):
        out = Value(math.sin(x.data), (x,), "sin")

        def _backward():
            x.grad += math.cos(x.data) * out.grad

        out._backward = _backward
        return out

    def exp(x):
        out = Value(math.exp(x.data), (x,), "exp")

        def _backward():
            x.grad += out.data * out.grad

        out._backward = _backward
        return out

    def tanh(x):
        out = Value(math.tanh(x.data), (x,), "tanh")

        def _backward():
            x.grad += (1 - out.data * out.data) * out.grad

        out._backward = _backward
        return out

    return sin, exp, tanh


# micrograd's backward builds its topological order recursively, one Python frame per
# level of graph depth; W1's depth is ~n_terms (+ a few per term), so the limit is raised.
def micrograd_recursion_limit(n_terms: int) -> int:
    return 4 * n_terms + 10_000


def system_micrograd() -> System:
    from importlib.metadata import version

    from micrograd.engine import Value

    sin, exp, tanh = _micrograd_unaries()
    return System(
        "micrograd", version("micrograd"), Value, sin, exp, tanh,
        value=lambda r: float(r.data), grad=lambda x: float(x.grad),
        backward=lambda r: r.backward(),
        note="sin/exp/tanh added in micrograd's own closure style (0.1.0 has none)",
        recursion_limit=micrograd_recursion_limit,
    )


def system_torch() -> System:
    import torch

    f64 = torch.float64

    def leaf(v):
        return torch.tensor(v, dtype=f64, requires_grad=True)

    return System(
        "torch", torch.__version__, leaf, torch.sin, torch.exp, torch.tanh,
        value=lambda r: r.item(), grad=lambda x: x.grad.item(), backward=lambda r: r.backward(),
        note="0-dim float64 tensors, requires_grad leaves, CPU",
    )


def system_python_float() -> System:
    """W1 on plain Python floats (no derivatives): the interpreter's floor."""
    return System(
        "python float", sys.version.split()[0], float, math.sin, math.exp, math.tanh,
        value=float, grad=lambda x: math.nan, backward=lambda r: None,
        note="forward only",
    )


SYSTEMS = {
    "tapegrad": system_tapegrad,
    "tapegrad.reference": system_reference,
    "micrograd": system_micrograd,
    "torch": system_torch,
}


def load_systems(names=SYSTEMS) -> tuple[dict[str, System], dict[str, str]]:
    """(available systems by name, missing ones -> reason)."""
    found, missing = {}, {}
    for name in names:
        try:
            found[name] = SYSTEMS[name]()
        except Exception as err:  # a missing peer is reported, not fatal
            missing[name] = f"{type(err).__name__}: {err}"
    return found, missing


def rel_err(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)
