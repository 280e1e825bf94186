// Op codes and per-op kernels, all expanded from ops.def.
#pragma once
#include <cmath>
#include <cstdint>

namespace tapegrad {

// Node kinds: two leaf kinds, then one code per ops.def row.
enum class op : std::uint8_t {
    leaf,      // made by Var(x); its adjoint accumulates across backward() calls
    constant,  // a number lifted into the graph (Python name "const")
#define TG_OP(name, arity, fwd, dx, dy) name,
#include "tapegrad/ops.def"
#undef TG_OP
    count_
};

constexpr bool is_leaf(op o) { return o <= op::constant; }

// One kernel struct per row: forward value and the local rule for each argument.
namespace kernel {
#define TG_OP(name, ar, fwd, dx_, dy_)                                                  \
    struct name {                                                                       \
        static constexpr int arity = ar;                                                \
        static constexpr tapegrad::op code = tapegrad::op::name;                        \
        static constexpr const char* label = #name;                                     \
        static double forward([[maybe_unused]] double x, [[maybe_unused]] double y) {   \
            return fwd;                                                                 \
        }                                                                               \
        static double dx([[maybe_unused]] double x, [[maybe_unused]] double y,          \
                         [[maybe_unused]] double out, [[maybe_unused]] double g) {      \
            return dx_;                                                                 \
        }                                                                               \
        static double dy([[maybe_unused]] double x, [[maybe_unused]] double y,          \
                         [[maybe_unused]] double out, [[maybe_unused]] double g) {      \
            return dy_;                                                                 \
        }                                                                               \
    };
#include "tapegrad/ops.def"
#undef TG_OP
}  // namespace kernel

struct op_info {
    const char* name;
    int arity;
};

// Indexed by op code: name and arity, including the two leaf kinds.
inline constexpr op_info op_table[] = {
    {"leaf", 0},
    {"const", 0},
#define TG_OP(name, arity, fwd, dx, dy) {#name, arity},
#include "tapegrad/ops.def"
#undef TG_OP
};
static_assert(sizeof(op_table) / sizeof(op_table[0]) == static_cast<int>(op::count_));

// The adjoint each argument receives from a node with adjoint g: d[0] for x, d[1] for y.
// The same kernels backward() runs, for code that explains or checks a sweep.
inline void local_grads(op o, double x, double y, double out, double g, double d[2]) {
    switch (o) {
#define TG_OP(name, arity, fwd, dx_, dy_)                                  \
    case op::name:                                                         \
        d[0] = kernel::name::dx(x, y, out, g);                             \
        d[1] = arity == 2 ? kernel::name::dy(x, y, out, g) : 0.0;          \
        return;
#include "tapegrad/ops.def"
#undef TG_OP
        default:
            d[0] = d[1] = 0.0;  // leaves have no arguments
    }
}

}  // namespace tapegrad
