"""mpmath at 50 digits as the oracle of every op in the table: its exact value, its
partial derivatives in closed form, where it is smooth (the random domain), and the ulp
bounds tapegrad keeps there. Shared by tests/test_ops_mpmath.py and bench/accuracy.py.

Error measure: |got - exact| / ulp(exact), the exact value's double ulp (math.ulp of the
exact value rounded to a double; 5e-324 when it is 0, so an exact 0 needs a 0).

Bounds (ulp, per op): `value` for the eager value (scalar libm, one point), `lanes` for
the batched replay's value (glibc libmvec, within 4 ulp of scalar libm per call), `grad`
for first derivatives (eager, reference and lanes) and `hess` for second derivatives
(C++ dual numbers). A derivative rule that reuses the rounded value (tanh: 1 - out^2,
sigmoid: out (1 - out), expm1: out + 1) inherits its cancellation, so `grad` is looser
than `value` and depends on the domain: the bounds hold on the domain below, and the
domains are wide on purpose (they are the accuracy table's). Bounds of erfinv, lgamma,
digamma and polygamma are provisional (placeholder implementations; tighten them when
the real ones land and bench/accuracy.py has measured them).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import mpmath

mp = mpmath.mp
mp.dps = 50
inf, nan = math.inf, math.nan
M = mpmath.mpf
LN2, LN10 = mpmath.log(2), mpmath.log(10)
TWO_OVER_SQRT_PI = 2 / mpmath.sqrt(mpmath.pi)


# ---------------------------------------------------------------------------- domains
# Samplers: random.Random -> one argument. Wide on purpose: linear pieces where the
# function varies on an O(1) scale, log-uniform pieces over many binades.

def uni(a, b):
    return lambda r: r.uniform(a, b)


def logu(a, b):  # log-uniform on [a, b], 0 < a < b
    la, lb = math.log(a), math.log(b)
    return lambda r: math.exp(r.uniform(la, lb))


def signed(s):  # s with a random sign
    return lambda r: r.choice((-1.0, 1.0)) * s(r)


def mix(*samplers):
    return lambda r: r.choice(samplers)(r)


def shift(s, c):  # c + s(r), e.g. points just above 1
    return lambda r: c + s(r)


def unary(s):
    return lambda r: (s(r),)


def binary(sx, sy):
    return lambda r: (sx(r), sy(r))


def untied(s):  # (x, y) with x != y, for kinks at x == y
    def pair(r):
        x, y = s(r), s(r)
        return (x, y) if x != y else (x, y + 1.0)
    return pair


def nonint(s):  # away from integers by >= 1e-3 (floor, round, poles of digamma)
    def draw(r):
        while True:
            x = s(r)
            if abs(x - round(x)) > 1e-3:
                return x
    return draw


REAL = mix(uni(-3, 3), signed(logu(1e-300, 1e300)))
MODERATE = uni(-3, 3)
POSITIVE = logu(1e-300, 1e300)
NONZERO = signed(logu(1e-300, 1e300))
UNIT = mix(uni(-1, 1), signed(shift(lambda r: -logu(1e-16, 1)(r), 1.0)))  # (-1, 1), near +-1 too


# ---------------------------------------------------------------------------- closed forms

def sig(x):
    return 1 / (1 + mpmath.exp(-x))


def step(c):
    return M(1) if c else M(0)


def lgamma(x):  # log |Gamma(x)|
    return mpmath.log(abs(mpmath.gamma(x))) if x < 0 else mpmath.loggamma(x)


def cbrt(x):
    return mpmath.cbrt(x) if x >= 0 else -mpmath.cbrt(-x)


def Q(x):  # a double (or an mpf holding one) as an exact rational
    return Fraction(float(x))


def MQ(q):  # an exact rational as an mpf (exact: these are doubles' sums)
    return M(q.numerator) / q.denominator


def exact_int(f):  # floor/ceil/trunc/round of a double: exact in rationals
    return lambda x: M(f(Q(x)))


def fmod(x, y):
    return MQ(Q(x) - math.trunc(Q(x) / Q(y)) * Q(y))


def remainder(x, y):
    return MQ(Q(x) - math.floor(Q(x) / Q(y)) * Q(y))


def psi(n, x):
    """mpmath's polygamma, refusing the poles at 0 and the negative integers up front
    (mpmath's own search for them never ends at x = -1e300)."""
    if x <= 0 and x == mpmath.floor(x):
        raise ZeroDivisionError("pole")
    return mpmath.polygamma(n, x)


def reflection_size(n, x):
    """For x < 0 off the poles: the larger term of the reflection formula special.hpp
    computes psi^(n)(x) by, (-1)^n psi^(n)(1 - x) and the cot term; 0 for x > 0."""
    if x >= 0 or x == math.floor(x):
        return M(0)
    a = mpmath.polygamma(n, 1 - M(x))
    return max(abs(a), abs(mpmath.polygamma(n, M(x)) - (-1)**n * a))


def order(n):
    """polygamma's n: a whole number >= 0 (NaN elsewhere)."""
    if not (n >= 0 and n == mpmath.floor(n)) or mpmath.isinf(n):
        raise ValueError("polygamma's order is a whole number >= 0")
    return int(n)


def round_half_even(q):
    return round(q)  # Fraction.__round__: half to even


ZERO = lambda *a: M(0)  # noqa: E731
ONE = lambda *a: M(1)  # noqa: E731


class Oracle(NamedTuple):
    f: Callable                 # the exact value, on mpf (or Fraction-exact) arguments
    d: tuple                    # closed-form partial derivatives, one per argument
    domain: Callable            # random.Random -> args, where f is smooth
    value: float = 1            # ulp bounds (module docstring)
    lanes: float = 4
    grad: float = 4
    hess: float = 16
    # Arguments that get no gradient (polygamma's n): derivatives in them are exactly 0.
    no_grad: tuple = ()
    # C99 Annex F / documented values where mpmath has no real value (or has no signed
    # zero): args -> expected value, or None to use mpmath (default: NaN where mpmath has
    # none).
    ieee: Callable = lambda *a: None
    # Extra edge points of this op (poles, domain edges), besides the generic ones.
    edges: tuple = ()
    # Edge points whose derivative is not within `grad` by design (args -> reason or None).
    grad_exempt: Callable = lambda *a: None
    hess_exempt: Callable = None  # the same for second derivatives (default: grad_exempt)
    piecewise_constant: bool = False  # derivative exactly 0 (floor, comparisons, ...)
    piecewise_linear: bool = False    # second derivative exactly 0 (fmod, clamp, ...)
    # Whether both backends compute the value with the same algorithm, so that they agree
    # bit for bit (lgamma: glibc's lgamma_r in C++, its own in Python; both within `value`).
    same_bits: bool = True
    # Ops computed by a formula whose terms cancel (digamma's reflection at x < 0, near its
    # zeros there): args -> the size of the larger term; errors are then in ulp of that
    # (the absolute error the formula can reach), not of the tiny exact value. For the value
    # and for the derivatives (args, i) -> size.
    value_scale: Callable = None
    grad_scale: Callable = None
    # Points that are kinks by definition or by convention (no two-sided derivative, or
    # PyTorch's choice of one): their derivatives are test_conventions' business.
    kink: Callable = lambda *a: False


def _py(f):  # C99 Annex F values of Python's math function, NaN where it raises
    def g(*a):
        try:
            return f(*a)
        except (ValueError, OverflowError):
            return None
    return g


def zero_sign(f):  # only for signed-zero / infinite arguments: C's value (via math)
    def g(*a):
        if any(v == 0 or math.isinf(v) for v in a) and not any(v != v for v in a):
            return _py(f)(*a)
        return None
    return g


def far_tail(limit):  # derivative rules that reuse the rounded value: exempt past |x| > limit
    return lambda x: (f"d/dx reuses the rounded value, which saturates for |x| > {limit}"
                      if abs(x) > limit else None)


ORACLES: dict[str, Oracle] = {
    # ---- arithmetic
    "add": Oracle(lambda x, y: x + y, (ONE, ONE), binary(REAL, REAL), value=0.5, lanes=0.5),
    "sub": Oracle(lambda x, y: x - y, (ONE, lambda x, y: M(-1)), binary(REAL, REAL),
                  value=0.5, lanes=0.5),
    "mul": Oracle(lambda x, y: x * y, (lambda x, y: y, lambda x, y: x),
                  binary(mix(MODERATE, signed(logu(1e-150, 1e150))),
                         mix(MODERATE, signed(logu(1e-150, 1e150)))), value=0.5, lanes=0.5),
    "div": Oracle(lambda x, y: x / y, (lambda x, y: 1 / y, lambda x, y: -x / y**2),
                  binary(mix(MODERATE, signed(logu(1e-100, 1e100))), signed(logu(1e-100, 1e100))),
                  value=0.5, lanes=0.5),
    "pow": Oracle(lambda x, y: x**y, (lambda x, y: y * x**(y - 1), lambda x, y: x**y * mpmath.log(x)),
                  binary(logu(1e-3, 1e3), uni(-30, 30)), grad=128),  # y - 1 rounds: |log x| ulp(y)
    "maximum": Oracle(lambda x, y: max(x, y), (lambda x, y: step(x > y), lambda x, y: step(y > x)),
                      untied(REAL), value=0, lanes=0),
    "minimum": Oracle(lambda x, y: min(x, y), (lambda x, y: step(x < y), lambda x, y: step(y < x)),
                      untied(REAL), value=0, lanes=0),
    "lt": Oracle(lambda x, y: step(x < y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "le": Oracle(lambda x, y: step(x <= y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "gt": Oracle(lambda x, y: step(x > y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "ge": Oracle(lambda x, y: step(x >= y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "eq": Oracle(lambda x, y: step(x == y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "ne": Oracle(lambda x, y: step(x != y), (ZERO, ZERO), untied(REAL), 0, 0, piecewise_constant=True),
    "logical_and": Oracle(lambda x, y: step(x != 0 and y != 0), (ZERO, ZERO),
                          binary(mix(NONZERO, lambda r: 0.0), mix(NONZERO, lambda r: 0.0)), 0, 0,
                          piecewise_constant=True),
    "logical_or": Oracle(lambda x, y: step(x != 0 or y != 0), (ZERO, ZERO),
                         binary(mix(NONZERO, lambda r: 0.0), mix(NONZERO, lambda r: 0.0)), 0, 0,
                         piecewise_constant=True),
    "logical_not": Oracle(lambda x: step(x == 0), (ZERO,), unary(mix(NONZERO, lambda r: 0.0)), 0, 0,
                          piecewise_constant=True),
    "if_true": Oracle(lambda c, a: a if c != 0 else M(0), (ZERO, lambda c, a: step(c != 0)),
                      binary(NONZERO, REAL), 0, 0),
    "if_false": Oracle(lambda c, a: M(0) if c != 0 else a, (ZERO, lambda c, a: step(c == 0)),
                       binary(NONZERO, REAL), 0, 0),
    "square": Oracle(lambda x: x * x, (lambda x: 2 * x,),
                     unary(mix(MODERATE, signed(logu(1e-150, 1e150)))), 0.5, 0.5),
    "neg": Oracle(lambda x: -x, (lambda x: M(-1),), unary(REAL), 0, 0),
    "abs": Oracle(lambda x: abs(x), (lambda x: M(1) if x > 0 else M(-1),), unary(NONZERO), 0, 0),
    "sqrt": Oracle(mpmath.sqrt, (lambda x: 1 / (2 * mpmath.sqrt(x)),), unary(POSITIVE), 0.5, 0.5),
    "exp": Oracle(mpmath.exp, (mpmath.exp,), unary(mix(MODERATE, uni(-745, 709)))),
    "log": Oracle(mpmath.log, (lambda x: 1 / x,), unary(mix(uni(0.5, 2), POSITIVE))),
    "sin": Oracle(mpmath.sin, (mpmath.cos,), unary(mix(uni(-10, 10), signed(logu(1e-10, 1e5))))),
    "cos": Oracle(mpmath.cos, (lambda x: -mpmath.sin(x),), unary(mix(uni(-10, 10), signed(logu(1e-10, 1e5))))),
    "tan": Oracle(mpmath.tan, (lambda x: 1 / mpmath.cos(x)**2,), unary(uni(-1.5, 1.5)), grad=6),
    "tanh": Oracle(mpmath.tanh, (lambda x: 1 / mpmath.cosh(x)**2,), unary(mix(MODERATE, uni(-20, 20))),
                   value=3, grad=256, hess=256, grad_exempt=far_tail(3)),
    "sigmoid": Oracle(sig, (lambda x: sig(x) * sig(-x),), unary(mix(MODERATE, uni(-30, 30))),
                      value=3, grad=32, grad_exempt=far_tail(3),
                      # 1 / (1 + exp(-x)) is 0 once exp(-x) overflows: the exact value
                      # is a subnormal down to x = -745
                      ieee=lambda x: 0.0 if -745.2 < x < -709.78 else None),
    "relu": Oracle(lambda x: max(x, M(0)), (lambda x: step(x > 0),), unary(NONZERO), 0, 0),
    "detach": Oracle(lambda x: x, (ZERO,), unary(REAL), 0, 0, piecewise_constant=True),
    # ---- exponentials and logs
    "expm1": Oracle(mpmath.expm1, (mpmath.exp,), unary(mix(MODERATE, uni(-40, 700), signed(logu(1e-300, 1)))), grad=24,
                    grad_exempt=lambda x: "d/dx is out + 1: cancels for x < -3, 0 once expm1 "
                    "rounds to -1 (x < -37)" if x < -3 else None),
    "log1p": Oracle(mpmath.log1p, (lambda x: 1 / (1 + x),),
                    unary(mix(uni(-0.999, 3), signed(logu(1e-300, 0.5)), POSITIVE))),
    "exp2": Oracle(lambda x: M(2)**x, (lambda x: M(2)**x * LN2,), unary(mix(MODERATE, uni(-1074, 1023)))),
    "log2": Oracle(lambda x: mpmath.log(x, 2), (lambda x: 1 / (x * LN2),), unary(mix(uni(0.5, 2), POSITIVE))),
    "log10": Oracle(mpmath.log10, (lambda x: 1 / (x * LN10),), unary(mix(uni(0.5, 2), POSITIVE)), value=2),
    "logaddexp": Oracle(lambda x, y: mpmath.log(mpmath.exp(x) + mpmath.exp(y)),
                        (lambda x, y: sig(x - y), lambda x, y: sig(y - x)),
                        binary(mix(MODERATE, uni(-800, 800)), mix(MODERATE, uni(-800, 800))),
                        # cancels where the result is near 0 (fmax + log1p of about -fmax);
                        # d/dx: exp(y - x) with y - x rounded
                        value=256, lanes=256, grad=1024, hess=1024,
                        hess_exempt=lambda x, y: far_tail(3)(x - y),
                        ieee=lambda x, y: x if x == y and math.isinf(x) else None),
    "softplus": Oracle(lambda x: mpmath.log1p(mpmath.exp(x)), (sig,),
                       unary(mix(MODERATE, uni(-740, 740))), value=2,
                       hess=32, hess_exempt=far_tail(3)),
    "log_sigmoid": Oracle(lambda x: -mpmath.log1p(mpmath.exp(-x)), (lambda x: sig(-x),),
                          unary(mix(MODERATE, uni(-740, 740))), value=2,
                       hess=32, hess_exempt=far_tail(3)),
    "xlogy": Oracle(lambda x, y: M(0) if x == 0 else x * mpmath.log(y),
                    (lambda x, y: mpmath.log(y), lambda x, y: x / y),
                    binary(REAL, mix(uni(0.5, 2), POSITIVE)), value=2),
    # ---- trigonometric and hyperbolic
    "asin": Oracle(mpmath.asin, (lambda x: 1 / mpmath.sqrt(1 - x * x),), unary(UNIT)),
    "acos": Oracle(mpmath.acos, (lambda x: -1 / mpmath.sqrt(1 - x * x),), unary(UNIT)),
    "atan": Oracle(mpmath.atan, (lambda x: 1 / (1 + x * x),), unary(REAL)),
    "atan2": Oracle(mpmath.atan2, (lambda x, y: y / (x * x + y * y), lambda x, y: -x / (x * x + y * y)),
                    binary(mix(MODERATE, signed(logu(1e-150, 1e150))), mix(MODERATE, signed(logu(1e-150, 1e150)))),
                    ieee=zero_sign(math.atan2)),
    "sinh": Oracle(mpmath.sinh, (mpmath.cosh,), unary(mix(MODERATE, uni(-710, 710), signed(logu(1e-300, 1)))), value=2),
    "cosh": Oracle(mpmath.cosh, (mpmath.sinh,), unary(mix(MODERATE, uni(-710, 710)))),
    "asinh": Oracle(mpmath.asinh, (lambda x: 1 / mpmath.sqrt(x * x + 1),), unary(REAL), value=2),
    "acosh": Oracle(mpmath.acosh, (lambda x: 1 / mpmath.sqrt(x * x - 1),),
                    unary(mix(uni(1, 4), shift(logu(1e-15, 1e300), 1.0))), value=2, edges=(1 + 2**-52,)),
    "atanh": Oracle(mpmath.atanh, (lambda x: 1 / (1 - x * x),), unary(UNIT), value=2),
    "hypot": Oracle(mpmath.hypot, (lambda x, y: x / mpmath.hypot(x, y), lambda x, y: y / mpmath.hypot(x, y)),
                    binary(REAL, REAL), ieee=lambda x, y: inf if math.isinf(x) or math.isinf(y) else None),
    # ---- angles: x times pi/180 (or 180/pi) rounded to a double, then rounded: 1 ulp
    "deg2rad": Oracle(lambda x: x * mpmath.pi / 180, (lambda x: mpmath.pi / 180,), unary(REAL), 1, 1),
    "rad2deg": Oracle(lambda x: x * 180 / mpmath.pi, (lambda x: 180 / mpmath.pi,), unary(REAL), 1, 1),
    # ---- roots and reciprocals
    "cbrt": Oracle(cbrt, (lambda x: 1 / (3 * cbrt(x)**2),), unary(REAL), value=3, grad=12),
    "reciprocal": Oracle(lambda x: 1 / x, (lambda x: -1 / x**2,), unary(mix(MODERATE, signed(logu(1e-150, 1e150)))),
                         0.5, 0.5),
    # ---- special functions
    "erf": Oracle(mpmath.erf, (lambda x: TWO_OVER_SQRT_PI * mpmath.exp(-x * x),),
                  unary(mix(uni(-6, 6), signed(logu(1e-300, 1)))),
                  grad=64),  # exp(-x * x): x * x rounds, |x^2| ulp relative
    "erfc": Oracle(mpmath.erfc, (lambda x: -TWO_OVER_SQRT_PI * mpmath.exp(-x * x),),
                   unary(mix(uni(-6, 6), uni(-3, 27))), value=3, grad=1024, hess=1024,
                   ieee=lambda x: 0.0 if x > 28 else None),  # underflows (mpmath too)
    "erfinv": Oracle(mpmath.erfinv, (lambda x: mpmath.sqrt(mpmath.pi) / 2 * mpmath.exp(mpmath.erfinv(x)**2),),
                     unary(mix(UNIT, signed(logu(1e-300, 1e-3)))),
                     # d/dx is exp(erfinv(x)^2): erfinv's error times 2 erfinv(x)^2 (~70 at 6)
                     value=2, lanes=3, grad=96, hess=160,
                     edges=(1 - 2**-53, -(1 - 2**-53), 0.9999999999)),
    "lgamma": Oracle(lgamma, (lambda x: psi(0, x),),
                     unary(mix(uni(0.01, 30), nonint(uni(-20, 0)), logu(1e-300, 1e300))),
                     # x < 0: in ulp of the reflection's larger term (lgamma_reflection_size)
                     value=6, lanes=6, grad=6, hess=6,
                     edges=(-1.0, -2.0, -2.5, 1e15 + 0.5, 1e306), ieee=lambda x: inf if x == -inf or x <= 0 and x == math.floor(x) else None),
    "digamma": Oracle(lambda x: psi(0, x), (lambda x: psi(1, x),),
                      unary(mix(uni(0.01, 30), nonint(uni(-20, 0)), logu(30, 1e15))),
                      value=4, lanes=4, grad=8, hess=8,  # x < 0: reflection_size
                      edges=(-1.0, -2.0, -2.5, 1.4616321449683622)),
    "polygamma": Oracle(lambda n, x: psi(order(n), x),
                        (ZERO, lambda n, x: psi(order(n) + 1, x)),
                        lambda r: (float(r.randrange(5)), mix(uni(0.01, 30), nonint(uni(-10, 0)), logu(30, 1e6))(r)),
                        value=12, lanes=12, grad=16, hess=16, no_grad=(0,)),
    # ---- piecewise constant
    "floor": Oracle(exact_int(math.floor), (ZERO,), unary(nonint(mix(uni(-100, 100), signed(logu(1e-300, 1e17))))),
                    0, 0, piecewise_constant=True),
    "ceil": Oracle(exact_int(math.ceil), (ZERO,), unary(nonint(mix(uni(-100, 100), signed(logu(1e-300, 1e17))))),
                   0, 0, piecewise_constant=True),
    "round": Oracle(exact_int(round_half_even), (ZERO,),
                    unary(mix(uni(-100, 100), signed(logu(1e-300, 1e17)), lambda r: r.randrange(-50, 50) + 0.5)),
                    0, 0, piecewise_constant=True),
    "trunc": Oracle(exact_int(math.trunc), (ZERO,), unary(nonint(mix(uni(-100, 100), signed(logu(1e-300, 1e17))))),
                    0, 0, piecewise_constant=True),
    "sign": Oracle(lambda x: mpmath.sign(x), (ZERO,), unary(NONZERO), 0, 0, piecewise_constant=True),
    "floor_divide": Oracle(lambda x, y: M(math.floor(Q(x) / Q(y))), (ZERO, ZERO),
                           binary(uni(-100, 100), signed(logu(0.01, 100))), 0.5, 0.5,
                           piecewise_constant=True),
    # ---- piecewise linear
    "fmod": Oracle(fmod, (ONE, lambda x, y: -M(math.trunc(Q(x) / Q(y)))),
                   binary(uni(-100, 100), signed(logu(0.01, 100))), 0, 0),
    "remainder": Oracle(remainder, (ONE, lambda x, y: -M(math.floor(Q(x) / Q(y)))),
                        binary(uni(-100, 100), signed(logu(0.01, 100))), 0.5, 0.5),
    "ieee_remainder": Oracle(lambda x, y: MQ(Q(x) - Q(y) * round_half_even(Q(x) / Q(y))),
                             (ONE, lambda x, y: -M(round_half_even(Q(x) / Q(y)))),
                             binary(uni(-100, 100), signed(logu(0.01, 100))), 0, 0),
    "copysign": Oracle(lambda x, y: abs(x) if y > 0 else -abs(x),
                       (lambda x, y: M(1) if (x > 0) == (y > 0) else M(-1), ZERO),
                       binary(NONZERO, NONZERO), 0, 0,
                       ieee=lambda x, y: math.copysign(x, y) if x == 0 or y == 0 else None),
    "clamp_min": Oracle(lambda x, y: max(x, y), (lambda x, y: step(x >= y), lambda x, y: step(x < y)),
                        untied(REAL), 0, 0),
    "clamp_max": Oracle(lambda x, y: min(x, y), (lambda x, y: step(x <= y), lambda x, y: step(x > y)),
                        untied(REAL), 0, 0),
    "fmax": Oracle(lambda x, y: max(x, y), (lambda x, y: step(x >= y), lambda x, y: step(x < y)),
                   untied(REAL), 0, 0,
                   ieee=lambda x, y: (y if x != x else x) if (x != x or y != y) else None),
    "fmin": Oracle(lambda x, y: min(x, y), (lambda x, y: step(x <= y), lambda x, y: step(x > y)),
                   untied(REAL), 0, 0,
                   ieee=lambda x, y: (y if x != x else x) if (x != x or y != y) else None),
}


def at_special(npf):
    """numpy's value (C99 Annex F) where an argument is 0, +-inf or NaN: the sign of a zero
    and the limits mpmath has no notion of."""
    import numpy as np

    def g(*a):
        if any(v == 0 or not math.isfinite(v) for v in a):
            with np.errstate(all="ignore"):
                return float(npf(*a))
        return None
    return g


def _np(name):
    import numpy as np
    return getattr(np, name)


for _op, _npname in {"div": "true_divide", "pow": "power", "reciprocal": "reciprocal",
                     "floor": "floor", "ceil": "ceil", "round": "rint", "trunc": "trunc",
                     "floor_divide": "floor_divide", "fmod": "fmod", "remainder": "remainder",
                     "copysign": "copysign", "fmax": "fmax", "fmin": "fmin", "hypot": "hypot",
                     "atan2": "arctan2", "logaddexp": "logaddexp", "deg2rad": "deg2rad",
                     "rad2deg": "rad2deg"}.items():
    ORACLES[_op] = ORACLES[_op]._replace(ieee=at_special(_np(_npname)))


def _tie(x, y):
    return x == y or x != x or y != y


def _whole_quotient(x, y):  # fmod/remainder jump where x / y is a whole number
    return y == 0 or not (math.isfinite(x) and math.isfinite(y)) or (Q(x) / Q(y)).denominator == 1


# Kinks (PyTorch's conventions there are test_conventions' rows) and the piecewise-linear
# ops, whose second derivatives are exactly 0.
for _op, _kw in {
    "maximum": dict(piecewise_linear=True, kink=_tie),
    "minimum": dict(piecewise_linear=True, kink=_tie),
    "clamp_min": dict(piecewise_linear=True, kink=_tie),
    "clamp_max": dict(piecewise_linear=True, kink=_tie),
    "fmax": dict(piecewise_linear=True, kink=_tie),
    "fmin": dict(piecewise_linear=True, kink=_tie),
    "if_true": dict(piecewise_linear=True, kink=lambda c, a: c == 0 or c != c),
    "if_false": dict(piecewise_linear=True, kink=lambda c, a: c == 0 or c != c),
    "abs": dict(piecewise_linear=True, kink=lambda x: x == 0),
    "relu": dict(piecewise_linear=True, kink=lambda x: x == 0),
    "copysign": dict(piecewise_linear=True, kink=lambda x, y: x == 0 or y == 0),
    "fmod": dict(piecewise_linear=True, kink=_whole_quotient),
    "remainder": dict(piecewise_linear=True, kink=_whole_quotient),
    "ieee_remainder": dict(piecewise_linear=True, kink=lambda x, y: y == 0 or not (
        math.isfinite(x) and math.isfinite(y)) or (2 * Q(x) / Q(y)).denominator == 1),
    "xlogy": dict(kink=lambda x, y: x == 0),
    "pow": dict(kink=lambda x, y: x <= 0),
    "atan2": dict(kink=lambda x, y: x == 0 and y == 0),
    "hypot": dict(kink=lambda x, y: x == 0 and y == 0),
}.items():
    ORACLES[_op] = ORACLES[_op]._replace(**_kw)


def _nan_compare(cmp):  # a comparison with NaN is false: 0.0
    return lambda x, y: float(cmp(x, y)) if x != x or y != y else None


for _op, _cmp in {"lt": lambda x, y: x < y, "le": lambda x, y: x <= y,
                  "gt": lambda x, y: x > y, "ge": lambda x, y: x >= y,
                  "eq": lambda x, y: x == y, "ne": lambda x, y: x != y,
                  # NaN is nonzero: true
                  "logical_and": lambda x, y: x != 0 and y != 0,
                  "logical_or": lambda x, y: x != 0 or y != 0}.items():
    ORACLES[_op] = ORACLES[_op]._replace(ieee=_nan_compare(_cmp))
ORACLES["logical_not"] = ORACLES["logical_not"]._replace(
    ieee=lambda x: float(x == 0) if x != x else None)
ORACLES["if_true"] = ORACLES["if_true"]._replace(
    ieee=lambda c, a: (a if c != 0 else 0.0) if c != c or a != a else None)
ORACLES["if_false"] = ORACLES["if_false"]._replace(
    ieee=lambda c, a: (0.0 if c != 0 else a) if c != c or a != a else None)

# Derivatives at edge points that are not within `grad` by design (the rule's formula
# over- or underflows where the exact derivative is a normal number): the report of
# bench/accuracy.py and the test list them; PyTorch's rules are the same formulas.
ORACLES["pow"] = ORACLES["pow"]._replace(grad_exempt=lambda x, y: (
    "y * pow(x, y - 1): pow(x, y - 1) overflows for subnormal x" if 0 < x < 2.3e-308 else None))
ORACLES["atan2"] = ORACLES["atan2"]._replace(grad_exempt=lambda x, y: (
    "y / (x^2 + y^2): x^2 + y^2 overflows past 1e154" if max(abs(x), abs(y)) > 1e154 else None))
ORACLES["hypot"] = ORACLES["hypot"]._replace(
    grad_exempt=lambda x, y: ("x / hypot(x, y) with subnormal operands" if max(abs(x), abs(y)) < 2.3e-308 else None),
    hess_exempt=lambda x, y: ("the dual of x / out cancels when |x| << |y|"
                              if min(abs(x), abs(y)) < 1e-7 * max(abs(x), abs(y)) else None))
ORACLES["remainder"] = ORACLES["remainder"]._replace(grad_exempt=lambda x, y: (
    "-floor(x / y): x / y underflows to -0" if x != 0 and abs(x / y) < 2.3e-308 else None))
ORACLES["fmod"] = ORACLES["fmod"]._replace(grad_exempt=ORACLES["remainder"].grad_exempt)


def oracle_for(op):
    """The op's oracle; a table row without one is a test failure, never a skip."""
    import pytest

    if op not in ORACLES:
        pytest.fail(f"op {op!r} has no mpmath oracle: add it to ORACLES in tests/mpmath_oracle.py")
    return ORACLES[op]


# ---------------------------------------------------------------------------- evaluation

def _arg(v):
    return M(v)


def exact(fn, args):
    """fn at the double args, at 50 digits: a real mpf (possibly +-inf), or None where it
    has no real value (outside the domain, a pole mpmath refuses, NaN, complex)."""
    if any(a != a for a in args):
        return None
    try:
        v = fn(*map(_arg, args))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(v, mpmath.mpc):
        if v.imag != 0:
            return None
        v = v.real
    v = M(v)
    return None if mpmath.isnan(v) else v


DBL_MIN = 2.2250738585072014e-308


def scaled_ulps(o, got, want, p, i=None, underflow=False):
    """ulps, in units of the oracle's scale at p where it has one (Oracle.value_scale,
    grad_scale; i: which derivative, None for the value)."""
    scale = o.value_scale if i is None else o.grad_scale
    if scale is None or want is None or not mpmath.isfinite(want):
        return ulps(got, want, underflow)
    size = scale(*p) if i is None else scale(p, i)
    return ulps(got, want, underflow, size)


def ulps(got, want, underflow=False, scale=0):
    """|got - want| in units of the double ulp of the exact value ``want`` (an mpf).

    ``underflow``: an exact value below the smallest normal double needs only be within
    DBL_MIN of it (0 ulp then): used for derivatives, whose rules may underflow early
    (sigmoid(-732) = 1 / (1 + exp(732)) is 0, the exact value 1e-318)."""
    w = float(want)
    if underflow and abs(w) < DBL_MIN and math.isfinite(got) and abs(M(got) - want) <= DBL_MIN:
        return 0.0
    if math.isinf(w):  # beyond the doubles: the right infinity or nothing
        return 0.0 if got == w else inf
    if not math.isfinite(got):
        return inf
    return float(abs(M(got) - want) / M(math.ulp(max(abs(w), float(scale)))))


def partial(fn, pt, j):
    """d fn / d pt[j] by a central difference with a step 2^-130 relative to pt[j]
    (truncation ~2^-260 relative), at enough digits that 60 are left after the
    cancellation for the arguments' magnitudes and derivatives down to 1e-300 relative."""
    spread = sum(abs(math.log10(abs(a))) for a in pt if a != 0)
    with mpmath.workdps(int(400 + 2 * spread)):
        x = [M(a) for a in pt]
        h = abs(x[j]) * M(2)**-130 if x[j] != 0 else M(2)**-1200
        up, down = list(x), list(x)
        up[j] += h
        down[j] -= h
        return (fn(*up) - fn(*down)) / (2 * h)


def hessian_exact(oracle, args):
    """The exact Hessian: differences of the closed-form first derivatives."""
    n = len(args)
    H = [[M(0)] * n for _ in range(n)]
    if oracle.piecewise_constant or oracle.piecewise_linear:
        return H
    for i in range(n):
        for j in range(n):
            if i not in oracle.no_grad and j not in oracle.no_grad:
                H[i][j] = +partial(oracle.d[i], args, j)
    return H


# ---------------------------------------------------------------------------- tapegrad

def eager(backend, op, args):
    """(value, [d/d arg]) of one op at args on a backend's eager tape."""
    xs = [backend.Var(a) for a in args]
    out = getattr(backend, op)(*xs)
    out.backward()
    return out.value, [x.grad for x in xs]


def traced(tg, op, arity):
    """The op traced once over placeholders: F(*columns), F.grad(*columns) replay it."""
    return tg.trace(lambda *a: getattr(tg, op)(*a), *([0.5] * arity))


def batched(F, points):
    """Values and gradients of F at many points, by the batched (lanes) replay."""
    import numpy as np

    cols = [np.array(c, dtype=np.float64) for c in zip(*points)]
    values = F(*cols)
    grads = F.grad(*cols)
    if len(cols) == 1:
        grads = (grads,)
    return values, grads


def points(op, n, seed=0):
    import random

    r = random.Random(f"{op}:{seed}")
    return [tuple(float(a) for a in ORACLES[op].domain(r)) for _ in range(n)]


def exact_values_and_grads(op, pts):
    """Per point (exact value, [exact d/d arg]) at 50 digits."""
    o = ORACLES[op]
    out = []
    for p in pts:
        grads = [M(0) if (i in o.no_grad or o.piecewise_constant) else exact(o.d[i], p)
                 for i in range(len(p))]
        out.append((exact(o.f, p), grads))
    return out


def measure(tg, op, n, seed=0):
    """Max ulp error over n domain points of: the eager value, the lanes value, the
    eager first derivative and the lanes first derivative (max over the arguments that
    take a gradient), the derivatives at points the op's grad_exempt names apart
    (exempt_grad, exempt_lanes_grad). Returns {key: (max ulp, worst point)}."""
    o = ORACLES[op]
    pts = points(op, n, seed)
    want = exact_values_and_grads(op, pts)
    F = traced(tg, op, len(pts[0]))
    lv, lg = batched(F, pts)
    worst = {k: (0.0, None) for k in ("value", "lanes", "grad", "lanes_grad",
                                       "exempt_grad", "exempt_lanes_grad")}

    def note(key, err, p):
        if err > worst[key][0] or worst[key][1] is None:
            worst[key] = (err, p)

    for k, (p, (v, gs)) in enumerate(zip(pts, want)):
        ev, eg = eager(tg, op, p)
        note("value", scaled_ulps(o, ev, v, p), p)
        note("lanes", scaled_ulps(o, float(lv[k]), v, p), p)
        for i, g in enumerate(gs):
            if i in o.no_grad:
                continue
            key = "exempt_" if o.grad_exempt(*p) else ""
            note(key + "grad", scaled_ulps(o, eg[i], g, p, i, underflow=True), p)
            note(key + "lanes_grad", scaled_ulps(o, float(lg[i][k]), g, p, i, underflow=True), p)
    return worst


def _polygamma_edge(n, x):
    """The documented values of polygamma(n, x) (digamma for n = 0) where mpmath has no
    real one (special.hpp; PyTorch's where it is consistent): poles at 0 and the negative
    integers, and the infinities."""
    if n != n or x == x and math.isfinite(x) and not (x <= 0 and x == math.floor(x)):
        return None
    n = int(n)
    s = -1.0 if n % 2 == 0 else 1.0  # (-1)^(n+1)
    if x != x:
        return nan
    if x == 0:
        return s * inf if math.copysign(1.0, x) > 0 else inf
    if x == inf:
        return inf if n == 0 else 0.0 if n == 1 else nan
    if x == -inf:
        return nan if n <= 1 else s * inf
    return nan if n == 0 else s * inf  # a negative integer


def _ieee_remainder(x, y):
    if not (x == 0 or y == 0 or not math.isfinite(x) or not math.isfinite(y)):
        return None
    try:
        return math.remainder(x, y)
    except ValueError:
        return nan


ORACLES["digamma"] = ORACLES["digamma"]._replace(ieee=lambda x: _polygamma_edge(0.0, x))
ORACLES["polygamma"] = ORACLES["polygamma"]._replace(ieee=_polygamma_edge)
def lgamma_reflection_size(x):
    """For x < 0 off the poles: the larger term of lgamma(x) = log(pi / |sin(pi x)|) -
    lgamma(1 - x), the reflection CPython's math.lgamma (the reference backend's) uses;
    glibc's lgamma_r (C++) is within the same bound of it."""
    if x >= 0 or x == math.floor(x):
        return M(0)
    x = M(x)
    return max(abs(mpmath.loggamma(1 - x).real),
               abs(mpmath.log(mpmath.pi / abs(mpmath.sin(mpmath.pi * x)))))


ORACLES["lgamma"] = ORACLES["lgamma"]._replace(
    same_bits=False, value_scale=lgamma_reflection_size,
    grad_scale=lambda p, i: reflection_size(0, p[0]))
ORACLES["digamma"] = ORACLES["digamma"]._replace(
    value_scale=lambda x: reflection_size(0, x), grad_scale=lambda p, i: reflection_size(1, p[0]))
ORACLES["polygamma"] = ORACLES["polygamma"]._replace(
    value_scale=lambda n, x: reflection_size(int(n), x),
    grad_scale=lambda p, i: reflection_size(int(p[0]) + 1, p[1]))
ORACLES["ieee_remainder"] = ORACLES["ieee_remainder"]._replace(ieee=_ieee_remainder)
