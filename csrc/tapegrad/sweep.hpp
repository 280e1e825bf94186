// The two sweeps over a topologically ordered struct-of-arrays graph, shared by the eager
// tape and by frozen programs. Node i has op o[i], arguments a[i], b[i] (unary ops: b = a)
// and value val[i]; leaf kinds carry their own value and have no arguments.
#pragma once
#include <cstdint>

#include "tapegrad/ops.hpp"

namespace tapegrad {

// val[i] for every non-leaf i in [lo, hi), in order.
inline void forward_sweep(const op* o, const std::uint32_t* a, const std::uint32_t* b,
                          double* val, std::uint32_t lo, std::uint32_t hi) {
    for (std::uint32_t i = lo; i < hi; ++i) {
        switch (o[i]) {
#define TG_OP(name, arity, fwd_, dx_, dy_)                                 \
    case op::name:                                                         \
        val[i] = kernel::name::forward(val[a[i]], val[b[i]]);              \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default:
                break;  // leaves
        }
    }
}

// Reverse sweep over [lo, hi), newest first: each node with a nonzero adjoint adds its
// local rule's contribution to its arguments' adjoints. Zero adjoints are skipped, so
// 0 * inf never leaks NaN into a branch whose gradient is zero. Constants get no
// contribution: nothing reads their adjoint, and skipping them spares e.g. the log in
// pow's d/dy for `x ** 2`.
inline void reverse_sweep(const op* o, const std::uint32_t* a, const std::uint32_t* b,
                          const double* val, double* adj, std::uint32_t lo,
                          std::uint32_t hi) {
    for (std::uint32_t i = hi; i-- > lo;) {
        const double g = adj[i];
        if (g == 0.0) continue;
        switch (o[i]) {
#define TG_OP(name, arity, fwd_, dx_, dy_)                                      \
    case op::name: {                                                            \
        const double x = val[a[i]], y = val[b[i]], out = val[i];               \
        if (o[a[i]] != op::constant) adj[a[i]] += kernel::name::dx(x, y, out, g); \
        if constexpr (arity == 2)                                               \
            if (o[b[i]] != op::constant) adj[b[i]] += kernel::name::dy(x, y, out, g); \
        break;                                                                  \
    }
#include "tapegrad/ops.def"
#undef TG_OP
            default:
                break;  // leaves
        }
    }
}

}  // namespace tapegrad
