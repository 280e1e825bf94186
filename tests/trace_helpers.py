"""Shared by the test_trace_* files: programs traced and replayed, bit-exact and
tolerance comparisons, a pure-Python reference sweep with perturbed libm results, and
two functions with known gradients."""
import importlib
import re

import numpy as np
from helpers import run

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
REF_OPS = importlib.import_module("tapegrad.reference").OPS  # ops.def's formulas in Python

OPS = tg.ops()
EPS = 2.0 ** -52  # the largest relative spacing of float64 numbers (1 ulp at 1.0)


def trace_program(program, cse=True):
    """The program traced at its own leaf values, one scalar argument per leaf."""
    return tg.trace(lambda *xs: run(program, tg, xs)[-1], *program[0], cse=cse)


def eager(program, x):
    """[value, d/dleaf...] of the program's last node, by the eager C++ tape at x."""
    nodes = run((list(x), program[1]), tg)
    nodes[-1].backward()
    return np.array([nodes[-1].value] + [nodes[i].grad for i in range(len(x))])


def replay(F, x):
    """[value, d/darg...] of a Function of scalar arguments at one point."""
    value, grad = F.value_and_grad(*x)
    return np.array([value, *(grad if len(x) > 1 else (grad,))], dtype=np.float64)


def same_bits(a, b):
    """Elementwise: bit-for-bit equal (so the sign of zero too), or both NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def assert_bits(actual, expected, context=""):
    ok = same_bits(actual, expected)
    assert ok.all(), f"{context}\n  actual   {actual!r}\n  expected {expected!r}"


def within(a, b, tol):
    """Elementwise: the same NaN/Inf pattern, finite values within tol (array or scalar).
    A tol that is not a finite number puts no bound on finite values."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
    nan = np.isnan(a) | np.isnan(b)
    inf = ~nan & (np.isinf(a) | np.isinf(b))
    finite = ~nan & ~inf
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= np.where(np.isfinite(tol), tol, np.inf)
    return np.where(nan, np.isnan(a) & np.isnan(b), np.where(inf, a == b, finite & close))


def central_difference(f, x, h=1e-3):
    """Stan's 6-point stencil: error O(h**6), about 1e-10 for smooth f."""
    return (f(x + 3 * h) - 9 * f(x + 2 * h) + 45 * f(x + h)
            - 45 * f(x - h) + 9 * f(x - 2 * h) - f(x - 3 * h)) / (60 * h)


# The libm functions batched replay takes from glibc's libmvec in this process (within 4
# ulp of scalar libm): csrc/tapegrad/vector_math.def lists the candidates, and each one is
# looked up at import. Where libmvec or a function is missing, or TAPEGRAD_LIBMVEC=0, the
# lanes call scalar libm, the one-point result bit for bit. `sigmoid` is math::sigmoid,
# which calls exp. Which ops call them, in their value and in which derivative, is read off
# the op table's own text (_core.op_rules()), so a new op is classified without a list here.
LIBMVEC = {f for f, from_libmvec in core.vector_math().items() if from_libmvec}
LIBMVEC |= {"sigmoid"} if "exp" in LIBMVEC else set()


def _calls_libmvec(expr):
    return any(f in LIBMVEC for f in re.findall(r"\b(?:std|math)::(\w+)\s*\(", expr))


LIBM_FORWARD = {r["name"] for r in core.op_rules() if _calls_libmvec(r["forward"])}
LIBM_RULE = {r["name"]: tuple(i for i, k in enumerate(("dx", "dy")) if _calls_libmvec(r[k]))
             for r in core.op_rules()}  # which rule outputs call libm
LIBM_RULE = {op: w for op, w in LIBM_RULE.items() if w}


def reference_sweep(program, x, perturb=None, absolute=False):
    """[value, d/dleaf...] of the program's last node at leaf values x, in Python."""
    leaves, steps = program
    n = len(leaves)
    val = [float(v) for v in x]
    for i, (op, _, args) in enumerate(steps):
        arity, forward, *_ = REF_OPS[op]
        a = [val[j] if isinstance(j, int) else float(j) for j in args]
        v = forward(a[0], a[1] if arity == 2 else 0.0)
        if perturb is not None and perturb[0] == ("value", n + i):
            v *= 1.0 + perturb[1]
        val.append(v)
    adj = [0.0] * len(val)
    adj[-1] = 1.0
    for k in range(len(val) - 1, n - 1, -1):
        g = adj[k]
        if g == 0.0:  # zero adjoints are skipped, as in both C++ sweeps
            continue
        op, _, args = steps[k - n]
        arity, _, rule, *_ = REF_OPS[op]
        a = [val[j] if isinstance(j, int) else float(j) for j in args]
        d = list(rule(a[0], a[1] if arity == 2 else 0.0, val[k], abs(g) if absolute else g))
        if perturb is not None and perturb[0][0] == "rule" and perturb[0][1] == k:
            d[perturb[0][2]] *= 1.0 + perturb[1]
        for j, dj in zip(args[:arity], d):
            if isinstance(j, int):
                adj[j] += abs(dj) if absolute else dj
    return np.array([val[-1]] + adj[:n])


def libm_sites(program):
    n = len(program[0])
    for i, (op, _, _) in enumerate(program[1]):
        if op in LIBM_FORWARD:
            yield ("value", n + i)
        for w in LIBM_RULE.get(op, ()):
            yield ("rule", n + i, w)


def reordering_tolerance(program, x, rel=1e-12):
    """rel * sum(|terms|) per gradient component (NaN/Inf: no bound on finite values)."""
    with np.errstate(all="ignore"):
        return rel * reference_sweep(program, x, absolute=True)[1:]


def f3(x, y, z, lib=tg):
    """A 3-input function of 17 ops (the replay benchmarks' own); lib is tapegrad or torch."""
    return lib.sin(x * y) + lib.exp(-z * z) / (1 + x * x) + lib.tanh(y - z) * x + lib.log(1 + y * y)


def rosenbrock(x):
    """Extended Rosenbrock: sum 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2."""
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def vec_fn(x):
    """R^3 -> R^4, a vector function for the Jacobian tests."""
    return [x[0] * x[1], tg.sin(x[2]) * x[0], tg.exp(x[1]) - x[2], x[0]]
