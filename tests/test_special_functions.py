"""tapegrad._special (the pure-Python mirror of csrc/tapegrad/special.hpp) against mpmath
at 50 digits: max ulp error over seeded random points per domain, and the edge values
(PyTorch 2.13 float64). The C++ side runs the same bounds at reference points and the same
edge values in tests/cpp/test_special.cpp (`make cpptest`).

Error unit: ulp of the correctly rounded result. For x < 0 the functions have zeros that
a reflection formula cannot resolve in double, so there the error is measured in ulp of
the larger reflection term ("scaled"); near poles that equals the relative error.
"""

import math
import random
import sys

import mpmath
import pytest

from tapegrad import _special as sp

mpmath.mp.dps = 50

INF = math.inf
NAN = math.nan

# Max ulp bounds asserted below; the measured maxima are in _special.py's docstring.
BOUND_DIGAMMA = 3.5
BOUND_DIGAMMA_NEG = 4.0
BOUND_POLYGAMMA = 4.0
BOUND_POLYGAMMA_NEG = 12.0
BOUND_LGAMMA = 8.0
BOUND_LGAMMA_NEG = 5.0
BOUND_ERFINV = 2.0


def _ulps(got, ref, scale=None):
    u = math.ulp(abs(float(ref if scale is None else scale)))
    return float(abs(mpmath.mpf(got) - ref)) / u


def _max_ulps(f, ref, points, scale=None):
    worst, at = 0.0, None
    for x in points:
        got, want = f(x), ref(x)
        if abs(want) > sys.float_info.max:  # overflows: inf of the right sign
            assert got == math.copysign(INF, want), (x, got)
            continue
        assert math.isfinite(got), (x, got)
        e = _ulps(got, want, None if scale is None else scale(x))
        if e > worst:
            worst, at = e, x
    return worst, at


def _log_uniform(rng, lo, hi, n):
    return [math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(n)]


def _near(rng, c, n):
    """Points at distances 1e-3 .. 1e-15 (log-uniform) either side of c."""
    return [c + rng.choice((-1, 1)) * d for d in _log_uniform(rng, 1e-15, 1e-3, n)]


def _positive(rng, n):
    return _log_uniform(rng, 1e-300, 1e300, n) + [rng.uniform(0.01, 12.0) for _ in range(n)]


def _negative(rng, n):
    xs = [-x for x in _log_uniform(rng, 1e-300, 1e15, n)]
    xs += [-rng.uniform(0.0, 30.0) for _ in range(n)]
    xs += [-k + d for k in range(1, 6) for d in (1e-9, -1e-9, 0.5)]  # near poles
    return [x for x in xs if x != math.floor(x)]


def _pg_ref(n, x):
    x = mpmath.mpf(x)
    if x > -50:
        return mpmath.polygamma(n, x)
    # mpmath.polygamma stalls far left of 0: the reflection formula, at 50 digits.
    cot_n = mpmath.diff(mpmath.cot, mpmath.pi * x, n)
    return (-1) ** n * mpmath.polygamma(n, 1 - x) - mpmath.pi ** (n + 1) * cot_n


def _lg_ref(x):
    return mpmath.re(mpmath.loggamma(x))


def test_digamma_positive():
    rng = random.Random(1)
    xs = _positive(rng, 250) + _near(rng, sp._X0_HI, 60) + [sp._X0_HI, 1.0, 2.0, 3.0, 10.0]
    worst, at = _max_ulps(sp.digamma, mpmath.digamma, xs)
    assert worst <= BOUND_DIGAMMA, (worst, at)


def test_digamma_negative_scaled():
    rng = random.Random(2)

    def scale(x):
        x = mpmath.mpf(x)
        return abs(mpmath.digamma(1 - x)) + abs(mpmath.pi * mpmath.cot(mpmath.pi * x))

    worst, at = _max_ulps(sp.digamma, mpmath.digamma, _negative(rng, 150), scale)
    assert worst <= BOUND_DIGAMMA_NEG, (worst, at)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_polygamma_positive(n):
    rng = random.Random(10 + n)
    worst, at = _max_ulps(lambda x: sp.polygamma(n, x), lambda x: mpmath.polygamma(n, x),
                          _positive(rng, 60))
    assert worst <= BOUND_POLYGAMMA, (n, worst, at)


@pytest.mark.parametrize("n", [5, 8, 12])
def test_polygamma_high_orders(n):
    rng = random.Random(20 + n)
    worst, at = _max_ulps(lambda x: sp.polygamma(float(n), x), lambda x: mpmath.polygamma(n, x),
                          _log_uniform(rng, 1e-3, 1e3, 40))
    assert worst <= BOUND_POLYGAMMA, (n, worst, at)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_polygamma_negative_scaled(n):
    rng = random.Random(30 + n)

    def scale(x):
        x = mpmath.mpf(x)
        refl = mpmath.polygamma(n, 1 - x)
        return abs(refl) + abs((-1) ** n * refl - _pg_ref(n, x))

    worst, at = _max_ulps(lambda x: sp.polygamma(n, x), lambda x: _pg_ref(n, x),
                          _negative(rng, 40), scale)
    assert worst <= BOUND_POLYGAMMA_NEG, (n, worst, at)


def test_lgamma_positive():
    rng = random.Random(3)
    xs = _positive(rng, 250) + _near(rng, 1.0, 50) + _near(rng, 2.0, 50)
    xs += _near(rng, sp._X0_HI, 30) + [0.5, 1.5, 2.5, 8.0, 1e-320]
    worst, at = _max_ulps(sp.lgamma, _lg_ref, xs)
    assert worst <= BOUND_LGAMMA, (worst, at)


def test_lgamma_negative_scaled():
    rng = random.Random(4)

    def scale(x):
        x = mpmath.mpf(x)
        return abs(mpmath.log(mpmath.pi / abs(mpmath.sin(mpmath.pi * x)))) + abs(_lg_ref(1 - x))

    worst, at = _max_ulps(sp.lgamma, _lg_ref, _negative(rng, 150), scale)
    assert worst <= BOUND_LGAMMA_NEG, (worst, at)


def test_erfinv():
    rng = random.Random(5)
    ys = [rng.uniform(-1.0, 1.0) for _ in range(200)]
    ys += [rng.choice((-1, 1)) * (1.0 - d) for d in _log_uniform(rng, 1.2e-16, 0.5, 200)]
    ys += [rng.choice((-1, 1)) * y for y in _log_uniform(rng, 1e-320, 1e-3, 100)]
    ys += [1.0 - 2.0**-53, 0.5, 2.0**-28, 2.0**-28 * (1 - 2.0**-53), 5e-324]
    ys = [y for y in ys if abs(y) < 1.0]
    worst, at = _max_ulps(sp.erfinv, mpmath.erfinv, ys)
    assert worst <= BOUND_ERFINV, (worst, at)


def _same(got, want):
    if math.isnan(want):
        return math.isnan(got)
    return got == want and math.copysign(1.0, got) == math.copysign(1.0, want)


# (function, args, expected): torch 2.13 float64 values, except where the comment says.
EDGES = [
    (sp.digamma, (0.0,), -INF),
    (sp.digamma, (-0.0,), INF),
    (sp.digamma, (-1.0,), NAN),
    (sp.digamma, (-1e20,), NAN),
    (sp.digamma, (-INF,), NAN),
    (sp.digamma, (INF,), INF),
    (sp.digamma, (NAN,), NAN),
    (sp.digamma, (5e-324,), -INF),
    (sp.digamma, (-5e-324,), INF),
    (sp.digamma, (1.7976931348623157e308,), 709.782712893384),
    (sp.lgamma, (0.0,), INF),
    (sp.lgamma, (-0.0,), INF),
    (sp.lgamma, (-3.0,), INF),
    (sp.lgamma, (INF,), INF),
    (sp.lgamma, (-INF,), INF),
    (sp.lgamma, (NAN,), NAN),
    (sp.lgamma, (1.0,), 0.0),
    (sp.lgamma, (2.0,), 0.0),
    (sp.lgamma, (5e-324,), 744.4400719213812),
    (sp.lgamma, (1.7976931348623157e308,), INF),
    (sp.erfinv, (0.0,), 0.0),
    (sp.erfinv, (-0.0,), -0.0),
    (sp.erfinv, (1.0,), INF),
    (sp.erfinv, (-1.0,), -INF),
    (sp.erfinv, (1.0000000000000002,), NAN),
    (sp.erfinv, (-2.0,), NAN),
    (sp.erfinv, (INF,), NAN),
    (sp.erfinv, (-INF,), NAN),
    (sp.erfinv, (NAN,), NAN),
    (sp.erfinv, (5e-324,), 5e-324),
    (sp.erfinv, (-0.9999999999999999,), -5.8635847487551676),
    (sp.polygamma, (2.0, 1e300), -0.0),
    (sp.polygamma, (3.0, 1e300), 0.0),
    (sp.polygamma, (1.0, 1e300), 1e-300),
    (sp.polygamma, (1.5, 2.0), NAN),  # non-integer order
    (sp.polygamma, (-1.0, 2.0), NAN),  # torch raises
    (sp.polygamma, (INF, 2.0), NAN),
    (sp.polygamma, (NAN, 2.0), NAN),
    (sp.polygamma, (171.0, 2.0), NAN),  # n! overflows; torch: inf
]
for _n in (1, 2, 3, 4):
    _s = 1.0 if _n % 2 else -1.0
    EDGES += [
        (sp.polygamma, (_n, 0.0), _s * INF),
        (sp.polygamma, (_n, -0.0), INF),
        (sp.polygamma, (_n, -1.0), _s * INF),  # n = 1: torch 6.58e32 (artifact), scipy inf
        (sp.polygamma, (_n, -1e20), _s * INF),  # n = 1: torch 63.6 (artifact)
        (sp.polygamma, (_n, 5e-324), _s * INF),
        (sp.polygamma, (_n, -5e-324), INF),
        (sp.polygamma, (_n, -1e-300), INF),
        (sp.polygamma, (_n, NAN), NAN),
        (sp.polygamma, (_n, -INF), NAN if _n == 1 else _s * INF),
        (sp.polygamma, (_n, INF), 0.0 if _n == 1 else NAN),  # n >= 2: scipy s*0
    ]


@pytest.mark.parametrize(("f", "args", "want"), EDGES,
                         ids=[f"{f.__name__}{args}" for f, args, _ in EDGES])
def test_edge_values(f, args, want):
    assert _same(f(*args), want)


def test_polygamma_zero_order_is_digamma():
    for x in (2.5, -0.3, 1e-5, 123.25):
        assert sp.polygamma(0.0, x) == sp.digamma(x)


def test_no_float_input_raises():
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -7.0, 5e-324, -5e-324, 1e-310, 1e300, -1e300,
              1.7976931348623157e308, -1.7976931348623157e308, INF, -INF, NAN]
    for x in values:
        sp.lgamma(x)
        sp.digamma(x)
        sp.erfinv(x)
        for n in (0.0, 1.0, 2.0, 4.0, 12.0, 170.0, 0.5, -1.0, NAN, INF):
            sp.polygamma(n, x)
