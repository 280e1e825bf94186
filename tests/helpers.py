"""Shared test specs: per-op domains and oracles, comparisons, and random graph programs."""
import importlib
import math
import operator
import re
import threading
from collections.abc import Callable
from typing import NamedTuple

import mpmath
import pytest
from hypothesis import strategies as st

BACKENDS = ("tapegrad.reference", "tapegrad")
inf, nan = math.inf, math.nan


def table_ops():
    """Every (name, arity) row in either backend's table, for parametrizing at collection.

    The union, so a row that one table lacks still gets tests, which fail on that backend
    (and test_tables_agree fails too). A backend that cannot be imported adds nothing here:
    its fixture then fails every test that uses it.
    """
    rows = {}
    for name in BACKENDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for op, arity in module.ops():
            rows.setdefault(op, arity)
    return list(rows.items())


# ---------------------------------------------------------------------------- op specs
# Each op's test spec: where it is smooth (JAX's rng_factory: log on positives; never at
# a kink, whose documented value test_conventions checks exactly) and an independent
# oracle for its value, from Python's math module.

def real(r):
    return r.uniform(-3.0, 3.0)


def positive(r):
    return r.uniform(0.1, 3.0)


def nonzero(r):
    return r.choice((-1.0, 1.0)) * r.uniform(0.1, 3.0)


def untied(r):  # maximum/minimum away from their kink x == y
    x = real(r)
    return x, x + nonzero(r)


def tied_or_not(r):  # eq/ne: ties half the time (the 6-point stencil never hits the tie)
    x = real(r)
    return (x, x) if r.random() < 0.5 else (x, x + nonzero(r))


def truth(r):  # a truth value for the logical ops: zeros (of both signs) or nonzero
    return r.choice((0.0, -0.0, nonzero(r), nonzero(r)))


class Spec(NamedTuple):
    domain: Callable  # random.Random -> tuple of arguments
    oracle: Callable  # the op's value, computed without tapegrad
    # False for detach, whose derivative is 0 by definition, not the slope of its value;
    # per argument for polygamma(n, x), whose n is a whole
    # number (its partial is 0 by definition and finite differences in n are NaN).
    differentiable: bool | tuple = True
    # How far from the oracle the value may be, in units in the last place: 0 (exact) where
    # the oracle calls the same libm function; else the oracle is mpmath at 50 digits.
    ulps: int = 0


def smooth(spec, k):
    """Whether argument k of the spec's op has a derivative that finite differences see."""
    d = spec.differentiable
    return d[k] if isinstance(d, tuple) else d


def differentiable(spec):
    """Whether every argument is smooth (finite differences check the whole gradient)."""
    d = spec.differentiable
    return all(d) if isinstance(d, tuple) else d


mpmath.mp.dps = 50


def mp(f):
    """An oracle from mpmath at 50 digits, rounded to the nearest double."""
    return lambda *args: float(f(*(mpmath.mpf(a) for a in args)))


def within_ulps(got, want, ulps):
    """got is want to within ulps units in the last place of want (exact when ulps is 0)."""
    if ulps == 0 or math.isnan(want) or math.isinf(want):
        return got == want or (math.isnan(got) and math.isnan(want))
    return abs(got - want) <= ulps * math.ulp(want)


def between_integers(r):  # floor, ceil, trunc: away from their jumps
    return r.randint(-3, 2) + r.uniform(0.1, 0.9)


def quotient_away_from_integers(r):  # fmod/remainder: x / y not near a jump of trunc/floor
    y = nonzero(r)
    return (r.randint(-3, 3) + r.uniform(0.2, 0.8)) * y, y


SPECS = {
    "add":     Spec(lambda r: (real(r), real(r)), operator.add),
    "sub":     Spec(lambda r: (real(r), real(r)), operator.sub),
    "mul":     Spec(lambda r: (real(r), real(r)), operator.mul),
    "div":     Spec(lambda r: (real(r), nonzero(r)), operator.truediv),
    "pow":     Spec(lambda r: (positive(r), real(r)), math.pow),
    "maximum": Spec(untied, max),
    "minimum": Spec(untied, min),
    "lt":      Spec(untied, lambda x, y: float(x < y)),
    "le":      Spec(untied, lambda x, y: float(x <= y)),
    "gt":      Spec(untied, lambda x, y: float(x > y)),
    "ge":      Spec(untied, lambda x, y: float(x >= y)),
    "eq":      Spec(tied_or_not, lambda x, y: float(x == y)),
    "ne":      Spec(tied_or_not, lambda x, y: float(x != y)),
    "logical_and": Spec(lambda r: (truth(r), truth(r)), lambda x, y: float(bool(x) and bool(y))),
    "logical_or":  Spec(lambda r: (truth(r), truth(r)), lambda x, y: float(bool(x) or bool(y))),
    "logical_not": Spec(lambda r: (truth(r),), lambda x: float(not x)),
    # cond away from 0, where the select flips (test_trace checks both sides exactly)
    "if_true":  Spec(lambda r: (nonzero(r), real(r)), lambda c, a: a if c else 0.0),
    "if_false": Spec(lambda r: (nonzero(r), real(r)), lambda c, a: 0.0 if c else a),
    "square":  Spec(lambda r: (real(r),), lambda x: x * x),
    "neg":     Spec(lambda r: (real(r),), operator.neg),
    "abs":     Spec(lambda r: (nonzero(r),), math.fabs),
    "sqrt":    Spec(lambda r: (positive(r),), math.sqrt),
    "exp":     Spec(lambda r: (real(r),), math.exp),
    "log":     Spec(lambda r: (positive(r),), math.log),
    "sin":     Spec(lambda r: (real(r),), math.sin),
    "cos":     Spec(lambda r: (real(r),), math.cos),
    "tan":     Spec(lambda r: (r.uniform(-1.3, 1.3),), math.tan),
    "tanh":    Spec(lambda r: (real(r),), math.tanh),
    "sigmoid": Spec(lambda r: (real(r),), lambda x: 1 / (1 + math.exp(-x))),
    "relu":    Spec(lambda r: (nonzero(r),), lambda x: max(x, 0.0)),
    "detach":  Spec(lambda r: (real(r),), lambda x: x, differentiable=False),
    "expm1":   Spec(lambda r: (real(r),), math.expm1),
    "log1p":   Spec(lambda r: (r.uniform(-0.9, 3.0),), math.log1p),
    "exp2":    Spec(lambda r: (real(r),), mp(lambda x: 2 ** x), ulps=1),
    "log2":    Spec(lambda r: (positive(r),), math.log2),
    "log10":   Spec(lambda r: (positive(r),), math.log10),
    "logaddexp": Spec(lambda r: (real(r), real(r)), mp(lambda x, y: mpmath.log(mpmath.exp(x) + mpmath.exp(y))), ulps=2),
    "softplus": Spec(lambda r: (real(r),), mp(lambda x: mpmath.log1p(mpmath.exp(x))), ulps=2),
    "log_sigmoid": Spec(lambda r: (real(r),), mp(lambda x: -mpmath.log1p(mpmath.exp(-x))), ulps=2),
    "xlogy":   Spec(lambda r: (real(r), positive(r)), lambda x, y: x * math.log(y)),
    "asin":    Spec(lambda r: (r.uniform(-0.9, 0.9),), math.asin),
    "acos":    Spec(lambda r: (r.uniform(-0.9, 0.9),), math.acos),
    "atan":    Spec(lambda r: (real(r),), math.atan),
    "atan2":   Spec(lambda r: (nonzero(r), nonzero(r)), math.atan2),
    "sinh":    Spec(lambda r: (real(r),), math.sinh),
    "cosh":    Spec(lambda r: (real(r),), math.cosh),
    "asinh":   Spec(lambda r: (real(r),), math.asinh),
    "acosh":   Spec(lambda r: (r.uniform(1.1, 4.0),), math.acosh),
    "atanh":   Spec(lambda r: (r.uniform(-0.9, 0.9),), math.atanh),
    "hypot":   Spec(lambda r: (nonzero(r), nonzero(r)), mp(mpmath.hypot), ulps=1),
    "cbrt":    Spec(lambda r: (nonzero(r),), mp(lambda x: mpmath.sign(x) * mpmath.cbrt(abs(x))), ulps=1),
    "reciprocal": Spec(lambda r: (nonzero(r),), lambda x: 1 / x),
    "erf":     Spec(lambda r: (real(r),), mp(mpmath.erf), ulps=2),
    "erfc":    Spec(lambda r: (real(r),), mp(mpmath.erfc), ulps=5),
    "erfinv":  Spec(lambda r: (r.uniform(-0.9, 0.9),), mp(mpmath.erfinv), ulps=4),
    # away from lgamma's and digamma's zeros (1, 2 and 1.46...), where ulps mean little
    "lgamma":  Spec(lambda r: (r.uniform(2.5, 6.0),), mp(mpmath.loggamma), ulps=4),
    "digamma": Spec(lambda r: (r.uniform(2.0, 6.0),), mp(mpmath.digamma), ulps=4),
    "polygamma": Spec(lambda r: (float(r.randint(1, 3)), r.uniform(0.5, 5.0)),
                      mp(lambda n, x: mpmath.polygamma(int(n), x)), differentiable=(False, True),
                      ulps=8),
    # piecewise constant: derivative 0 between the jumps, where finite differences see it
    "floor":   Spec(lambda r: (between_integers(r),), lambda x: float(math.floor(x))),
    "ceil":    Spec(lambda r: (between_integers(r),), lambda x: float(math.ceil(x))),
    "round":   Spec(lambda r: (between_integers(r) + 0.5,), lambda x: float(round(x))),
    "trunc":   Spec(lambda r: (between_integers(r),), lambda x: float(math.trunc(x))),
    "sign":    Spec(lambda r: (nonzero(r),), lambda x: math.copysign(1.0, x)),
    "floor_divide": Spec(quotient_away_from_integers, operator.floordiv),
    "fmod":    Spec(quotient_away_from_integers, math.fmod),
    "remainder": Spec(quotient_away_from_integers, operator.mod),
    "ieee_remainder": Spec(lambda r: (lambda y: ((r.randint(-3, 3) + r.uniform(-0.3, 0.3)) * y, y))(nonzero(r)),
                           math.remainder),
    "deg2rad": Spec(lambda r: (real(r),), math.radians),
    "rad2deg": Spec(lambda r: (real(r),), math.degrees),
    "copysign": Spec(lambda r: (nonzero(r), nonzero(r)), math.copysign),
    "clamp_min": Spec(untied, max),
    "clamp_max": Spec(untied, min),
    "fmax":    Spec(untied, max),
    "fmin":    Spec(untied, min),
}


# (op, args, value, grads): the documented values at kinks and singular points, where
# finite differences cannot go. PyTorch float64 gives the same (test_torch checks it).
CONVENTIONS = [
    ("relu", (0.0,), 0.0, [0.0]),
    ("relu", (-0.0,), 0.0, [0.0]),
    ("abs", (0.0,), 0.0, [0.0]),
    ("abs", (-0.0,), 0.0, [0.0]),
    ("maximum", (1.5, 1.5), 1.5, [0.5, 0.5]),
    ("minimum", (1.5, 1.5), 1.5, [0.5, 0.5]),
    ("maximum", (0.0, -0.0), -0.0, [0.5, 0.5]),
    ("maximum", (nan, 1.0), nan, [1.0, 1.0]),  # no order: both get the adjoint
    ("maximum", (1.0, nan), nan, [1.0, 1.0]),
    ("minimum", (nan, 1.0), nan, [1.0, 1.0]),
    ("minimum", (1.0, nan), nan, [1.0, 1.0]),
    ("eq", (1.5, 1.5), 1.0, [0.0, 0.0]),
    ("eq", (0.0, -0.0), 1.0, [0.0, 0.0]),
    ("eq", (nan, nan), 0.0, [0.0, 0.0]),
    ("ne", (nan, nan), 1.0, [0.0, 0.0]),
    ("logical_and", (nan, 2.0), 1.0, [0.0, 0.0]),  # NaN is true, as in C and numpy
    ("logical_and", (-0.0, 2.0), 0.0, [0.0, 0.0]),
    ("logical_or", (0.0, -0.0), 0.0, [0.0, 0.0]),
    ("logical_or", (0.0, nan), 1.0, [0.0, 0.0]),
    ("logical_not", (-0.0,), 1.0, [0.0]),
    ("logical_not", (nan,), 0.0, [0.0]),
    ("abs", (nan,), nan, [0.0]),
    ("sqrt", (0.0,), 0.0, [inf]),
    ("log", (0.0,), -inf, [inf]),
    ("pow", (0.0, 0.0), 1.0, [0.0, 0.0]),
    ("pow", (0.0, 2.0), 0.0, [0.0, 0.0]),
    ("pow", (0.0, 0.5), 0.0, [inf, 0.0]),
    ("pow", (-2.0, 3.0), -8.0, [12.0, nan]),
    ("pow", (-2.0, 0.5), nan, [nan, nan]),
    ("pow", (-3.0, 3.0), -27.0, [27.0, nan]),
    ("pow", (-2.0, 0.0), 1.0, [0.0, nan]),
    ("pow", (2.0, 0.0), 1.0, [0.0, math.log(2.0)]),
    ("div", (1.0, 0.0), inf, [inf, -inf]),
    ("log", (-1.0,), nan, [-1.0]),
    ("exp", (1000.0,), inf, [inf]),
    ("sigmoid", (-1000.0,), 0.0, [0.0]),
    ("tanh", (inf,), 1.0, [0.0]),
    # the full op set: integers for the rounding ops, ties, NaN operands, poles and the ends
    # of domains. (Not here, because PyTorch differs: sign(NaN) is NaN, numpy's; trigamma
    # at the negative integers is inf; torch has no cbrt.)
    ("floor", (2.0,), 2.0, [0.0]),
    ("floor", (-0.0,), -0.0, [0.0]),
    ("ceil", (3.0,), 3.0, [0.0]),
    ("round", (2.5,), 2.0, [0.0]),
    ("round", (-0.5,), -0.0, [0.0]),
    ("trunc", (-1.0,), -1.0, [0.0]),
    ("sign", (0.0,), 0.0, [0.0]),
    ("sign", (-0.0,), 0.0, [0.0]),
    ("clamp_min", (1.5, 1.5), 1.5, [1.0, 0.0]),
    ("clamp_max", (1.5, 1.5), 1.5, [1.0, 0.0]),
    ("clamp_min", (nan, 1.0), nan, [0.0, 0.0]),
    ("clamp_max", (1.0, nan), nan, [0.0, 0.0]),
    ("fmax", (1.5, 1.5), 1.5, [1.0, 0.0]),
    ("fmin", (1.5, 1.5), 1.5, [1.0, 0.0]),
    ("fmax", (nan, 1.0), 1.0, [0.0, 1.0]),
    ("fmax", (1.0, nan), 1.0, [1.0, 0.0]),
    ("fmin", (nan, 1.0), 1.0, [0.0, 1.0]),
    ("fmin", (1.0, nan), 1.0, [1.0, 0.0]),
    ("copysign", (0.0, 1.0), 0.0, [0.0, 0.0]),
    ("copysign", (2.0, -0.0), -2.0, [-1.0, 0.0]),
    ("copysign", (-0.0, 2.0), 0.0, [0.0, 0.0]),
    ("atan2", (0.0, 0.0), 0.0, [0.0, 0.0]),
    ("atan2", (0.0, -1.0), math.pi, [-1.0, 0.0]),
    ("hypot", (0.0, 0.0), 0.0, [nan, nan]),
    ("xlogy", (0.0, 0.0), 0.0, [0.0, nan]),
    ("xlogy", (0.0, 0.5), 0.0, [math.log(0.5), 0.0]),
    ("xlogy", (0.0, -1.0), 0.0, [0.0, 0.0]),
    ("xlogy", (0.0, nan), nan, [nan, nan]),
    ("xlogy", (2.0, 0.0), -inf, [-inf, inf]),
    ("log1p", (-1.0,), -inf, [inf]),
    ("atanh", (1.0,), inf, [inf]),
    ("atanh", (-1.0,), -inf, [inf]),
    ("acosh", (1.0,), 0.0, [inf]),
    ("asin", (1.0,), math.pi / 2, [inf]),
    ("acos", (-1.0,), math.pi, [-inf]),
    ("erfinv", (1.0,), inf, [inf]),
    ("erfinv", (-1.0,), -inf, [inf]),
    ("logaddexp", (-inf, -inf), -inf, [nan, nan]),
    ("logaddexp", (inf, inf), inf, [nan, nan]),
    ("logaddexp", (1.0, 1.0), 1 + math.log(2), [0.5, 0.5]),
    ("reciprocal", (0.0,), inf, [-inf]),
    ("reciprocal", (-0.0,), -inf, [-inf]),
    ("lgamma", (0.0,), inf, [-inf]),
    ("lgamma", (-1.0,), inf, [nan]),
    ("digamma", (0.0,), -inf, [inf]),
    ("log2", (0.0,), -inf, [inf]),
    ("log10", (0.0,), -inf, [inf]),
    ("softplus", (-1000.0,), 0.0, [0.0]),
    ("log_sigmoid", (1000.0,), 0.0, [0.0]),
    ("log_sigmoid", (-1000.0,), -1000.0, [1.0]),
    ("fmod", (3.0, 1.5), 0.0, [1.0, -2.0]),
    ("remainder", (3.0, 1.5), 0.0, [1.0, -2.0]),
    ("remainder", (-0.0, 1.0), 0.0, [1.0, 0.0]),
    ("floor_divide", (1.0, 0.0), inf, [0.0, 0.0]),
    ("ieee_remainder", (2.5, 1.0), 0.5, [1.0, -2.0]),
    ("erfc", (30.0,), 0.0, [0.0]),
    ("expm1", (-inf,), -1.0, [0.0]),
    ("exp2", (-inf,), 0.0, [0.0]),
]


def spec_for(op):
    """The op's spec; a table row without one is a test failure, never a skip."""
    if op not in SPECS:
        pytest.fail(f"op {op!r} has no test spec: add its domain and oracle to SPECS "
                    "in tests/helpers.py")
    return SPECS[op]


def same(a, b, rel=0.0, abs_=0.0):
    """a and b agree: both NaN, the same infinity, or finite and within tolerance."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ---------------------------------------------------------------------------- random graphs
# A program: leaf values, then steps (op, style, args); an arg is an int (an earlier
# node: leaves first, then step results) or a float constant. The same program runs on
# any backend, so graphs with shared leaves and shared intermediates are built identically.

OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
             "div": operator.truediv, "pow": operator.pow, "neg": operator.neg,
             "abs": operator.abs}
STYLES = ("function", "method", "operator")
SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 3.0)


def run(program, backend, leaves=None):
    """Build the program's graph on ``backend``; returns every node (leaves first).

    ``leaves``: Vars to build on instead of new leaves from the program's values (a traced
    fn runs a program on its placeholders)."""
    values, steps = program
    nodes = [backend.Var(v) for v in values] if leaves is None else list(leaves)
    for op, style, args in steps:
        vals = [nodes[a] if isinstance(a, int) else a for a in args]
        if style == "operator" and op in OPERATORS:
            out = OPERATORS[op](*vals)
        elif style == "method" and isinstance(vals[0], backend.Var) and op != "detach":
            # (Var.detach() is PyTorch's, a new constant; the detach op keeps the edge)
            out = getattr(vals[0], op)(*vals[1:])
        else:
            out = getattr(backend, op)(*vals)
        nodes.append(out)
    return nodes


def reachable(program, root):
    """Indices of the nodes ``root`` depends on, itself included."""
    leaves, steps = program
    seen, stack = {root}, [root]
    while stack:
        i = stack.pop()
        if i >= len(leaves):
            for a in steps[i - len(leaves)][2]:
                if isinstance(a, int) and a not in seen:
                    seen.add(a)
                    stack.append(a)
    return seen


leaf_values = st.one_of(st.sampled_from(SPECIAL), st.floats(-4.0, 4.0))


@st.composite
def programs(draw, ops, max_leaves=4, max_steps=14):
    """Random expression DAGs: few leaves, so operands are reused (shared) often."""
    leaves = draw(st.lists(leaf_values, min_size=1, max_size=max_leaves))
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        op, arity = draw(st.sampled_from(ops))
        n = len(leaves) + len(steps)
        node = st.integers(0, n - 1)
        if arity == 1:
            args = (draw(node),)
        else:
            args = (draw(node), draw(node))
            if draw(st.integers(0, 4)) == 0:  # a constant on one side
                k = draw(st.integers(0, 1))
                args = args[:k] + (draw(leaf_values),) + args[k + 1:]
        steps.append((op, draw(st.sampled_from(STYLES)), args))
    return leaves, steps


def in_new_thread(fn, *args, **kwargs):
    """fn(...) on a fresh thread, so on a fresh (empty) tape; its result, or its exception."""
    out = {}

    def target():
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised on the calling thread
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


# ---------------------------------------------------------------------------- pictures

def square_plus_product(backend):
    """The first worked example, f = x*x + x*y at x = 3, y = 4: (f, x, y)."""
    x, y = backend.Var(3.0), backend.Var(4.0)
    return x * x + x * y, x, y


def dot_nodes_edges(source):
    """The nodes ({id: record label}) and edges ([(from, to)]) of Graphviz DOT source."""
    nodes = dict(re.findall(r'^\s*(n\d+) \[label="(.*?)" ', source, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+)", source, re.M)
    return nodes, edges
