// Special functions for the op table: lgamma, digamma, polygamma(n, x), erfinv.
// Header-only, no Python; python/tapegrad/_special.py mirrors it line by line (same
// constants, same branches) for the pure-Python reference backend, except lgamma, which
// here is libm's lgamma_r and there is written out (CPython's math.lgamma is its own code).
//
// Algorithms
//   digamma    x >= 10: asymptotic series, Abramowitz & Stegun 6.3.18 (B2..B18);
//              1 <= x <= 3: expansion about the positive zero x0 = 1.46163...:
//                psi(x) = (x - x0) [sum_{j<10} 1/((x+j)(x0+j)) + sum_k e_k (x - x0)^(k-1)],
//                e_k = psi^(k)(x0 + 10)/k!, which keeps the relative accuracy next to x0;
//              3 < x < 10: psi(x) = psi(x - n) + sum 1/(x - k) down into (2, 3] (all terms
//                positive, x - k exact; the Cephes `psi` way, shifting up to 10, cancels);
//              0 < x < 1: psi(x + 1) - 1/x; x < 0: reflection psi(1 - x) - pi cot(pi x), with
//                cot(pi x) = cot(pi r) from r = x - round(x) (exact): accurate for large |x|.
//   polygamma  n >= 1, x > 0: (-1)^(n+1) n! sum_{k<N} (x+k)^-(n+1) plus the asymptotic series
//              (A&S 6.4.11, B2..B20) at w = x + N >= 10 + 2n; terms of one sign, and each power
//              is corrected for the rounding of x + k (the power amplifies it n + 1 times).
//              x < 0: reflection psi^(n)(x) = (-1)^n psi^(n)(1-x) - pi^(n+1) P_n(cot pi x), where
//              d^n/dz^n cot z = P_n(cot z), P_0 = c, P_(m+1) = -(1 + c^2) P_m'.
//   erfinv     M. Giles, "Approximating the erfinv function" (GPU Computing Gems, 2010): the
//              single-precision fit as the start for w = -log(1 - y^2) < 16, the asymptotic
//              x^2 = L - log(pi L)/2 (L = -log(1 - |y|)) beyond; then Halley steps on
//              erf(x) - y, written (1 - |y|) - erfc(x) for |y| > 0.5 (1 - |y| is exact there,
//              so the tails keep full relative accuracy); |y| < 2^-28: sqrt(pi)/2 (y + pi/12 y^3).
//   lgamma     lgamma_r where declared (glibc, macOS): std::lgamma is glibc's lgamma, which
//              writes the global `signgam` (a data race between threads); lgamma_r returns the
//              sign through its argument instead. Elsewhere std::lgamma.
//
// Edge values follow PyTorch 2.13 float64 (torch.digamma, torch.special.polygamma,
// torch.lgamma, torch.erfinv); where scipy differs, torch wins, except where torch's value
// is a rounding artifact:
//   digamma:   +0 -> -inf, -0 -> +inf, negative integers -> nan, -inf -> nan, +inf -> +inf.
//   polygamma, n >= 1, s = (-1)^(n+1): +0 -> s*inf (the limit from the right), -0 -> +inf
//              (from the left), negative integers -> s*inf (torch for n >= 2; for n = 1 torch
//              returns finite garbage, 6.58e32 at -1, 63.6 at -1e20: we give +inf, as scipy),
//              -inf -> nan for n = 1 and s*inf for n >= 2, +inf -> 0 for n = 1 and nan for
//              n >= 2 (torch; scipy gives s*0). n not a non-negative integer -> nan (torch
//              raises for negative n); n > 170 (n! overflows) -> nan (torch: inf/-inf/nan).
//   lgamma:    +inf at 0, -0, negative integers and +-inf (glibc, as torch).
//   erfinv:    +-0 -> +-0, +-1 -> +-inf, |y| > 1 and +-inf -> nan.
//
// Accuracy: max error in ulp of the correctly rounded result against mpmath at 50 digits,
// 2000 seeded random points per row (log-uniform 1e-300 .. 1e300, moderate range, clusters at
// zeros and poles), measured on python/tapegrad/_special.py, whose digamma, polygamma and
// erfinv are bit-identical to these on 20000 random points (n <= 12);
// tests/test_special_functions.py asserts the bounds, tests/cpp/test_special.cpp checks this
// code at mpmath reference points. "Scaled": for x < 0 (zeros no reflection resolves) the
// absolute error in ulp of the larger reflection term; near poles that is the relative error.
//   digamma            x > 0 (incl. next to the zero x0)          2.5
//   digamma            x < 0 non-integer, scaled                  2.9
//   polygamma n=1..4   x > 0                                      3.0
//   polygamma n=5..12  x in 1e-3 .. 1e3                           2.7
//   polygamma n=1..4   x < 0 non-integer, scaled                  9.7  (~(n+1) ulp of cot)
//   erfinv             (-1, 1), tails to 1 - 2^-53, subnormals    1.4
//   lgamma             glibc's lgamma_r (within 3 ulp at the doctest's reference points)
#pragma once

#include <cmath>
#include <limits>

#if defined(__APPLE__)
extern "C" double lgamma_r(double, int*);  // in libm; math.h declares it only for _REENTRANT
#endif

namespace tapegrad::special {
namespace detail {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kPi = 3.141592653589793;

// The positive zero of digamma, x0 = kX0Hi + kX0Lo (mpmath.findroot at 50 digits).
constexpr double kX0Hi = 1.4616321449683622;
constexpr double kX0Lo = 9.549995429965697e-17;
// e_k = psi^(k)(x0 + 10)/k!, k = 1..19 (mpmath.polygamma at 50 digits).
constexpr int kRootShift = 10;
constexpr double kRootE[] = {
    0.09116420428337027,    -0.0041525930844309175, 0.0002520317000676907,  -1.7196777808126642e-05,
    1.2507574550602629e-06, -9.46967933612916e-08,  7.369558839131585e-09,  -5.850790322485546e-10,
    4.715650012501417e-11,  -3.845749059377406e-12, 3.1659595110667095e-13, -2.6263777785064125e-14,
    2.1926130852128613e-15, -1.840238399340721e-16, 1.551461348095618e-17,  -1.3130438649679746e-18,
    1.1149563791792118e-19, -9.494808860529587e-21, 8.105975155021207e-22};
// B_2k/(2k), k = 1..9: psi(x) ~ log x - 1/(2x) - sum B_2k/(2k x^2k).
constexpr double kPsiAsym[] = {0.08333333333333333,   -0.008333333333333333, 0.003968253968253968,
                               -0.004166666666666667, 0.007575757575757576,  -0.021092796092796094,
                               0.08333333333333333,   -0.4432598039215686,   3.0539543302701198};
// B_2k/(2k)!, k = 1..10, for the polygamma asymptotic series.
constexpr double kPgAsym[] = {
    0.08333333333333333,   -0.001388888888888889,  3.306878306878307e-05,  -8.267195767195768e-07,
    2.08767569878681e-08,  -5.284190138687493e-10, 1.3382536530684679e-11, -3.3896802963225827e-13,
    8.586062056277845e-15, -2.174868698558062e-16};
constexpr double kSqrtPi2 = 0.886226925452758;         // sqrt(pi)/2
constexpr double kSqrtPi2Pi12 = 0.2320136665346545;    // sqrt(pi)/2 * pi/12
constexpr double kTwoSqrtPi = 1.1283791670955126;      // 2/sqrt(pi)
constexpr int kMaxOrder = 170;                         // largest n with n! finite

inline bool is_int(double x) { return x == std::floor(x); }  // finite x only

// cot(pi r) for the reduced argument 0 < |r| <= 0.5.
inline double cotpi(double r) {
    if (std::fabs(r) <= 0.25) return 1.0 / std::tan(kPi * r);
    const double t = std::tan(kPi * (0.5 - std::fabs(r)));  // 0.5 - |r| exact here
    return r > 0 ? t : -t;
}

// x - round(x), exact, for finite non-integer x (so |x| < 2^52).
inline double reduce(double x) { return x - std::nearbyint(x); }

// (a + b) - fl(a + b), exactly (Knuth's TwoSum; needs no FMA contraction or reassociation).
inline double two_sum_err(double a, double b) {
    const double s = a + b;
    const double bb = s - a;
    return (a - (s - bb)) + (b - bb);
}

// psi(xs) for xs in [1, 3], given d = xs - x0 to full relative accuracy.
inline double psi_root(double xs, double d) {
    double s = 0.0;
    for (int k = int(sizeof kRootE / sizeof *kRootE) - 1; k >= 0; --k) s = s * d + kRootE[k];
    double t = 0.0;
    for (int j = kRootShift - 1; j >= 0; --j) t += 1.0 / ((xs + j) * (kX0Hi + j));
    return d * (s + t);
}

// psi(x) for x >= 10.
inline double psi_asym(double x) {
    const double z = 1.0 / (x * x);
    double p = 0.0;
    for (int k = int(sizeof kPsiAsym / sizeof *kPsiAsym) - 1; k >= 0; --k) p = p * z + kPsiAsym[k];
    return std::log(x) - 0.5 / x - p * z;
}

// psi(x) for finite x > 0.
inline double psi_pos(double x) {
    if (x < 1.0) return psi_root(x + 1.0, (x - (kX0Hi - 1.0)) - kX0Lo) - 1.0 / x;
    if (x <= 3.0) return psi_root(x, (x - kX0Hi) - kX0Lo);
    if (x >= 10.0) return psi_asym(x);
    double acc = 0.0;
    while (x > 3.0) {
        x -= 1.0;  // exact for x >= 2
        acc += 1.0 / x;
    }
    return psi_root(x, (x - kX0Hi) - kX0Lo) + acc;
}

// v^-m, v > 0: pow overflows to HUGE_VAL = inf, which is what we want.
inline double pow_neg(double v, double m) { return std::pow(v, -m); }

// psi^(n)(x + xe) for 1 <= n <= 170 and x + xe > 0 finite (xe: a rounding error of x).
// (v + e)^-m = v^-m (1 - m e/v) to first order corrects each power for the rounding of v.
inline double pg_pos(int n, double x, double xe = 0.0) {
    const double m = n + 1.0;
    const double w_min = 10.0 + 2.0 * n;
    double terms = 0.0;
    const int big_n = x >= w_min ? 0 : int(std::ceil(w_min - x));  // x > 0: at most 350
    for (int k = big_n - 1; k >= 0; --k) {  // smallest terms first
        const double v = x + k;
        const double e = two_sum_err(x, k) + xe;
        terms += pow_neg(v, m) * (1.0 - m * e / v);
    }
    const double w = x + big_n;
    const double we = two_sum_err(x, big_n) + xe;
    const double iw2 = 1.0 / (w * w);
    double t = 1.0, br = 0.0;
    for (int j = 1; j <= int(sizeof kPgAsym / sizeof *kPgAsym); ++j) {
        t *= double(n + 2 * j - 2) * double(n + 2 * j - 1) * iw2;
        br += kPgAsym[j - 1] * t;
    }
    br = 1.0 + n * 0.5 / w + br;
    const double tail = std::pow(w, -double(n)) * (1.0 - n * we / w) * br;
    double fact = 1.0;  // (n-1)!, exact up to 22!, one rounding per step beyond
    for (int i = 2; i < n; ++i) fact *= i;
    const double sign = n % 2 ? 1.0 : -1.0;
    return sign * (fact * tail + (fact * n) * terms);
}

// P_n(c) with d^n/dz^n cot z = P_n(cot z); coefficients built by P_(m+1) = -(1 + c^2) P_m'.
// All coefficients of P_n share one sign and its powers one parity: no cancellation.
inline double cot_deriv_poly(int n, double c) {
    double p[kMaxOrder + 2] = {0.0, 1.0};  // p[i]: coefficient of c^i; P_n has degree n + 1
    for (int deg = 1; deg <= n; ++deg) {
        // P' has degree deg - 1; -(1 + c^2) P' has degree deg + 1.
        double d[kMaxOrder + 2] = {};
        for (int i = 0; i < deg; ++i) d[i] = (i + 1) * p[i + 1];
        for (int i = 0; i <= deg + 1; ++i)
            p[i] = -((i < deg ? d[i] : 0.0) + (i >= 2 && i - 2 < deg ? d[i - 2] : 0.0));
    }
    double q = p[n + 1];  // not 0 * c: c may be infinite next to a pole
    for (int i = n; i >= 0; --i) q = q * c + p[i];
    return q;
}

}  // namespace detail

// log|Gamma(x)|, thread-safe.
inline double lgamma(double x) {
#if (defined(__GLIBC__) && (defined(__USE_MISC) || defined(__USE_XOPEN))) || defined(__APPLE__)
    int sign;
    return ::lgamma_r(x, &sign);
#else
    return std::lgamma(x);  // may write signgam: not thread-safe on such a libm
#endif
}

// psi(x) = d/dx log Gamma(x).
inline double digamma(double x) {
    using namespace detail;
    if (std::isnan(x)) return x;
    if (x == 0.0) return std::signbit(x) ? kInf : -kInf;
    if (x > 0.0) return x == kInf ? kInf : psi_pos(x);
    if (x == -kInf || is_int(x)) return kNaN;
    return psi_pos(1.0 - x) - kPi * cotpi(reduce(x));
}

// psi^(n)(x), the n-th derivative of digamma; n a non-negative integer held in a double.
inline double polygamma(double n, double x) {
    using namespace detail;
    if (!(n >= 0.0 && n <= kMaxOrder) || !is_int(n)) return kNaN;  // also nan, +-inf
    if (n == 0.0) return digamma(x);
    const int k = int(n);  // in [1, 170]: the conversion is defined
    if (std::isnan(x)) return x;
    const double s = k % 2 ? 1.0 : -1.0;  // (-1)^(n+1)
    if (x == 0.0) return std::signbit(x) ? kInf : s * kInf;
    if (x == kInf) return k == 1 ? 0.0 : kNaN;
    if (x > 0.0) return pg_pos(k, x);
    if (x == -kInf) return k == 1 ? kNaN : s * kInf;
    if (is_int(x)) return s * kInf;
    const double c = cotpi(reduce(x));
    return -s * pg_pos(k, 1.0 - x, two_sum_err(1.0, -x)) -
           std::pow(kPi, k + 1.0) * cot_deriv_poly(k, c);
}

namespace detail {
// A start for erfinv(a), 0 < a < 1: Giles' single-precision fit, the asymptotic tail.
inline double erfinv_start(double a) {
    double w = -std::log((1.0 - a) * (1.0 + a));
    double p;
    if (w < 5.0) {
        w -= 2.5;
        p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w;
        p = -3.5233877e-06 + p * w;
        p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;
        p = -0.00125372503 + p * w;
        p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;
        p = 1.50140941 + p * w;
        return p * a;
    }
    if (w < 16.0) {
        w = std::sqrt(w) - 3.0;
        p = -0.000200214257;
        p = 0.000100950558 + p * w;
        p = 0.00134934322 + p * w;
        p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;
        p = -0.0076224613 + p * w;
        p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;
        p = 2.83297682 + p * w;
        return p * a;
    }
    const double big_l = -std::log(1.0 - a);  // erfc(x) ~ exp(-x^2)/(x sqrt(pi))
    return std::sqrt(big_l - 0.5 * std::log(kPi * big_l));
}
}  // namespace detail

// The inverse of erf on (-1, 1).
inline double erfinv(double y) {
    using namespace detail;
    const double a = std::fabs(y);
    if (!(a <= 1.0)) return std::isnan(y) ? y : kNaN;  // |y| > 1, +-inf, nan
    if (a == 1.0) return std::copysign(kInf, y);
    if (a < 0x1p-28) return kSqrtPi2 * y + kSqrtPi2Pi12 * (y * y * y);  // +-0, subnormals
    double x = erfinv_start(a);
    const double delta = 1.0 - a;  // exact for a >= 0.5
    for (int it = 0; it < 3; ++it) {
        const double f = a <= 0.5 ? std::erf(x) - a : delta - std::erfc(x);
        const double t = f / (kTwoSqrtPi * std::exp(-x * x));
        const double step = t / (1.0 + x * t);  // Halley: f'' = -2x f'
        x -= step;
        if (std::fabs(step) <= 1e-17 * x) break;
    }
    return std::copysign(x, y);
}

}  // namespace tapegrad::special
