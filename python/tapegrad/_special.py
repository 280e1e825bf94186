"""Special functions for the op table, in pure Python: lgamma, digamma, polygamma, erfinv.

The readable mirror of csrc/tapegrad/special.hpp, for the pure-Python reference backend.
digamma, polygamma and erfinv follow the C++ line by line (same constants, same branches);
lgamma cannot, since the C++ calls libm's lgamma_r and CPython's math.lgamma is its own
Lanczos code (billions of ulp off next to the zeros at 1 and 2), so it is written out here
(series about 1 and 2, Stirling, reflection). Only the math module is used; no function
raises on a float argument: poles give inf, domain errors nan.

Algorithms
  digamma    x >= 10: asymptotic series (A&S 6.3.18, Bernoulli numbers up to B18);
             3 < x < 10: recurrence psi(x) = psi(x-1) + 1/(x-1) down into (2, 3], all
               terms positive (Cephes psi shifts up to 10 instead, which cancels);
             1 <= x <= 3: expansion about the positive zero x0 = 1.46163...,
               psi(x) = (x - x0) [sum_{j<10} 1/((x+j)(x0+j)) + sum_k e_k (x - x0)^(k-1)],
               e_k = psi^(k)(x0 + 10)/k!, so that the result keeps its relative accuracy
               next to x0 (where the recurrence alone loses it all);
             0 < x < 1: psi(x) = psi(x+1) - 1/x; x < 0: reflection psi(1-x) - pi cot(pi x),
             cot(pi x) from the reduced argument r = x - round(x) (exact), so it stays
             accurate for large |x|.
  polygamma  n >= 1, x > 0: psi^(n)(x) = (-1)^(n+1) n! [sum_{k<N} (x+k)^-(n+1)] plus the
             asymptotic series at w = x + N >= 10 + 2n (A&S 6.4.11, B2..B20); all terms of
             one sign, each power corrected for the rounding of x + k (which the power
             would amplify n + 1 times), so full relative accuracy. x < 0: reflection
             psi^(n)(x) = (-1)^n psi^(n)(1-x) - pi^(n+1) P_n(cot pi x), P_n the polynomial
             with d^n/dz^n cot z = P_n(cot z) (P_0 = c, P_(m+1) = -(1+c^2) P_m').
  erfinv     Giles (2010), "Approximating the erfinv function" (GPU Computing Gems), single
             precision fit as the start for w = -log(1-y^2) < 16, the tail asymptotic
             x^2 = L - log(pi L)/2 (L = -log(1-|y|)) beyond; then Halley steps on
             erf(x) - y, written as (1-|y|) - erfc(x) for |y| > 0.5 (1-|y| is exact there,
             so the tails keep relative accuracy). |y| < 2^-28: sqrt(pi)/2 (y + pi/12 y^3).
  lgamma     (this file only) |x-1|, |x-2| <= 0.5: log Gamma(2+z) = (1-gamma) z +
             sum_k (-1)^k (zeta(k)-1) z^k/k (A&S 6.1.33), log Gamma(1+z) = that - log1p(z);
             2.5 < x < 8: recurrence down to [1.5, 2.5]; x >= 8: Stirling series (B2..B20);
             |x| < 0.5: log Gamma(1+x) - log|x|; x <= -0.5: reflection
             log(pi/|sin(pi x)|) - log Gamma(1-x).

Edge values (PyTorch 2.13 float64 is the reference; torch values in brackets where they
differ from scipy, with the reason when we do not follow torch):
  digamma(+0) = -inf, digamma(-0) = +inf (torch; scipy the same), digamma(negative
  integer) = nan, digamma(-inf) = nan, digamma(+inf) = +inf, digamma(nan) = nan.
  polygamma(n, x), n >= 1 (s = (-1)^(n+1)): (+0) -> s*inf (limit from the right),
  (-0) -> +inf (limit from the left, torch), negative integer -> s*inf (torch for n >= 2;
  for n = 1 torch returns a finite rounding artifact, 6.58e32 at -1, 63.6 at -1e20, so we
  return +inf like scipy), -inf -> nan for n = 1 and s*inf for n >= 2 (torch), +inf -> 0
  for n = 1 and nan for n >= 2 (torch; scipy gives s*0). n non-integer, negative, nan or
  inf -> nan (torch raises for negative n). n > 170 (n! overflows) -> nan (torch returns
  overflow garbage: inf, -inf or nan).
  lgamma: inf at 0, -0, negative integers, +-inf; nan at nan (torch = glibc).
  erfinv(+-0) = +-0, erfinv(+-1) = +-inf, |y| > 1 (incl. +-inf) -> nan, nan -> nan.

Measured accuracy: max error in ulp of the correctly rounded result against mpmath at
50 digits, 2000 seeded random points per row drawn as in tests/test_special_functions.py
(log-uniform magnitudes 1e-300 .. 1e300, uniform on the moderate range, clusters around the
zeros and poles; the test itself runs fewer points against the bounds it states). "Scaled"
rows: for x < 0 the functions have zeros no fixed-precision reflection resolves, so there the
absolute error is counted in ulp of the larger reflection term (near poles: relative error).
The C++ digamma, polygamma and erfinv are the same operations: bit-identical to this file on
20000 random points (n <= 12); tests/cpp/test_special.cpp checks them at reference points.

  function          domain                                         max ulp   test bound
  digamma           x > 0 (incl. next to the zero 1.4616...)         2.5        3.5
  digamma           x < 0 non-integer, scaled                        2.9        4
  polygamma n=1..4  x > 0                                            3.0        4
  polygamma n=5..12 x in 1e-3 .. 1e3                                 2.7        4
  polygamma n=1..4  x < 0 non-integer, scaled (~(n+1) ulp of cot)    9.7        12
  lgamma            x > 0 (incl. next to 1 and 2)                    6.3        8
                    (worst next to the minimum 1.4616: log1p(z) cancels with the series)
  lgamma            x < 0 non-integer, scaled                        3.5        5
  erfinv            (-1, 1), tails to 1 - 2^-53, subnormals          1.4        2
  (the C++ lgamma is glibc's lgamma_r: within 3 ulp at the doctest's reference points)
"""

from __future__ import annotations

import math

__all__ = ["lgamma", "digamma", "polygamma", "erfinv"]

_INF = math.inf
_NAN = math.nan
_PI = math.pi

# The positive zero of digamma, x0 = X0_HI + X0_LO (mpmath.findroot at 50 digits).
_X0_HI = 1.4616321449683622
_X0_LO = 9.549995429965697e-17
# e_k = psi^(k)(x0 + 10)/k!, k = 1..19 (mpmath.polygamma at 50 digits), and the shift.
_ROOT_SHIFT = 10
_ROOT_E = (
    0.09116420428337027, -0.0041525930844309175, 0.0002520317000676907,
    -1.7196777808126642e-05, 1.2507574550602629e-06, -9.46967933612916e-08,
    7.369558839131585e-09, -5.850790322485546e-10, 4.715650012501417e-11,
    -3.845749059377406e-12, 3.1659595110667095e-13, -2.6263777785064125e-14,
    2.1926130852128613e-15, -1.840238399340721e-16, 1.551461348095618e-17,
    -1.3130438649679746e-18, 1.1149563791792118e-19, -9.494808860529587e-21,
    8.105975155021207e-22,
)
# B_2k/(2k), k = 1..9: psi(x) ~ log x - 1/(2x) - sum B_2k/(2k x^2k).
_PSI_ASYM = (
    0.08333333333333333, -0.008333333333333333, 0.003968253968253968,
    -0.004166666666666667, 0.007575757575757576, -0.021092796092796094,
    0.08333333333333333, -0.4432598039215686, 3.0539543302701198,
)
# B_2k/(2k)!, k = 1..10, for the polygamma asymptotic series.
_PG_ASYM = (
    0.08333333333333333, -0.001388888888888889, 3.306878306878307e-05,
    -8.267195767195768e-07, 2.08767569878681e-08, -5.284190138687493e-10,
    1.3382536530684679e-11, -3.3896802963225827e-13, 8.586062056277845e-15,
    -2.174868698558062e-16,
)
# B_2k/(2k(2k-1)), k = 1..10: the Stirling series of log Gamma.
_STIRLING = (
    0.08333333333333333, -0.002777777777777778, 0.0007936507936507937,
    -0.0005952380952380953, 0.0008417508417508417, -0.0019175269175269176,
    0.00641025641025641, -0.029550653594771242, 0.17964437236883057, -1.3924322169059011,
)
_HALF_LOG_2PI = 0.9189385332046728
# (-1)^k (zeta(k) - 1)/k, k = 2..28 (mpmath.zeta at 50 digits); _LG_C1 = 1 - gamma.
_LG_C1 = 0.42278433509846713
_LG_C = (
    0.3224670334241132, -0.0673523010531981, 0.020580808427784546, -0.007385551028673986,
    0.0028905103307415234, -0.001192753911703261, 0.0005096695247430425,
    -0.00022315475845357939, 9.945751278180853e-05, -4.492623673813314e-05,
    2.050721277567069e-05, -9.439488275268397e-06, 4.374866789907488e-06,
    -2.039215753801366e-06, 9.55141213040742e-07, -4.492469198764566e-07,
    2.1207184805554665e-07, -1.0043224823968099e-07, 4.7698101693639804e-08,
    -2.2711094608943164e-08, 1.0838659214896955e-08, -5.183475041970047e-09,
    2.4836745438024785e-09, -1.1921401405860912e-09, 5.731367241678862e-10,
    -2.7595228851242334e-10, 1.330476437424449e-10,
)
_SQRT_PI_2 = 0.886226925452758  # sqrt(pi)/2
_SQRT_PI_2_PI_12 = 0.2320136665346545  # sqrt(pi)/2 * pi/12
_TWO_SQRT_PI = 1.1283791670955126  # 2/sqrt(pi)
_MAX_ORDER = 170  # largest n with n! finite in double


def _is_int(x: float) -> bool:
    return x == math.floor(x)  # callers pass finite x only


def _cotpi(r: float) -> float:
    """cot(pi r) for the reduced argument 0 < |r| <= 0.5."""
    if abs(r) <= 0.25:
        return 1.0 / math.tan(_PI * r)
    t = math.tan(_PI * (0.5 - abs(r)))  # 0.5 - |r| is exact here
    return t if r > 0 else -t


def _pow_neg(v: float, m: float) -> float:
    """v^-m for v > 0, m >= 1: inf on overflow, where C's pow returns HUGE_VAL."""
    try:
        return math.pow(v, -m)
    except OverflowError:
        return _INF


def _reduce(x: float) -> float:
    """x - round(x), exact, for finite non-integer x (|x| < 2^52 then)."""
    return x - float(round(x))


# --- digamma ------------------------------------------------------------------------------


def _psi_root(xs: float, d: float) -> float:
    """psi(xs) for xs in [1, 3], given d = xs - x0 to full relative accuracy."""
    s = 0.0
    for e in reversed(_ROOT_E):
        s = s * d + e
    t = 0.0
    for j in range(_ROOT_SHIFT - 1, -1, -1):
        t += 1.0 / ((xs + j) * (_X0_HI + j))
    return d * (s + t)


def _psi_asym(x: float) -> float:
    """psi(x) for x >= 10."""
    z = 1.0 / (x * x)
    p = 0.0
    for c in reversed(_PSI_ASYM):
        p = p * z + c
    return math.log(x) - 0.5 / x - p * z


def _psi_pos(x: float) -> float:
    """psi(x) for finite x > 0."""
    if x < 1.0:
        d = (x - (_X0_HI - 1.0)) - _X0_LO
        return _psi_root(x + 1.0, d) - 1.0 / x
    if x <= 3.0:
        return _psi_root(x, (x - _X0_HI) - _X0_LO)
    if x >= 10.0:
        return _psi_asym(x)
    # 3 < x < 10: down to (2, 3], psi(x) = psi(x - n) + sum_k 1/(x - k), x - k exact; every
    # term is positive (psi > 0 beyond x0), where shifting up to 10 would cancel.
    acc = 0.0
    while x > 3.0:
        x -= 1.0
        acc += 1.0 / x
    return _psi_root(x, (x - _X0_HI) - _X0_LO) + acc


def digamma(x: float) -> float:
    """psi(x) = d/dx log Gamma(x)."""
    x = float(x)
    if math.isnan(x):
        return x
    if x == 0.0:
        return math.copysign(_INF, -x)  # -inf at +0, +inf at -0
    if x > 0.0:
        return _INF if x == _INF else _psi_pos(x)
    if x == -_INF or _is_int(x):
        return _NAN
    return _psi_pos(1.0 - x) - _PI * _cotpi(_reduce(x))


# --- polygamma ----------------------------------------------------------------------------


def _two_sum_err(a: float, b: float) -> float:
    """The rounding error of a + b: (a + b) - fl(a + b), exactly (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def _pg_pos(n: int, x: float, xe: float = 0.0) -> float:
    """psi^(n)(x + xe) for 1 <= n <= 170, x + xe > 0 finite (xe: a rounding error of x).

    Each power (x + k)^-(n+1) is corrected for the rounding of x + k, which the power
    would otherwise amplify n + 1 times: (v + e)^-m = v^-m (1 - m e/v) to first order.
    """
    m = n + 1.0
    w_min = 10.0 + 2.0 * n
    terms = 0.0
    big_n = 0 if x >= w_min else math.ceil(w_min - x)
    for k in range(big_n - 1, -1, -1):  # smallest terms first
        v = x + k
        e = _two_sum_err(x, k) + xe
        terms += _pow_neg(v, m) * (1.0 - m * e / v)
    w = x + big_n
    we = _two_sum_err(x, big_n) + xe
    iw2 = 1.0 / (w * w)
    t = 1.0
    br = 0.0
    for j in range(1, len(_PG_ASYM) + 1):
        t *= (n + 2 * j - 2) * (n + 2 * j - 1) * iw2
        br += _PG_ASYM[j - 1] * t
    br = 1.0 + n * 0.5 / w + br
    tail = math.pow(w, -float(n)) * (1.0 - n * we / w) * br
    fact = math.factorial(n - 1)  # exact int; float() below rounds once
    sign = 1.0 if n % 2 else -1.0
    return sign * (float(fact) * tail + float(fact * n) * terms)


def _cot_deriv_poly(n: int) -> list[float]:
    """Coefficients (of c^0, c^1, ...) of P_n with d^n/dz^n cot z = P_n(cot z)."""
    p = [0.0, 1.0]
    for _ in range(n):
        d = [(i + 1) * p[i + 1] for i in range(len(p) - 1)] + [0.0, 0.0]
        p = [-(d[i] + (d[i - 2] if i >= 2 else 0.0)) for i in range(len(d))]
    return p


def polygamma(n: float, x: float) -> float:
    """psi^(n)(x), the n-th derivative of digamma; n a non-negative integer (as a float)."""
    n = float(n)
    x = float(x)
    if not n.is_integer() or n < 0.0 or n > _MAX_ORDER:
        return _NAN
    if n == 0.0:
        return digamma(x)
    k = int(n)
    if math.isnan(x):
        return x
    s = 1.0 if k % 2 else -1.0  # (-1)^(n+1)
    if x == 0.0:
        return _INF if math.copysign(1.0, x) < 0 else s * _INF
    if x == _INF:
        return 0.0 if k == 1 else _NAN
    if x > 0.0:
        return _pg_pos(k, x)
    if x == -_INF:
        return _NAN if k == 1 else s * _INF
    if _is_int(x):
        return s * _INF
    c = _cotpi(_reduce(x))
    poly = _cot_deriv_poly(k)
    q = poly[k + 1]  # not 0 * c: c may be infinite next to a pole
    for a in reversed(poly[: k + 1]):
        q = q * c + a
    return -s * _pg_pos(k, 1.0 - x, _two_sum_err(1.0, -x)) - math.pow(_PI, k + 1.0) * q


# --- lgamma -------------------------------------------------------------------------------


def _lg_series(z: float) -> float:
    """log Gamma(2 + z) for |z| <= 0.5."""
    p = 0.0
    for c in reversed(_LG_C):
        p = p * z + c
    return z * (_LG_C1 + z * p)


def _lg_pos(x: float) -> float:
    """log Gamma(x) for finite x >= 0.5."""
    if x < 1.5:
        z = x - 1.0
        return _lg_series(z) - math.log1p(z)
    if x <= 2.5:
        return _lg_series(x - 2.0)
    if x < 8.0:
        prod = 1.0
        while x > 2.5:
            x -= 1.0  # exact for x >= 2
            prod *= x
        return _lg_series(x - 2.0) + math.log(prod)
    iz = 1.0 / x
    z = iz * iz
    p = 0.0
    for c in reversed(_STIRLING):
        p = p * z + c
    return (x - 0.5) * math.log(x) - x + _HALF_LOG_2PI + p * iz


def lgamma(x: float) -> float:
    """log|Gamma(x)|."""
    x = float(x)
    if math.isnan(x):
        return x
    if math.isinf(x):
        return _INF
    if x <= 0.0 and _is_int(x):
        return _INF
    if abs(x) < 0.5:
        return _lg_series(x) - math.log1p(x) - math.log(abs(x))
    if x > 0.0:
        return _lg_pos(x)
    s = abs(math.sin(_PI * _reduce(x)))
    return math.log(_PI / s) - _lg_pos(1.0 - x)


# --- erfinv -------------------------------------------------------------------------------


def _erfinv_start(a: float) -> float:
    """A start for erfinv(a), 0 < a < 1: Giles' single precision fit, asymptotic tail."""
    w = -math.log((1.0 - a) * (1.0 + a))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        p = 3.43273939e-07 + p * w
        p = -3.5233877e-06 + p * w
        p = -4.39150654e-06 + p * w
        p = 0.00021858087 + p * w
        p = -0.00125372503 + p * w
        p = -0.00417768164 + p * w
        p = 0.246640727 + p * w
        p = 1.50140941 + p * w
        return p * a
    if w < 16.0:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        p = 0.000100950558 + p * w
        p = 0.00134934322 + p * w
        p = -0.00367342844 + p * w
        p = 0.00573950773 + p * w
        p = -0.0076224613 + p * w
        p = 0.00943887047 + p * w
        p = 1.00167406 + p * w
        p = 2.83297682 + p * w
        return p * a
    big_l = -math.log(1.0 - a)  # erfc(x) ~ exp(-x^2)/(x sqrt(pi))
    return math.sqrt(big_l - 0.5 * math.log(_PI * big_l))


def erfinv(y: float) -> float:
    """The inverse of erf on (-1, 1)."""
    y = float(y)
    a = abs(y)
    if not a <= 1.0:  # |y| > 1, +-inf, nan
        return y if math.isnan(y) else _NAN
    if a == 1.0:
        return math.copysign(_INF, y)
    if a < 2.0**-28:  # also +-0 and subnormals
        return _SQRT_PI_2 * y + _SQRT_PI_2_PI_12 * (y * y * y)
    x = _erfinv_start(a)
    delta = 1.0 - a  # exact for a >= 0.5
    for _ in range(3):
        f = math.erf(x) - a if a <= 0.5 else delta - math.erfc(x)
        t = f / (_TWO_SQRT_PI * math.exp(-x * x))
        step = t / (1.0 + x * t)  # Halley: f'' = -2x f'
        x -= step
        if abs(step) <= 1e-17 * x:
            break
    return math.copysign(x, y)
