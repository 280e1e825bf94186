// Compiled once per instruction set: TG_LANES_ISA names the namespace (baseline, avx2).
// With TG_VECTOR_MATH, the libm functions of vector_math.def are declared SIMD-callable,
// so GCC turns the op table's std::exp, std::sin, ... inside `omp simd` loops into calls
// to their SIMD forms (2 or 4 lanes at a time), which vector_math.cpp defines: glibc's
// libmvec where the running system has it (within 4 ulp of scalar libm, IEEE special
// values kept), else scalar libm. The op table stays the only definition of each op.
#include <cmath>

#ifdef TG_VECTOR_MATH
extern "C" {
#define TG_ARGS_1 double
#define TG_ARGS_2 double, double
#define TG_VECTOR_MATH_FN(name, arity) \
    __attribute__((simd("notinbranch"))) double name(TG_ARGS_##arity);
#include "tapegrad/vector_math.def"
#undef TG_VECTOR_MATH_FN
#undef TG_ARGS_1
#undef TG_ARGS_2
}
#endif

#include "tapegrad/lanes.hpp"

#ifndef TG_LANES_ISA
#define TG_LANES_ISA baseline
#endif

namespace tapegrad::lanes::TG_LANES_ISA {

template <class K>
void forward_op(double* __restrict out, const double* x, const double* y, std::size_t L) {
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) out[l] = K::forward(x[l], y[l]);
}

// Same rule as reverse_sweep_first (sweep.hpp), lane by lane: a zero adjoint leaves the
// inputs untouched, or stores 0 where it would have been the first contribution (FA, FB:
// program::finish's first bits), so the adjoints need no clearing beforehand.
template <class K, bool FA, bool FB>
void reverse_op(double* ga, double* gb, const double* x, const double* y, const double* out,
                const double* g, std::size_t L) {
    if (ga == gb) {  // unary ops (b = a), or x * x: both rules add into one adjoint
#pragma omp simd
        for (std::size_t l = 0; l < L; ++l) {
            double t = K::dx(x[l], y[l], out[l], g[l]);
            if constexpr (!FA) t = ga[l] + t;
            if constexpr (K::arity == 2) t += K::dy(x[l], y[l], out[l], g[l]);
            // a select, not a branch: it vectorises
            ga[l] = g[l] != 0.0 ? t : FA ? 0.0 : ga[l];
        }
        return;
    }
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) {
        const bool live = g[l] != 0.0;
        const double da = K::dx(x[l], y[l], out[l], g[l]);
        const double db = K::dy(x[l], y[l], out[l], g[l]);
        ga[l] = live ? (FA ? da : ga[l] + da) : FA ? 0.0 : ga[l];
        gb[l] = live ? (FB ? db : gb[l] + db) : FB ? 0.0 : gb[l];
    }
}

template <class K>
void tangent_op(double* __restrict to, const double* x, const double* y, const double* out,
                const double* tx, const double* ty, std::size_t L) {
    if (L == 1) {  // one lane (a sparse Hessian's columns): no vector loop to set up
        to[0] = K::tangent(x[0], y[0], out[0], tx[0], ty[0]);
        return;
    }
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) to[l] = K::tangent(x[l], y[l], out[l], tx[l], ty[l]);
}

// reverse_op on duals: a node whose adjoint and adjoint tangent are both 0 is skipped.
// Without UpdateAdj only the adjoint tangents change (the adjoints are already known).
template <class K, bool UpdateAdj>
inline void reverse_dual_lane(double* ga, double* gb, double* gat, double* gbt, const double* x,
                              const double* y, const double* out, const double* tx,
                              const double* ty, const double* to, const double* g, const double* gt,
                              bool same, std::size_t l) {
    using fwd::dual;
    const bool live = g[l] != 0.0 || gt[l] != 0.0;
    const dual X{x[l], tx[l]}, Y{y[l], ty[l]}, O{out[l], to[l]}, G{g[l], gt[l]};
    dual da = K::dx(X, Y, O, G);
    dual db = K::arity == 2 ? K::dy(X, Y, O, G) : dual{};
    if (same) {
        da = da + db;
        db = dual{};
    }
    if constexpr (UpdateAdj) ga[l] = live ? ga[l] + da.v : ga[l];
    gat[l] = live ? gat[l] + da.d : gat[l];
    if (!same) {
        if constexpr (UpdateAdj) gb[l] = live ? gb[l] + db.v : gb[l];
        gbt[l] = live ? gbt[l] + db.d : gbt[l];
    }
}

template <class K, bool UpdateAdj>
void reverse_dual_op(double* ga, double* gb, double* gat, double* gbt, const double* x,
                     const double* y, const double* out, const double* tx, const double* ty,
                     const double* to, const double* g, const double* gt, std::size_t L) {
    const bool same = ga == gb;
    if (L == 1)  // one lane (a sparse Hessian's columns): no vector loop to set up
        return reverse_dual_lane<K, UpdateAdj>(ga, gb, gat, gbt, x, y, out, tx, ty, to, g, gt, same,
                                               0);
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l)
        reverse_dual_lane<K, UpdateAdj>(ga, gb, gat, gbt, x, y, out, tx, ty, to, g, gt, same, l);
}

void forward(const program_view& p, double* v, std::size_t B, std::size_t L) {
    for (slot s = p.first_op; s < p.n_slots; ++s) {
        double* out = v + s * B;
        const double* x = v + std::size_t(p.a[s]) * B;
        const double* y = v + std::size_t(p.b[s]) * B;
        switch (p.ops[s]) {
#define TG_OP(name, arity, ...) \
    case op::name: forward_op<kernel::name>(out, x, y, L); break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
    }
}

void reverse(const program_view& p, const double* v, double* adj, std::size_t B, std::size_t L) {
    for (slot s = p.n_slots; s-- > p.first_op;) {
        const slot a = p.a[s], b = p.b[s];
        const double* g = adj + s * B;
        const double* out = v + s * B;
        const double* x = v + std::size_t(a) * B;
        const double* y = v + std::size_t(b) * B;
        double* ga = adj + std::size_t(a) * B;
        double* gb = adj + std::size_t(b) * B;
        switch (p.first_code(s)) {  // op << 2 | first into a | first into b << 1
#define TG_OP(name, arity, ...)                                          \
    case int(op::name) << 2 | 0:                                         \
        reverse_op<kernel::name, false, false>(ga, gb, x, y, out, g, L); \
        break;                                                           \
    case int(op::name) << 2 | 1:                                         \
        reverse_op<kernel::name, true, false>(ga, gb, x, y, out, g, L);  \
        break;                                                           \
    case int(op::name) << 2 | 2:                                         \
        reverse_op<kernel::name, false, true>(ga, gb, x, y, out, g, L);  \
        break;                                                           \
    case int(op::name) << 2 | 3:                                         \
        reverse_op<kernel::name, true, true>(ga, gb, x, y, out, g, L);   \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
    }
}

// The op slots a sweep visits: all of them, or a list (in sweep order).
struct slots {
    const slot* list;
    std::size_t n;
    slot lo, hi;
    std::size_t size() const { return list ? n : std::size_t(hi - lo); }
    slot at(std::size_t k) const { return list ? list[k] : slot(lo + k); }
    slot back(std::size_t k) const { return list ? list[k] : slot(hi - 1 - k); }
};

void tangent_slots(const program_view& p, const double* v, double* t, std::size_t B, std::size_t L,
                   const slots& ss) {
    for (std::size_t k = 0, n = ss.size(); k < n; ++k) {
        const slot s = ss.at(k);
        const std::size_t a = std::size_t(p.a[s]) * B, b = std::size_t(p.b[s]) * B;
        const std::size_t o = std::size_t(s) * B;
        switch (p.ops[s]) {
#define TG_OP(name, ...) \
    case op::name: tangent_op<kernel::name>(t + o, v + a, v + b, v + o, t + a, t + b, L); break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
    }
}

template <bool UpdateAdj>
void reverse_dual_slots(const program_view& p, const double* v, const double* t, double* adj,
                        double* adjt, std::size_t B, std::size_t L, const slots& ss) {
    for (std::size_t k = 0, n = ss.size(); k < n; ++k) {
        const slot s = ss.back(k);
        const std::size_t a = std::size_t(p.a[s]) * B, b = std::size_t(p.b[s]) * B;
        const std::size_t o = std::size_t(s) * B;
        switch (p.ops[s]) {
#define TG_OP(name, ...)                                                                      \
    case op::name:                                                                            \
        reverse_dual_op<kernel::name, UpdateAdj>(adj + a, adj + b, adjt + a, adjt + b, v + a, \
                                                 v + b, v + o, t + a, t + b, t + o, adj + o,  \
                                                 adjt + o, L);                                \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
    }
}

void tangent(const program_view& p, const double* v, double* t, std::size_t B, std::size_t L,
             const slot* list, std::size_t n) {
    tangent_slots(p, v, t, B, L, slots{list, n, p.first_op, p.n_slots});
}

void reverse_dual(const program_view& p, const double* v, const double* t, double* adj,
                  double* adjt, std::size_t B, std::size_t L) {
    reverse_dual_slots<true>(p, v, t, adj, adjt, B, L, slots{nullptr, 0, p.first_op, p.n_slots});
}

void reverse_tangent(const program_view& p, const double* v, const double* t, const double* adj,
                     double* adjt, std::size_t B, std::size_t L, const slot* list, std::size_t n) {
    // adj is only read (UpdateAdj = false); the const_cast keeps one kernel signature.
    reverse_dual_slots<false>(p, v, t, const_cast<double*>(adj), adjt, B, L,
                              slots{list, n, p.first_op, p.n_slots});
}

#define TG_STR2(x) #x
#define TG_STR(x) TG_STR2(x)
extern const kernels set{TG_STR(TG_LANES_ISA), forward,        reverse, tangent,
                         reverse_dual,         reverse_tangent};

}  // namespace tapegrad::lanes::TG_LANES_ISA
