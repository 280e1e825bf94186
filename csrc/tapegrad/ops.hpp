// Op codes and per-op kernels, all expanded from ops.def.
#pragma once
#include <cmath>
#include <cstdint>

#include "tapegrad/special.hpp"

namespace tapegrad {

struct term;  // backward_graph.hpp: a value in a recorded rule
namespace symbolic {  // hessian_program.cpp: a value, and a dual, in a recorded Hessian
struct sym;
struct sdual;
}  // namespace symbolic

// Node kinds: two leaf kinds, then one code per ops.def row.
enum class op : std::uint8_t {
    leaf,      // made by Var(x); its adjoint accumulates across backward() calls
    constant,  // a number lifted into the graph (Python name "const")
#define TG_OP(name, arity, ...) name,
#include "tapegrad/ops.def"
#undef TG_OP
    count_
};

constexpr bool is_leaf(op o) { return o <= op::constant; }

// Dual numbers v + d·ε (ε² = 0): the local rules evaluated on them give the tangent of
// each contribution as well, which is what forward-over-reverse (Hessian-vector
// products) needs. Only the arithmetic lives here; the derivative of every function the
// rules call comes from that function's own row of the table (math::, below).
namespace fwd {
struct dual {
    double v = 0.0, d = 0.0;
    constexpr dual() = default;
    constexpr dual(double value, double tangent = 0.0) : v(value), d(tangent) {}
};
// The arithmetic of a dual type D over values of type T (fwd::dual over double; the
// recorded Hessian's sdual over its recording type, hessian_program.cpp), mixing with
// numbers. Comparisons see values only: a rule's branch is the one its value takes.
#define TG_DUAL_ARITHMETIC(SPEC, D, T)                                                      \
    SPEC D operator-(const D& a) { return {-a.v, -a.d}; }                                   \
    SPEC D operator+(const D& a, const D& b) { return {a.v + b.v, a.d + b.d}; }             \
    SPEC D operator-(const D& a, const D& b) { return {a.v - b.v, a.d - b.d}; }             \
    SPEC D operator*(const D& a, const D& b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; } \
    SPEC D operator/(const D& a, const D& b) {                                              \
        const T q = a.v / b.v;                                                              \
        return {q, (a.d - q * b.d) / b.v};                                                  \
    }                                                                                       \
    SPEC D operator+(const D& a, double b) { return {a.v + b, a.d}; }                       \
    SPEC D operator+(double a, const D& b) { return {a + b.v, b.d}; }                       \
    SPEC D operator-(const D& a, double b) { return {a.v - b, a.d}; }                       \
    SPEC D operator-(double a, const D& b) { return {a - b.v, -b.d}; }                      \
    SPEC D operator*(const D& a, double b) { return {a.v * b, a.d * b}; }                   \
    SPEC D operator*(double a, const D& b) { return {a * b.v, a * b.d}; }                   \
    SPEC D operator/(const D& a, double b) { return {a.v / b, a.d / b}; }                   \
    SPEC D operator/(double a, const D& b) {                                                \
        const T q = a / b.v;                                                                \
        return {q, -q * b.d / b.v};                                                         \
    }                                                                                       \
    TG_DUAL_CMP(SPEC, D, T, ==)                                                             \
    TG_DUAL_CMP(SPEC, D, T, !=)                                                             \
    TG_DUAL_CMP(SPEC, D, T, <)                                                              \
    TG_DUAL_CMP(SPEC, D, T, <=)                                                             \
    TG_DUAL_CMP(SPEC, D, T, >)                                                              \
    TG_DUAL_CMP(SPEC, D, T, >=)
#define TG_DUAL_CMP(SPEC, D, T, opr)                                       \
    SPEC bool operator opr(const D& a, const D& b) { return a.v opr b.v; } \
    SPEC bool operator opr(const D& a, double b) { return a.v opr T(b); }  \
    SPEC bool operator opr(double a, const D& b) { return T(a) opr b.v; }
TG_DUAL_ARITHMETIC(constexpr, dual, double)
}  // namespace fwd

// Python's float // and % (numpy's floor_divide and remainder): the quotient and the
// remainder that takes the divisor's sign, both from fmod as CPython's float_divmod does, so
// 1 // 0.1 == 9 and 1 % 0.1 == 0.09999999999999995. Division by zero gives x / 0 (inf or
// NaN) and fmod's NaN, as numpy does, instead of raising.
namespace pymath {
inline double remainder(double x, double y) {
    double mod = std::fmod(x, y);
    if (mod != 0) {
        if ((y < 0) != (mod < 0)) mod += y;
    } else {
        mod = std::copysign(0.0, y);
    }
    return mod;
}
inline double floor_divide(double x, double y) {
    if (y == 0) return x / y;
    const double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0 && (y < 0) != (mod < 0)) div -= 1.0;
    if (div == 0) return std::copysign(0.0, x / y);
    double floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
    return floordiv;
}
}  // namespace pymath

// The functions the local rules call: libm (or special.hpp) for doubles; for duals, the op
// of that name, its value by the forward column and its tangent by the tangent column.
namespace math {
using std::cos;
using std::cosh;
using std::exp;
using std::floor;
using std::hypot;
using std::log;
using std::pow;
inline double round(double x) { return std::nearbyint(x); }  // the round op's value
using std::sin;
using std::sinh;
using std::sqrt;
using std::trunc;
inline double digamma(double x) { return special::digamma(x); }
inline double polygamma(double n, double x) { return special::polygamma(n, x); }
inline double sigmoid(double x);
#define TG_MATH_UNARY(name) inline fwd::dual name(fwd::dual x);
#define TG_MATH_BINARY(name) inline fwd::dual name(fwd::dual x, fwd::dual y);
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY
// For terms (backward_graph.hpp): the op of that name, appended to the tape being recorded.
#define TG_MATH_UNARY(name) term name(const term& x);
#define TG_MATH_BINARY(name) term name(const term& x, const term& y);
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY
// For the recorded Hessian (hessian_program.hpp): the op, or its tangent, as program nodes.
#define TG_MATH_UNARY(name)                     \
    symbolic::sym name(const symbolic::sym& x); \
    symbolic::sdual name(const symbolic::sdual& x);
#define TG_MATH_BINARY(name)                                            \
    symbolic::sym name(const symbolic::sym& x, const symbolic::sym& y); \
    symbolic::sdual name(const symbolic::sdual& x, const symbolic::sdual& y);
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY

// A rule's shortcut that is exact in value only (pow(x, 1) == x; 0 where a product would
// be 0 * inf): the value v, and on duals the tangent of the full expression, so second
// derivatives see what the shortcut skips. `like` gives the type; `full` runs on duals only.
template <class F>
double value_only(double v, double /*like*/, F&&) {
    return v;
}
template <class F>
fwd::dual value_only(double v, fwd::dual /*like*/, F&& full) {
    return {v, full().d};
}
template <class F>
fwd::dual value_only(fwd::dual v, fwd::dual /*like*/, F&& full) {
    return {v.v, full().d};
}
// On terms: the full expression where its value is v's (so it differentiates on), else v
// as a number (backward_graph.cpp).
template <class F>
term value_only(double v, const term& like, F&& full);
template <class F>
term value_only(const term& v, const term& like, F&& full);
// On the recorded Hessian's values: as on doubles and duals (hessian_program.cpp).
template <class F>
symbolic::sym value_only(double v, const symbolic::sym& like, F&& full);
template <class F>
symbolic::sym value_only(const symbolic::sym& v, const symbolic::sym& like, F&& full);
template <class F>
symbolic::sdual value_only(double v, const symbolic::sdual& like, F&& full);
template <class F>
symbolic::sdual value_only(const symbolic::sdual& v, const symbolic::sdual& like, F&& full);
}  // namespace math

// One kernel struct per row: forward value, the local rule for each argument (any
// arithmetic type), and the tangent of the value.
namespace kernel {
constexpr bool same_text(const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return *a == *b;
}
#define PARTIALS \
    ((tx != 0 ? dx(x, y, out, tx) : 0.0) + (arity == 2 && ty != 0 ? dy(x, y, out, ty) : 0.0))
#define TG_OP(name, ar, fwd, dx_, dy_, t_)                                               \
    struct name {                                                                        \
        static constexpr int arity = ar;                                                 \
        static constexpr tapegrad::op code = tapegrad::op::name;                         \
        static constexpr const char* label = #name;                                      \
        /* Rows with their own tangent rule (not PARTIALS) are the linear and select */  \
        /* ops: their local rules depend on x, y, out only through branches, so the  */  \
        /* tangent of a contribution is the rule applied to the adjoint's tangent.    */ \
        static constexpr bool linear = !same_text(#t_, "PARTIALS");                      \
        static double forward([[maybe_unused]] double x, [[maybe_unused]] double y) {    \
            return fwd;                                                                  \
        }                                                                                \
        template <class T>                                                               \
        static T dx([[maybe_unused]] T x, [[maybe_unused]] T y, [[maybe_unused]] T out,  \
                    [[maybe_unused]] T g) {                                              \
            return dx_;                                                                  \
        }                                                                                \
        template <class T>                                                               \
        static T dy([[maybe_unused]] T x, [[maybe_unused]] T y, [[maybe_unused]] T out,  \
                    [[maybe_unused]] T g) {                                              \
            return dy_;                                                                  \
        }                                                                                \
        static double tangent([[maybe_unused]] double x, [[maybe_unused]] double y,      \
                              [[maybe_unused]] double out, [[maybe_unused]] double tx,   \
                              [[maybe_unused]] double ty) {                              \
            return t_;                                                                   \
        }                                                                                \
    };
#include "tapegrad/ops.def"
#undef TG_OP
#undef PARTIALS
}  // namespace kernel

namespace math {
inline double sigmoid(double x) { return kernel::sigmoid::forward(x, 0.0); }
#define TG_MATH_UNARY(name)                                           \
    inline fwd::dual name(fwd::dual x) {                              \
        const double out = kernel::name::forward(x.v, 0.0);           \
        return {out, kernel::name::tangent(x.v, 0.0, out, x.d, 0.0)}; \
    }
#define TG_MATH_BINARY(name)                                          \
    inline fwd::dual name(fwd::dual x, fwd::dual y) {                 \
        const double out = kernel::name::forward(x.v, y.v);           \
        return {out, kernel::name::tangent(x.v, y.v, out, x.d, y.d)}; \
    }
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY
}  // namespace math

struct op_info {
    const char* name;
    int arity;
    bool linear;  // kernel::<name>::linear (leaves: true, they have no rule)
};

// Indexed by op code: name and arity, including the two leaf kinds.
inline constexpr op_info op_table[] = {
    {"leaf", 0, true},
    {"const", 0, true},
#define TG_OP(name, arity, ...) {#name, arity, kernel::name::linear},
#include "tapegrad/ops.def"
#undef TG_OP
};
static_assert(sizeof(op_table) / sizeof(op_table[0]) == static_cast<int>(op::count_));

// The adjoint each argument receives from a node with adjoint g: d[0] for x, d[1] for y.
// The same kernels backward() runs, for code that explains or checks a sweep.
inline void local_grads(op o, double x, double y, double out, double g, double d[2]) {
    switch (o) {
#define TG_OP(name, arity, ...)                                   \
    case op::name:                                                \
        d[0] = kernel::name::dx(x, y, out, g);                    \
        d[1] = arity == 2 ? kernel::name::dy(x, y, out, g) : 0.0; \
        return;
#include "tapegrad/ops.def"
#undef TG_OP
        default: d[0] = d[1] = 0.0;  // leaves have no arguments
    }
}

// The arithmetic and the comparisons the rules use, for a type T that records them
// (term, symbolic::sym), given its apply<K>(a, b), which records op K of the table (the op
// that computes the operation on doubles), and its observed(a, b, cmp), which sees values
// only: a rule's branch is the one its value takes (PyTorch's create_graph records the
// same). Expanded where T, apply, observed and cmp (program.hpp) are declared.
#define TG_RECORDING_OPERATORS(T)                                               \
    T operator+(const T& a, const T& b) { return apply<kernel::add>(a, b); }    \
    T operator-(const T& a, const T& b) { return apply<kernel::sub>(a, b); }    \
    T operator*(const T& a, const T& b) { return apply<kernel::mul>(a, b); }    \
    T operator/(const T& a, const T& b) { return apply<kernel::div>(a, b); }    \
    T operator-(const T& a) { return apply<kernel::neg>(a, a); }                \
    bool operator==(const T& a, const T& b) { return observed(a, b, cmp::eq); } \
    bool operator!=(const T& a, const T& b) { return observed(a, b, cmp::ne); } \
    bool operator<(const T& a, const T& b) { return observed(a, b, cmp::lt); }  \
    bool operator<=(const T& a, const T& b) { return observed(a, b, cmp::le); } \
    bool operator>(const T& a, const T& b) { return observed(a, b, cmp::gt); }  \
    bool operator>=(const T& a, const T& b) { return observed(a, b, cmp::ge); }

}  // namespace tapegrad
