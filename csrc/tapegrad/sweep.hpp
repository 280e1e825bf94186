// The two sweeps over a topologically ordered struct-of-arrays graph, shared by the eager
// tape and by frozen programs. Node i has op o[i], arguments a[i], b[i] (unary ops: b = a)
// and value val[i]; leaf kinds carry their own value and have no arguments.
//
// With GCC or Clang the sweeps dispatch by computed goto ("threaded code"): every op's
// handler ends in its own indirect jump to the next op's handler, so the branch predictor
// learns which op tends to follow which. A single `switch` jump cannot, and graphs that
// interleave op kinds (a loop body of mixed ops) ran up to 2x slower with it. Elsewhere
// the same handlers run under a plain switch.
#pragma once
#include <cstdint>

#include "tapegrad/ops.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define TG_THREADED 1
#else
#define TG_THREADED 0
#endif

namespace tapegrad {

// val[i] for every non-leaf i in [lo, hi), in order.
inline void forward_sweep(const op* o, const std::uint32_t* a, const std::uint32_t* b,
                          double* val, std::uint32_t lo, std::uint32_t hi) {
    std::uint32_t i = lo;
    if (i >= hi) return;
#if TG_THREADED
    static const void* const handler[] = {
        &&leaf_kind, &&leaf_kind,  // leaf, constant
#define TG_OP(name, arity, fwd_, dx_, dy_) &&fw_##name,
#include "tapegrad/ops.def"
#undef TG_OP
    };
#define TG_NEXT                        \
    if (++i >= hi) return;             \
    goto* handler[int(o[i])];
    goto* handler[int(o[i])];
leaf_kind:
    TG_NEXT
#define TG_OP(name, arity, fwd_, dx_, dy_)                        \
    fw_##name : val[i] = kernel::name::forward(val[a[i]], val[b[i]]); \
    TG_NEXT
#include "tapegrad/ops.def"
#undef TG_OP
#undef TG_NEXT
#else
    for (; i < hi; ++i) {
        switch (o[i]) {
#define TG_OP(name, arity, fwd_, dx_, dy_)                    \
    case op::name:                                            \
        val[i] = kernel::name::forward(val[a[i]], val[b[i]]); \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default:
                break;  // leaves
        }
    }
#endif
}

// Reverse sweep over [lo, hi), newest first: each node with a nonzero adjoint adds its
// local rule's contribution to its arguments' adjoints. Zero adjoints are skipped, so
// 0 * inf never leaks NaN into a branch whose gradient is zero. Constants get no
// contribution: nothing reads their adjoint, and skipping them spares e.g. the log in
// pow's d/dy for `x ** 3`.
// `is_const(i)`: whether node i is a constant. The eager tape asks its op array; a frozen
// program keeps its constants in one range of slots and compares the index instead.
struct consts_by_op {
    const op* o;
    bool operator()(std::uint32_t i) const { return o[i] == op::constant; }
};
struct consts_in_range {
    std::uint32_t first, count;
    bool operator()(std::uint32_t i) const { return i - first < count; }
};

template <class IsConst = consts_by_op>
inline void reverse_sweep(const op* o, const std::uint32_t* a, const std::uint32_t* b,
                          const double* val, double* adj, std::uint32_t lo, std::uint32_t hi,
                          IsConst is_const) {
#define TG_RULE(name, arity)                                                         \
    {                                                                                \
        const double g = adj[i];                                                     \
        if (g != 0.0) {                                                              \
            const double x = val[a[i]], y = val[b[i]], out = val[i];                 \
            if (!is_const(a[i])) adj[a[i]] += kernel::name::dx(x, y, out, g);  \
            if constexpr (arity == 2)                                                \
                if (!is_const(b[i])) adj[b[i]] += kernel::name::dy(x, y, out, g); \
        }                                                                            \
    }
    std::uint32_t i = hi;
    if (i <= lo) return;
#if TG_THREADED
    static const void* const handler[] = {
        &&leaf_kind, &&leaf_kind,  // leaf, constant
#define TG_OP(name, arity, fwd_, dx_, dy_) &&rv_##name,
#include "tapegrad/ops.def"
#undef TG_OP
    };
#define TG_NEXT                        \
    if (i == lo) return;               \
    --i;                               \
    goto* handler[int(o[i])];
    --i;
    goto* handler[int(o[i])];
leaf_kind:
    TG_NEXT
#define TG_OP(name, arity, fwd_, dx_, dy_) \
    rv_##name : TG_RULE(name, arity)      \
    TG_NEXT
#include "tapegrad/ops.def"
#undef TG_OP
#undef TG_NEXT
#else
    while (i-- > lo) {
        switch (o[i]) {
#define TG_OP(name, arity, fwd_, dx_, dy_) \
    case op::name:                         \
        TG_RULE(name, arity)               \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default:
                break;  // leaves
        }
    }
#endif
#undef TG_RULE
}

}  // namespace tapegrad
