// The op table: every expansion of ops.def agrees on each row.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "graphs.hpp"

using namespace tapegrad;
using tg_test::same_bits;

TEST_CASE("op_table: one entry per code, leaf kinds first, names unique") {
    CHECK(std::size(op_table) == std::size_t(op::count_));
    CHECK(std::string(op_table[int(op::leaf)].name) == "leaf");
    CHECK(std::string(op_table[int(op::constant)].name) == "const");
    std::set<std::string> names;
    for (const auto& row : op_table) names.insert(row.name);
    CHECK(names.size() == std::size(op_table));
    CHECK(is_leaf(op::leaf));
    CHECK(is_leaf(op::constant));
}

TEST_CASE("op_table: each ops.def row's code, name, arity and linearity match its kernel") {
#define TG_OP(op_name, ar, ...)                                 \
    SUBCASE(#op_name) {                                         \
        const op_info& row = op_table[int(op::op_name)];        \
        CHECK(std::string(row.name) == #op_name);               \
        CHECK(std::string(kernel::op_name::label) == #op_name); \
        CHECK(kernel::op_name::code == op::op_name);            \
        CHECK(row.arity == ar);                                 \
        CHECK(kernel::op_name::arity == ar);                    \
        CHECK((ar == 1 || ar == 2));                            \
        CHECK(row.linear == kernel::op_name::linear);           \
        CHECK_FALSE(is_leaf(op::op_name));                      \
    }
#include "tapegrad/ops.def"
#undef TG_OP
}

TEST_CASE("kernels: unary ops ignore y, and local_grads and the dual rules agree with dx and dy") {
    const double points[][2] = {{0.7, 1.3}, {-2.5, 0.25}, {3.0, 3.0}, {0.0, 2.0}, {1.5, -0.5}};
    for (op o : tg_test::all_ops()) {
        CAPTURE(op_table[int(o)].name);
        for (const auto& p : points) {
            const double x = p[0], y = p[1], g = 0.75;
            double out = 0, other = 0, dx = 0, dy = 0, d[2];
            fwd::dual ddx, ddy;
            switch (o) {
#define TG_OP(name, ar, ...)                                                                   \
    case op::name:                                                                             \
        out = kernel::name::forward(x, y);                                                     \
        other = kernel::name::forward(x, y + 1.0);                                             \
        dx = kernel::name::dx(x, y, out, g);                                                   \
        dy = kernel::name::dy(x, y, out, g);                                                   \
        ddx = kernel::name::dx(fwd::dual(x, 1.0), fwd::dual(y), fwd::dual(out), fwd::dual(g)); \
        ddy = kernel::name::dy(fwd::dual(x), fwd::dual(y, 1.0), fwd::dual(out), fwd::dual(g)); \
        if (ar == 1) CHECK(same_bits(out, other));                                             \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
                default: FAIL("not an op");
            }
            local_grads(o, x, y, out, g, d);
            CHECK(same_bits(d[0], dx));
            CHECK(same_bits(d[1], op_table[int(o)].arity == 2 ? dy : 0.0));
            // On dual numbers the value part is the rule itself.
            CHECK(same_bits(ddx.v, dx));
            if (op_table[int(o)].arity == 2) CHECK(same_bits(ddy.v, dy));
        }
    }
}
