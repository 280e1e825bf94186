"""Pure-Python reference backend: the readable spec of what tapegrad's C++ tape computes.

    import tapegrad.reference as tg   # the same API as `import tapegrad as tg`

A Var is one node of a computation graph: its value, its adjoint (``grad``), the op that
made it and that op's inputs. ``backward()`` visits the nodes below the root newest first
and applies each op's local derivative rule from ``OPS``, the mirror of
``csrc/tapegrad/ops.def``.

``autograd.grad(outputs, inputs, grad_outputs=None, create_graph=False)`` is that sweep as
a function (tapegrad.autograd's); with ``create_graph=True`` (also
``backward(create_graph=True)``) the same rules run on Vars and record the gradient as
nodes, which can be differentiated again.
"""

import builtins
import itertools
import math
import numbers
import operator
import types

import numpy as np

from . import _autograd_args as _args
from . import _special

# ---------------------------------------------------------------------------------------
# C99 / IEEE-754 results where Python raises instead (1/0, math.log(0), math.exp(1000),
# math.pow(-2, 0.5), math.sin(inf), ...): the reference never raises on a value.

inf, nan = math.inf, math.nan


def _div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        return nan if a == 0 or a != a else math.copysign(inf, a) * math.copysign(1.0, b)


def _odd_integer(y):
    return math.isfinite(y) and y % 2.0 == 1.0


def _pow(x, y):
    try:
        return math.pow(x, y)
    except OverflowError:
        return -inf if x < 0 and _odd_integer(y) else inf
    except ValueError:  # a pole pow(+-0, y < 0), or a negative base to a non-integer power
        if x == 0:
            return math.copysign(inf, x) if _odd_integer(y) else inf
        return nan


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return inf


def _log(x):
    if x > 0 or x != x:
        return math.log(x)
    return -inf if x == 0 else nan


def _sqrt(x):
    return math.sqrt(x) if x >= 0 or x != x else nan


def _periodic(f):
    return lambda x: nan if math.isinf(x) else f(x)


_sin, _cos, _tan = _periodic(math.sin), _periodic(math.cos), _periodic(math.tan)
_fabs, _tanh = math.fabs, math.tanh

def _guard(f, pole=None):
    """f with C's results where Python raises: ``pole(x)`` on ValueError (a pole or a
    point outside the domain; NaN by default), +-inf on OverflowError."""
    def g(x):
        try:
            return f(x)
        except ValueError:
            return nan if pole is None else pole(x)
        except OverflowError:
            return math.copysign(inf, x) if f in (math.sinh, math.expm1) and x < 0 else inf
    return g


def _log_pole(x):  # log-like at 0: -inf; below 0: NaN
    return -inf if x == 0 else nan


_expm1 = lambda x: -1.0 if x == -inf else _guard(math.expm1)(x)  # noqa: E731
_log1p = _guard(math.log1p, lambda x: -inf if x == -1 else nan)
_log2, _log10 = _guard(math.log2, _log_pole), _guard(math.log10, _log_pole)
_asin, _acos = _guard(math.asin), _guard(math.acos)
_sinh, _cosh = _guard(math.sinh), _guard(math.cosh)
_acosh = _guard(math.acosh)
def _hypot(x, y):
    """C's hypot, which numpy calls (the C++ op's): Python's math.hypot is its own
    algorithm and differs in the last bit for about 0.5% of inputs."""
    return float(np.hypot(x, y))


_atanh = _guard(math.atanh, lambda x: math.copysign(inf, x) if math.fabs(x) == 1 else nan)
_lgamma, _digamma, _polygamma = _special.lgamma, _special.digamma, _special.polygamma


# libm's exp2 and cbrt, as C++ calls them (math has them from Python 3.11; numpy's before).
_exp2 = _guard(math.exp2) if hasattr(math, "exp2") else (lambda x: float(np.exp2(x)))
_cbrt = math.cbrt if hasattr(math, "cbrt") else (lambda x: float(np.cbrt(x)))


def _integral(f):  # floor, ceil, trunc, round: C's results (inf, NaN, the sign of a zero)
    def g(x):
        if not math.isfinite(x):
            return x
        r = float(f(x))
        return math.copysign(r, x) if r == 0 else r
    return g


# (round, abs and pow are op names below: these helpers use the builtins' other spellings)
_floor, _ceil = _integral(math.floor), _integral(math.ceil)
_trunc, _round = _integral(math.trunc), _integral(builtins.round)


def _fmod(x, y):
    try:
        return math.fmod(x, y)
    except ValueError:  # fmod(inf, y), fmod(x, 0)
        return nan


def _ieee_remainder(x, y):
    try:
        return math.remainder(x, y)
    except ValueError:  # remainder(inf, y), remainder(x, 0)
        return nan


def _remainder(x, y):  # Python's float %, with numpy's NaN where Python raises
    mod = _fmod(x, y)
    if mod != mod:
        return mod
    if mod != 0:
        if (y < 0) != (mod < 0):
            mod += y
    else:
        mod = math.copysign(0.0, y)
    return mod


def _floor_divide(x, y):  # Python's float //, with numpy's inf or NaN where Python raises
    if y == 0:
        return _div(x, y)
    mod = _fmod(x, y)
    div = (x - mod) / y
    if mod != 0 and (y < 0) != (mod < 0):
        div -= 1.0
    if div == 0:
        return math.copysign(0.0, _div(x, y))
    if not math.isfinite(div):
        return div
    floordiv = float(math.floor(div))
    if div - floordiv > 0.5:
        floordiv += 1.0
    return floordiv


def _fmax(x, y):
    return y if x != x else x if y != y else (x if x >= y else y)


def _fmin(x, y):
    return y if x != x else x if y != y else (x if x <= y else y)


def _logaddexp(x, y):
    if x == y and math.isinf(x):
        return x
    return _fmax(x, y) + _log1p(_exp(-math.fabs(x - y)))


def _sigmoid(x):
    return _div(1, 1 + _exp(-x))


def _value_only(v, full):
    """A rule's shortcut that is exact in value only (pow(x, 1) == x; 0 where the full
    product would be 0 * inf): ``v``. In a recorded sweep, where ``full()`` is a Var of v's
    value, that Var instead, so that second derivatives see what the shortcut skips
    (ops.hpp's math::value_only)."""
    r = full()
    return r if isinstance(r, Var) and r == v else v  # (Var == compares values)



# ---------------------------------------------------------------------------------------
# The op table: one row per op, in the order and with the formulas of csrc/tapegrad/ops.def.
#   name: (arity, forward(x, y), rule(x, y, out, g) -> (d/dx, d/dy),
#          tangent(x, y, out, tx, ty) or PARTIALS)
#   x, y: operand values (y is 0.0 for unary ops); out: this node's value;
#   g: this node's adjoint (never 0); tx, ty: the operands' tangents (forward mode).
#   Unary ops ignore y and their d/dy. Kinks follow PyTorch. PARTIALS: the tangent is
#   d/dx(g=tx) + d/dy(g=ty), a term skipped when its tangent is 0 (see tangent()).
PARTIALS = None


def _NO_TANGENT(x, y, out, tx, ty):
    return 0.0


OPS = {
    "add":     (2, lambda x, y: x + y,
                   lambda x, y, out, g: (g, g), lambda x, y, out, tx, ty: tx + ty),
    "sub":     (2, lambda x, y: x - y,
                   lambda x, y, out, g: (g, -g), lambda x, y, out, tx, ty: tx - ty),
    "mul":     (2, lambda x, y: x * y,
                   lambda x, y, out, g: (g * y, g * x), PARTIALS),
    "div":     (2, lambda x, y: _div(x, y),
                   lambda x, y, out, g: (_div(g, y), _div(-g * out, y)), PARTIALS),
    "pow":     (2, lambda x, y: _pow(x, y),
                   lambda x, y, out, g: (_value_only(0.0, lambda: g * y * _pow(x, y - 1)) if y == 0 else
                                         g * y * (_value_only(x, lambda: _pow(x, y - 1)) if y == 2 else _pow(x, y - 1)),
                                         0.0 if (x == 0 and y >= 0) else g * out * _log(x)), PARTIALS),
    "maximum": (2, lambda x, y: x if (x > y or x != x) else y,
                   lambda x, y, out, g: (g if x > y else 0.5 * g if x == y else 0.0 if x < y else g,
                                         g if y > x else 0.5 * g if x == y else 0.0 if y < x else g), PARTIALS),
    "minimum": (2, lambda x, y: x if (x < y or x != x) else y,
                   lambda x, y, out, g: (g if x < y else 0.5 * g if x == y else 0.0 if x > y else g,
                                         g if y < x else 0.5 * g if x == y else 0.0 if y > x else g), PARTIALS),
    "lt":       (2, lambda x, y: 1.0 if x < y else 0.0,  lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "le":       (2, lambda x, y: 1.0 if x <= y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "gt":       (2, lambda x, y: 1.0 if x > y else 0.0,  lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "ge":       (2, lambda x, y: 1.0 if x >= y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "eq":       (2, lambda x, y: 1.0 if x == y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "ne":       (2, lambda x, y: 1.0 if x != y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    # Logical ops on truth values: nonzero is true, NaN included (C, numpy.logical_and).
    "logical_and": (2, lambda x, y: 1.0 if x != 0 and y != 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "logical_or":  (2, lambda x, y: 1.0 if x != 0 or y != 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "logical_not": (1, lambda x, y: 1.0 if x == 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "if_true":  (2, lambda x, y: y if x != 0 else 0.0,
                    lambda x, y, out, g: (0.0, g if x != 0 else 0.0), lambda x, y, out, tx, ty: ty if x != 0 else 0.0),
    "if_false": (2, lambda x, y: 0.0 if x != 0 else y,
                    lambda x, y, out, g: (0.0, 0.0 if x != 0 else g), lambda x, y, out, tx, ty: 0.0 if x != 0 else ty),
    "square":  (1, lambda x, y: x * x,
                   lambda x, y, out, g: (g * 2 * x, 0.0), PARTIALS),
    "neg":     (1, lambda x, y: -x,
                   lambda x, y, out, g: (-g, 0.0), lambda x, y, out, tx, ty: -tx),
    "abs":     (1, lambda x, y: _fabs(x),
                   lambda x, y, out, g: (g if x > 0 else -g if x < 0 else 0.0, 0.0), PARTIALS),
    "sqrt":    (1, lambda x, y: _sqrt(x),
                   lambda x, y, out, g: (_div(g, 2 * out), 0.0), PARTIALS),
    "exp":     (1, lambda x, y: _exp(x),
                   lambda x, y, out, g: (g * out, 0.0), PARTIALS),
    "log":     (1, lambda x, y: _log(x),
                   lambda x, y, out, g: (_div(g, x), 0.0), PARTIALS),
    "sin":     (1, lambda x, y: _sin(x),
                   lambda x, y, out, g: (g * _cos(x), 0.0), PARTIALS),
    "cos":     (1, lambda x, y: _cos(x),
                   lambda x, y, out, g: (-g * _sin(x), 0.0), PARTIALS),
    "tan":     (1, lambda x, y: _tan(x),
                   lambda x, y, out, g: (g * (1 + out * out), 0.0), PARTIALS),
    "tanh":    (1, lambda x, y: _tanh(x),
                   lambda x, y, out, g: (g * (1 - out * out), 0.0), PARTIALS),
    "sigmoid": (1, lambda x, y: _div(1, 1 + _exp(-x)),
                   lambda x, y, out, g: (g * out * (1 - out), 0.0), PARTIALS),
    "relu":    (1, lambda x, y: x if (x > 0 or x != x) else 0.0,
                   lambda x, y, out, g: (0.0 if x <= 0 else g, 0.0), PARTIALS),
    # The value of x with no gradient (PyTorch's detach, JAX's stop_gradient).
    "detach":  (1, lambda x, y: x, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    # ---- exponentials and logs (forms that neither overflow nor cancel; xlogy(0, y) = 0
    # unless y is NaN)
    "expm1":   (1, lambda x, y: _expm1(x), lambda x, y, out, g: (g * (out + 1), 0.0), PARTIALS),
    "log1p":   (1, lambda x, y: _log1p(x), lambda x, y, out, g: (_div(g, x + 1), 0.0), PARTIALS),
    "exp2":    (1, lambda x, y: _exp2(x), lambda x, y, out, g: (g * out * 0.6931471805599453, 0.0), PARTIALS),
    "log2":    (1, lambda x, y: _log2(x), lambda x, y, out, g: (_div(g, x * 0.6931471805599453), 0.0), PARTIALS),
    "log10":   (1, lambda x, y: _log10(x), lambda x, y, out, g: (_div(g, x * 2.302585092994046), 0.0), PARTIALS),
    "logaddexp": (2, lambda x, y: _logaddexp(x, y),
                     lambda x, y, out, g: (_div(g, 1 + _exp(y - x)), _div(g, 1 + _exp(x - y))), PARTIALS),
    "softplus": (1, lambda x, y: _fmax(x, 0.0) + _log1p(_exp(-math.fabs(x))),
                    lambda x, y, out, g: (g * _sigmoid(x), 0.0), PARTIALS),
    "log_sigmoid": (1, lambda x, y: _fmin(x, 0.0) - _log1p(_exp(-math.fabs(x))),
                       lambda x, y, out, g: (g * _sigmoid(-x), 0.0), PARTIALS),
    "xlogy":   (2, lambda x, y: 0.0 if (x == 0 and y == y) else x * _log(y),
                   lambda x, y, out, g: (0.0 if (x == 0 and y <= 0) else g * _log(y), _div(g * x, y)), PARTIALS),
    # ---- trigonometric and hyperbolic (atan2(x, y): numpy's arctan2(x1, x2))
    "asin":    (1, lambda x, y: _asin(x), lambda x, y, out, g: (_div(g, _sqrt((1 - x) * (1 + x))), 0.0), PARTIALS),
    "acos":    (1, lambda x, y: _acos(x), lambda x, y, out, g: (_div(-g, _sqrt((1 - x) * (1 + x))), 0.0), PARTIALS),
    "atan":    (1, lambda x, y: math.atan(x), lambda x, y, out, g: (_div(g, 1 + x * x), 0.0), PARTIALS),
    "atan2":   (2, lambda x, y: math.atan2(x, y),
                   lambda x, y, out, g: ((0.0, 0.0) if x * x + y * y == 0 else
                                         (_div(g * y, x * x + y * y), _div(-g * x, x * x + y * y))), PARTIALS),
    "sinh":    (1, lambda x, y: _sinh(x), lambda x, y, out, g: (g * _cosh(x), 0.0), PARTIALS),
    "cosh":    (1, lambda x, y: _cosh(x), lambda x, y, out, g: (g * _sinh(x), 0.0), PARTIALS),
    "asinh":   (1, lambda x, y: math.asinh(x), lambda x, y, out, g: (_div(g, _hypot(x, 1.0)), 0.0), PARTIALS),
    "acosh":   (1, lambda x, y: _acosh(x), lambda x, y, out, g: (_div(g, _sqrt(x - 1) * _sqrt(x + 1)), 0.0), PARTIALS),
    "atanh":   (1, lambda x, y: _atanh(x), lambda x, y, out, g: (_div(g, (1 - x) * (1 + x)), 0.0), PARTIALS),
    "hypot":   (2, lambda x, y: _hypot(x, y), lambda x, y, out, g: (_div(g * x, out), _div(g * y, out)), PARTIALS),
    # ---- angles (numpy's deg2rad and rad2deg)
    "deg2rad": (1, lambda x, y: x * 0.017453292519943295,
                   lambda x, y, out, g: (g * 0.017453292519943295, 0.0), lambda x, y, out, tx, ty: tx * 0.017453292519943295),
    "rad2deg": (1, lambda x, y: x * 57.29577951308232,
                   lambda x, y, out, g: (g * 57.29577951308232, 0.0), lambda x, y, out, tx, ty: tx * 57.29577951308232),
    # ---- roots and reciprocals
    "cbrt":    (1, lambda x, y: _cbrt(x), lambda x, y, out, g: (_div(g, 3 * out * out), 0.0), PARTIALS),
    "reciprocal": (1, lambda x, y: _div(1, x), lambda x, y, out, g: (-g * out * out, 0.0), PARTIALS),
    # ---- special functions (_special.py; polygamma(n, x): n gets no gradient)
    "erf":     (1, lambda x, y: math.erf(x), lambda x, y, out, g: (g * 1.1283791670955126 * _exp(-x * x), 0.0), PARTIALS),
    "erfc":    (1, lambda x, y: math.erfc(x), lambda x, y, out, g: (-g * 1.1283791670955126 * _exp(-x * x), 0.0), PARTIALS),
    "erfinv":  (1, lambda x, y: _special.erfinv(x), lambda x, y, out, g: (g * 0.886226925452758 * _exp(out * out), 0.0), PARTIALS),
    "lgamma":  (1, lambda x, y: _lgamma(x), lambda x, y, out, g: (g * _digamma(x), 0.0), PARTIALS),
    "digamma": (1, lambda x, y: _special.digamma(x), lambda x, y, out, g: (g * _polygamma(1.0, x), 0.0), PARTIALS),
    "polygamma": (2, lambda x, y: _special.polygamma(x, y),
                     lambda x, y, out, g: (0.0, g * _polygamma(x + 1, y)), PARTIALS),
    # ---- piecewise constant: derivative 0 (PyTorch). round: half to even; sign(NaN) = NaN
    "floor":   (1, lambda x, y: _floor(x), lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "ceil":    (1, lambda x, y: _ceil(x), lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "round":   (1, lambda x, y: _round(x), lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "trunc":   (1, lambda x, y: _trunc(x), lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "sign":    (1, lambda x, y: 1.0 if x > 0 else -1.0 if x < 0 else 0.0 if x == 0 else x,
                   lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "floor_divide": (2, lambda x, y: _floor_divide(x, y), lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    # ---- piecewise linear (d/dy of fmod and remainder: -trunc(x / y), -floor(x / y))
    "fmod":    (2, lambda x, y: _fmod(x, y),
                   lambda x, y, out, g: (g, -g * _trunc(_div(x, y))), PARTIALS),
    "remainder": (2, lambda x, y: _remainder(x, y),
                     lambda x, y, out, g: (g, -g * _floor(_div(x, y))), PARTIALS),
    # ieee_remainder: C's remainder, x - n y with n = x / y rounded half to even
    "ieee_remainder": (2, lambda x, y: _ieee_remainder(x, y),
                          lambda x, y, out, g: (g, -g * _round(_div(x - out, y))), PARTIALS),
    # copysign(x, NaN) is |x|, whatever the NaN's sign bit
    "copysign": (2, lambda x, y: abs(x) if y != y else math.copysign(x, y),
                    lambda x, y, out, g: (0.0 if x == 0 else g * _div(out, x), 0.0), PARTIALS),
    # clip(x, lo, hi) = clamp_max(clamp_min(x, lo), hi): PyTorch's clamp
    "clamp_min": (2, lambda x, y: x + y if (x != x or y != y) else y if x < y else x,
                     lambda x, y, out, g: (g if x >= y else 0.0, g if x < y else 0.0), PARTIALS),
    "clamp_max": (2, lambda x, y: x + y if (x != x or y != y) else y if x > y else x,
                     lambda x, y, out, g: (g if x <= y else 0.0, g if x > y else 0.0), PARTIALS),
    # fmax/fmin ignore a NaN operand; a tie gives x all of g (PyTorch) and is x (numpy)
    "fmax":    (2, lambda x, y: _fmax(x, y),
                   lambda x, y, out, g: ((g, 0.0) if (x >= y or y != y) else (0.0, g)), PARTIALS),
    "fmin":    (2, lambda x, y: _fmin(x, y),
                   lambda x, y, out, g: ((g, 0.0) if (x <= y or y != y) else (0.0, g)), PARTIALS),
}


# The functions the rules call, as csrc/tapegrad/ops_math.def lists them. A recorded sweep
# evaluates the rules on Vars: given a Var, each is the table op of its name (a new node, so
# the gradient differentiates again); on numbers it is the float helper above, unchanged.
# (_div needs nothing: it divides with `/`, which a Var defines, as it does + - *.)
RULE_FUNCTIONS = ("log", "sin", "cos", "exp", "sqrt", "sinh", "cosh", "sigmoid", "digamma",
                  "trunc", "floor", "round", "pow", "hypot", "polygamma")


def _recording(name, f):
    if OPS[name][0] == 1:
        def function(x):
            return _apply(name, (x,)) if isinstance(x, Var) else f(x)
    else:
        def function(x, y):
            if isinstance(x, Var) or isinstance(y, Var):
                return _apply(name, (_operand(x), _operand(y)))  # (pow stays pow: no square)
            return f(x, y)
    function.__name__ = function.__qualname__ = f"_{name}"
    function.__doc__ = f"{f.__name__} on numbers; the {name!r} op (a new node) on a Var."
    return function


for _name in RULE_FUNCTIONS:
    globals()[f"_{_name}"] = _recording(_name, globals()[f"_{_name}"])


def tangent(name, x, y, tx, ty):
    """The tangent of op ``name``'s value when its operands move by ``tx``, ``ty``
    (forward mode), by the table's tangent column."""
    arity, forward, rule, column = OPS[name]
    out = forward(x, y)
    if column is not PARTIALS:
        return column(x, y, out, tx, ty)
    t = rule(x, y, out, tx)[0] if tx != 0 else 0.0
    return t + (rule(x, y, out, ty)[1] if arity == 2 and ty != 0 else 0.0)


def ops():
    """The op table as a list of ``(name, arity)`` tuples, in table order."""
    return [(name, row[0]) for name, row in OPS.items()]


# ---------------------------------------------------------------------------------------

_next_index = itertools.count().__next__  # creation order, the C++ tape's order
_newest_first = operator.attrgetter("_index")


def _number(x):
    """x as a float if it is a real number (int, float, bool, numpy scalar, ...), else None."""
    if type(x) is float:
        return x
    return float(x) if isinstance(x, numbers.Real) else None


def _node(value, op, inputs):
    v = object.__new__(Var)
    v._value, v._grad, v._op, v._inputs, v._index = value, 0.0, op, inputs, _next_index()
    return v


def _operand(x):
    """x if it is a Var, a new 'const' node if it is a number, else None."""
    if isinstance(x, Var):
        return x
    value = _number(x)
    return None if value is None else _node(value, "const", ())


def _apply(name, inputs, exponent=None):
    """A new node: op `name` over `inputs`. `exponent`: pow's exponent if it was a number."""
    if name == "pow" and exponent == 2.0:  # x ** 2 with a number 2: the square op
        name, inputs = "square", inputs[:1]
    x = inputs[0]._value
    y = inputs[1]._value if len(inputs) == 2 else 0.0
    return _node(OPS[name][1](x, y), name, inputs)


def _partials(v, g):
    """The rule of v's op: (d/dx, d/dy) times v's adjoint g."""
    inputs = v._inputs
    x = inputs[0]._value
    y = inputs[1]._value if len(inputs) == 2 else 0.0
    return OPS[v._op][2](x, y, v._value, g)


def _below(roots):
    """The nodes the roots depend on, themselves included, newest first.

    Creation order is a topological order (an op's inputs exist before it) and it is the
    tape's order, so adjoints are summed in the same order as in the C++ backend.
    Iterative, so a 10**6-deep chain needs no recursion."""
    seen = {id(r): r for r in roots}
    stack = list(seen.values())
    while stack:
        for u in stack.pop()._inputs:
            if id(u) not in seen:
                seen[id(u)] = u
                stack.append(u)
    return sorted(seen.values(), key=_newest_first, reverse=True)


def _type_error(where, x):
    return TypeError(f"{where}: expected a Var or a real number, got {type(x).__name__!r}")


class Var:
    """A scalar node of a computation graph: its value, adjoint (grad), op and inputs."""

    __slots__ = ("_value", "_grad", "_op", "_inputs", "_index")

    def __init__(self, value):
        """A leaf holding ``value`` (an int, float, bool or numpy number scalar)."""
        x = _number(value)
        if x is None:
            raise TypeError(f"Var() takes a real number, got {type(value).__name__!r}")
        self._value, self._grad, self._op, self._inputs = x, 0.0, "leaf", ()
        self._index = _next_index()

    # -- value, gradient, introspection -------------------------------------------------

    @property
    def value(self):
        """The forward value; settable on leaves ('leaf' and 'const' nodes) only."""
        return self._value

    @value.setter
    def value(self, x):
        if self._inputs:
            raise ValueError(f"cannot set .value of a non-leaf Var (op {self._op!r}): "
                             "only 'leaf' and 'const' nodes hold values of their own")
        v = _number(x)
        if v is None:
            raise TypeError(f"Var.value must be a real number, got {type(x).__name__!r}")
        self._value = v

    data = value  # micrograd's name

    @property
    def grad(self):
        """The adjoint: d(root)/d(self) after ``root.backward()``; 0.0 before any; a Var
        (differentiable again) on a leaf after ``root.backward(create_graph=True)``."""
        return self._grad

    @grad.setter
    def grad(self, g):
        v = 0.0 if g is None else _number(g)
        if v is None:
            raise TypeError(f"Var.grad must be a real number or None, got {type(g).__name__!r}")
        self._grad = v

    @property
    def op(self):
        """The table op that made this node, or 'leaf' / 'const'."""
        return self._op

    @property
    def inputs(self):
        """The parent Vars (a tuple; empty for leaves)."""
        return self._inputs

    @property
    def is_leaf(self):
        """True for 'leaf' and 'const' nodes."""
        return not self._inputs

    @property
    def id(self):
        """An int identifying the node; ``hash(v) == hash(v.id)``."""
        return id(self)

    def item(self):
        """The value as a Python float."""
        return self._value

    def zero_grad(self):
        """Set this node's grad to 0.0."""
        self._grad = 0.0

    def detach(self):
        """A new 'const' node with this value (no gradient flows back through it)."""
        return _node(self._value, "const", ())

    # -- reverse mode --------------------------------------------------------------------

    def backward(self, create_graph=False):
        """Seed this node with 1.0 and accumulate d(self)/d(v) into every v below it.

        Adjoints of the non-leaf nodes below are reset first, so a second call gives
        exactly twice the leaf grads: leaf and const grads accumulate. A leaf whose grad is
        a Var (from ``create_graph``) gets its new contributions summed as floats, then
        added to that Var in one node.

        ``create_graph=True``: the gradient is recorded instead (``autograd.grad``), so it
        can be differentiated again: each 'leaf' below gets ``.grad = r`` (or ``grad + r``
        if its grad is not 0.0), ``r`` a Var; non-leaf nodes' grads are left alone.
        """
        if not isinstance(create_graph, bool):
            raise TypeError("backward: create_graph must be True or False")
        nodes = _below((self,))
        if create_graph:
            leaves = [v for v in nodes if v._op == "leaf"]
            for v, r in zip(leaves, _gradient([self], [1.0], leaves, True)):
                old = v._grad
                v._grad = r if not isinstance(old, Var) and old == 0.0 else old + r
            return
        recorded = []  # (leaf, its Var grad): the leaf sums floats meanwhile
        for v in nodes:
            if v._inputs:
                v._grad = 0.0
            elif isinstance(v._grad, Var):
                recorded.append((v, v._grad))
                v._grad = 0.0
        self._grad += 1.0
        for v in nodes:  # newest first: every node before its inputs
            g = v._grad
            if g == 0.0 or not v._inputs:  # skip a zero adjoint: 0 * inf must not leak NaN
                continue
            for u, d in zip(v._inputs, _partials(v, g)):  # unary: zip drops d/dy
                if u._op != "const":  # constants take no gradient (nothing reads it)
                    u._grad += d
        for v, grad in recorded:
            v._grad = grad if v._grad == 0.0 else grad + v._grad

    # -- Python protocols ----------------------------------------------------------------

    def __repr__(self):
        g = self._grad  # a Var grad shows its value: its own grad could lead back here
        grad = f"Var(value={g._value!r})" if isinstance(g, Var) else repr(g)
        return f"Var(value={self._value!r}, grad={grad})"

    def __format__(self, spec):
        return format(self._value, spec)

    def __float__(self):
        return self._value

    def __int__(self):
        return int(self._value)

    def __bool__(self):
        return self._value != 0

    def __hash__(self):  # node identity, so dict/set lookups never compare values
        return hash(id(self))

    def __copy__(self):
        if self._inputs:
            raise RuntimeError(f"cannot copy a non-leaf Var (op {self._op!r}); "
                               "use .detach() or Var(v.value)")
        v = _node(self._value, self._op, ())
        v._grad = self._grad
        return v

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __reduce_ex__(self, protocol):
        raise TypeError("Var objects cannot be pickled: a node belongs to a graph; "
                        "pickle v.value instead")

    def __pos__(self):
        return self

    def __neg__(self):
        return _apply("neg", (self,))

    def __abs__(self):
        return _apply("abs", (self,))

    def __pow__(self, other, mod=None):
        if mod is not None:
            raise TypeError("pow() with a modulus is not supported for Var")
        y = _operand(other)
        return NotImplemented if y is None else _apply("pow", (self, y), _number(other))

    def __rpow__(self, other, mod=None):
        if mod is not None:
            raise TypeError("pow() with a modulus is not supported for Var")
        other = _operand(other)
        return NotImplemented if other is None else _apply("pow", (other, self))


def _operator(name, reflected):
    def method(self, other):
        other = _operand(other)
        if other is None:
            return NotImplemented
        return _apply(name, (other, self) if reflected else (self, other))
    return method


def _comparison(compare):
    def method(self, other):
        o = other._value if isinstance(other, Var) else _number(other)
        return NotImplemented if o is None else compare(self._value, o)
    return method


for _name, _op in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div")):
    setattr(Var, f"__{_name}__", _operator(_op, reflected=False))
    setattr(Var, f"__r{_name}__", _operator(_op, reflected=True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(Var, f"__{_name}__", _comparison(getattr(operator, _name)))
for _name, _op in (("floordiv", "floor_divide"), ("mod", "remainder")):
    setattr(Var, f"__{_name}__", _operator(_op, reflected=False))
    setattr(Var, f"__r{_name}__", _operator(_op, reflected=True))


# ---------------------------------------------------------------------------------------
# One method and one module function per table op, generated from OPS.

def _method(name, arity):
    if arity == 1:
        def method(self):
            return _apply(name, (self,))
    else:
        def method(self, other):
            y = _operand(other)
            if y is None:
                raise _type_error(f"Var.{name}()", other)
            return _apply(name, (self, y), _number(other))
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"The {name!r} op of the table (a new node)."
    return method


def _function(name, arity):
    forward = OPS[name][1]

    def apply(args):
        values = [_number(a) for a in args]
        if None not in values:  # only plain numbers: a plain float
            return forward(values[0], values[1] if arity == 2 else 0.0)
        inputs = tuple(_operand(a) for a in args)
        for a, v in zip(args, inputs):
            if v is None:
                raise _type_error(f"{name}()", a)
        exponent = _number(args[1]) if arity == 2 and isinstance(args[0], Var) else None
        return _apply(name, inputs, exponent)

    if arity == 1:
        def function(x):
            return apply((x,))
    else:
        def function(x, y):
            return apply((x, y))
    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"The {name!r} op of the table: a new Var, or a float if every "
                        "argument is a plain number.")
    return function


for _name, (_arity, *_) in OPS.items():
    if _name != "detach":  # Var.detach() makes a constant (see Var.detach)
        setattr(Var, _name, _method(_name, _arity))
    globals()[_name] = _function(_name, _arity)
del _name, _op, _arity


# numpy's names of table ops (csrc/tapegrad/op_aliases.def): np.arcsin(a) calls a.arcsin().
ALIASES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2",
           "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "rint": "round",
           "fabs": "abs", "radians": "deg2rad", "degrees": "rad2deg"}
for _alias, _name in ALIASES.items():
    setattr(Var, _alias, getattr(Var, _name))
    globals()[_alias] = globals()[_name]
del _alias


def op_aliases():
    """(alias, op) per other name of a table op, as op_aliases.def lists them."""
    return list(ALIASES.items())


def _divmod(self, other):
    return (self // other, self % other)


def _rdivmod(self, other):
    return (other // self, other % self)


def _var_round(self, ndigits=None):
    """round(v): the round op (half to even). round(v, n): numpy's around,
    round(v * 10**n) / 10**n."""
    if ndigits is None:
        return self.round()
    if not -308 <= ndigits <= 308:
        raise ValueError("round(Var, ndigits): ndigits must be in [-308, 308]")
    scale = 10.0 ** ndigits
    return (self * scale).round() / scale


Var.__divmod__, Var.__rdivmod__, Var.__round__ = _divmod, _rdivmod, _var_round
Var.__floor__, Var.__ceil__, Var.__trunc__ = Var.floor, Var.ceil, Var.trunc


def clip(x, lo, hi):
    """clamp_max(clamp_min(x, lo), hi): PyTorch's clamp. x gets the gradient where
    lo <= x <= hi, a bound where it wins; a float if every argument is a number."""
    return clamp_max(clamp_min(x, lo), hi)  # noqa: F821 - generated from OPS above


Var.clip = lambda self, lo, hi: clip(self, lo, hi)


def local_grads(v, g=None):
    """What each input of ``v`` receives from ``v`` in a backward sweep when v's adjoint is
    ``g`` (default: ``v.grad``), by the table's rule: one float per input."""
    if not isinstance(v, Var):
        raise TypeError(f"local_grads() expects a Var, got {type(v).__name__!r}")
    adjoint = v._grad if g is None else _number(g)
    if adjoint is None:
        raise _type_error("local_grads()", g)
    return _partials(v, adjoint)[:len(v._inputs)] if v._inputs else ()


def where(cond, a, b):
    """``a`` where ``cond`` is nonzero, else ``b``, as a branch-free graph node
    (``if_true(cond, a) + if_false(cond, b)``). ``cond`` may be a Python bool (``x > 0``:
    the reference does not trace) or a node from ``lt``/``le``/``gt``/``ge``/``eq``/``ne``
    or the logical ops. Only the chosen side gets a gradient."""
    if not any(isinstance(v, Var) for v in (cond, a, b)):
        return a if cond else b
    return if_true(cond, a) + if_false(cond, b)  # noqa: F821 - generated from OPS above


def zero_grad(variables):
    """Set the grad of every Var in ``variables`` (any iterable) to 0.0."""
    for v in variables:
        if not isinstance(v, Var):
            raise TypeError(f"zero_grad() expects Vars, got {type(v).__name__!r}")
        v._grad = 0.0


# ---------------------------------------------------------------------------------------
# Gradients of Vars with respect to Vars (tapegrad.autograd): the reverse sweep of
# backward() as a function, with the adjoints as floats, or recorded as Vars
# (csrc/tapegrad/backward_graph.cpp). Recorded, the same rules run on Vars: their
# arithmetic and RULE_FUNCTIONS append nodes, numbers fold, a constant node enters a rule
# as its number, and a comparison sees values (the branch the current values take).

def _value(a):
    return a._value if isinstance(a, Var) else a


def _gradient(outputs, seeds, inputs, create_graph):
    """d(sum_k seeds[k] * outputs[k]) / d inputs[j], one float or (create_graph) Var each."""
    adjoint = {}  # id(node) -> float or Var; a node is in it once it has a contribution

    def add(u, c):  # adj[u] += c, the first contribution being c itself
        a = adjoint.get(id(u))
        adjoint[id(u)] = c if a is None else a + c

    def operand(u):
        return u._value if not create_graph or u._op == "const" else u

    for o, s in zip(outputs, seeds):
        add(o, s if create_graph else _value(s))
    for v in _below(outputs):  # newest first
        g = adjoint.get(id(v))
        if g is None or not v._inputs or (not isinstance(g, Var) and g == 0.0):
            continue
        x = operand(v._inputs[0])
        y = operand(v._inputs[1]) if len(v._inputs) == 2 else 0.0
        for u, c in zip(v._inputs, OPS[v._op][2](x, y, operand(v), g)):
            if not isinstance(c, Var) and c == 0.0:
                continue
            # backward() skips a zero adjoint (no 0 * inf NaN from it); a recorded adjoint
            # of value 0 may still have derivatives: its finite contributions are kept.
            if _value(g) == 0.0 and not math.isfinite(_value(c)):
                continue
            add(u, c)
    grads = [adjoint.get(id(w), 0.0) for w in inputs]
    if create_graph:
        return [g if isinstance(g, Var) else _node(float(g), "const", ()) for g in grads]
    return grads


def _autograd_grad(outputs, inputs, grad_outputs=None, create_graph=False):
    """d(sum_k grad_outputs[k] * outputs[k]) / d inputs, one entry per input, as a tuple
    (``torch.autograd.grad``).

    ``outputs``: a Var or a sequence of Vars; ``inputs``: a Var, a sequence of Vars or an
    object array of Vars (its entry in the result is an array of the same shape);
    ``grad_outputs``: the seeds (numbers or Vars), 1.0 for each output by default.
    An input the outputs do not depend on gets 0.0. With ``create_graph=True`` each
    gradient is a Var whose graph is the recorded reverse sweep, else a float. The inputs'
    ``.grad`` is left alone.

    Values equal backward()'s, but a gradient that is a single -0.0 contribution stays
    -0.0, and where an adjoint is 0 the recorded sweep keeps the contributions with finite
    values (their derivatives need not be 0), while backward() skips them.
    """
    outs = [v for vs, _ in _args.groups(outputs, "outputs", Var) for v in vs]
    seeds = _args.seeds(grad_outputs, len(outs), create_graph, Var)
    parts = _args.groups(inputs, "inputs", Var)
    grads = _gradient(outs, seeds, [v for vs, _ in parts for v in vs], create_graph)
    return _args.regroup(grads, parts, create_graph)


_autograd_grad.__name__, _autograd_grad.__qualname__ = "grad", "autograd.grad"
# tapegrad.autograd's API: `import tapegrad.reference as tg; tg.autograd.grad(...)`
autograd = types.SimpleNamespace(grad=_autograd_grad)


__all__ = ["Var", "clip", "local_grads", "op_aliases", "ops", "where", "zero_grad", *OPS,
           *ALIASES]
