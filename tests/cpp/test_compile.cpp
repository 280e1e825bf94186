// compile(): dead-code elimination, constant folding and dedup, CSE, the slot layout.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "graphs.hpp"

using namespace tapegrad;
using tg_test::held_tape;

namespace {

std::size_t count(const program& p, const std::string& name) {
    for (const auto& [n, c] : p.histogram())
        if (n == name) return c;
    return 0;
}
std::size_t n_ops(const program& p) { return p.n_slots() - p.first_op(); }

program compile_held(const held_tape& h, std::vector<int> in, std::vector<int> out, bool cse,
                     const std::vector<recorded_guard>& guards = {}) {
    std::vector<tape::index> ii, oo;
    for (int k : in) ii.push_back(h[k]);
    for (int k : out) oo.push_back(h[k]);
    return compile(h.t, ii, oo, guards, cse);
}

double run(const program& p, std::vector<double> x, std::size_t output = 0) {
    std::vector<double> val(p.n_slots());
    p.forward(x.data(), val.data());
    return val[p.outputs_[output]];
}

}  // namespace

TEST_CASE("compile: CSE merges repeated (op, args), add and mul in either order") {
    held_tape h;
    const int x = h.leaf(1.5), y = h.leaf(-0.5);
    const int a = h.apply(op::mul, x, y), b = h.apply(op::mul, x, y), c = h.apply(op::mul, y, x);
    const int d = h.apply(op::sub, x, y), e = h.apply(op::sub, y, x);  // not commutative
    const int f =
        h.apply(op::add, h.apply(op::add, h.apply(op::add, a, b), c), h.apply(op::add, d, e));
    const program with = compile_held(h, {x, y}, {f}, true);
    const program without = compile_held(h, {x, y}, {f}, false);
    CHECK(count(with, "mul") == 1);
    CHECK(count(with, "sub") == 2);
    CHECK(count(without, "mul") == 3);
    CHECK(n_ops(with) == 7);  // mul, two subs, a + b (now a + a), + c, d + e, the sum
    CHECK(n_ops(without) == 9);
    CHECK(run(with, {1.5, -0.5}) == h.val(f));
    CHECK(run(without, {1.5, -0.5}) == h.val(f));
    CHECK(run(with, {2.0, 3.0}) == run(without, {2.0, 3.0}));
}

TEST_CASE("compile: dead code is dropped") {
    held_tape h;
    const int x = h.leaf(0.3), y = h.leaf(0.4);
    h.apply(op::exp, x);                                 // held, but no output uses it
    const int unused = h.apply(op::sin, h.apply(op::mul, x, y));
    const int f = h.apply(op::add, x, y);
    h.apply(op::cos, f);                                 // above the output
    const program p = compile_held(h, {x, y}, {f}, true);
    CHECK(n_ops(p) == 1);
    CHECK(count(p, "add") == 1);
    CHECK(count(p, "exp") + count(p, "sin") + count(p, "cos") + count(p, "mul") == 0);
    // The same node as a second output brings its cone back.
    const program q = compile_held(h, {x, y}, {f, unused}, true);
    CHECK(count(q, "sin") == 1);
    CHECK(count(q, "mul") == 1);
    CHECK(run(q, {1.0, 2.0}, 1) == std::sin(1.0 * 2.0));
}

TEST_CASE("compile: constants fold with the eager values and are stored once per bit pattern") {
    held_tape h;
    const int x = h.leaf(2.0);
    const int other_var = h.leaf(7.0);  // not an input: a constant of the trace
    const int two_a = h.constant(2.0), two_b = h.constant(2.0);
    const int zero = h.constant(0.0), minus_zero = h.constant(-0.0);
    const int folded = h.apply(op::exp, h.apply(op::mul, two_a, other_var));  // no input in it
    int f = h.apply(op::mul, x, two_a);
    f = h.apply(op::add, f, h.apply(op::mul, x, two_b));
    f = h.apply(op::add, f, h.apply(op::mul, x, folded));
    f = h.apply(op::add, f, h.apply(op::add, x, zero));
    f = h.apply(op::add, f, h.apply(op::sub, x, minus_zero));
    const program p = compile_held(h, {x}, {f}, false);
    CHECK(count(p, "exp") == 0);
    auto slots_holding = [&](double v) {
        int n = 0;
        for (slot s = p.n_inputs; s < p.first_op(); ++s) {
            CHECK(p.op_[s] == op::constant);
            n += tg_test::same_bits(p.init_[s], v);
        }
        return n;
    };
    CHECK(slots_holding(2.0) == 1);
    CHECK(slots_holding(0.0) == 1);
    CHECK(slots_holding(-0.0) == 1);  // other bits than 0.0
    CHECK(slots_holding(h.val(folded)) == 1);
    CHECK(run(p, {2.0}) == h.val(f));
    CHECK(run(p, {-1.0}) == -1.0 * 2.0 + -1.0 * 2.0 + -1.0 * h.val(folded) + -1.0 + -1.0);
}

TEST_CASE("compile: slot layout is inputs, constants, ops, each op after its operands") {
    std::mt19937_64 rng(7);
    const tg_test::expr e = tg_test::random_expr(rng, tg_test::all_ops(), 3, 40, 2);
    const double x[] = {0.5, -1.5, 2.0};
    for (bool cse : {false, true}) {
        const program p = tg_test::compile_expr(e, x, cse);
        const program_view v = p.view();
        CHECK(v.n_inputs == 3);
        for (slot s = 0; s < v.n_slots; ++s) {
            if (s < v.n_inputs) {
                CHECK(v.ops[s] == op::leaf);
            } else if (s < v.first_op) {
                CHECK(v.ops[s] == op::constant);
                CHECK(v.consts()(s));
            } else {
                CHECK_FALSE(is_leaf(v.ops[s]));
                CHECK_FALSE(v.consts()(s));
                CHECK(v.a[s] < s);
                CHECK(v.b[s] < s);
                if (op_table[int(v.ops[s])].arity == 1) CHECK(v.a[s] == v.b[s]);
            }
        }
        for (slot o : p.outputs_) CHECK(o < v.n_slots);
    }
}

TEST_CASE("compile: guards are re-checked and those between constants dropped") {
    held_tape h;
    const int x = h.leaf(1.0), y = h.leaf(2.0), c = h.constant(5.0);
    const int f = h.apply(op::mul, x, y);
    const std::vector<recorded_guard> guards{
        {cmp::lt, {true, h[x], 0}, {true, h[y], 0}, true, "here:1"},    // x < y
        {cmp::gt, {true, h[c], 0}, {false, 0, 1.0}, true, "here:2"},   // 5 > 1 always
        {cmp::ge, {true, h[f], 0}, {false, 0, 0.0}, true, "here:3"}};  // x * y >= 0
    const program p = compile_held(h, {x, y}, {f}, true, guards);
    REQUIRE(p.guards_.size() == 2);
    CHECK(p.guards_[0].where == "here:1");
    CHECK(p.guards_[1].where == "here:3");
    auto failing = [&](double a, double b) {
        std::vector<double> val(p.n_slots());
        const double in[] = {a, b};
        p.forward(in, val.data());
        return p.failing_guard(val.data());
    };
    CHECK(failing(1.0, 2.0) == -1);
    CHECK(failing(3.0, 2.0) == 0);
    CHECK(failing(-1.0, 2.0) == 1);
}

TEST_CASE("compile: inputs must be leaves and every node must be on the tape") {
    held_tape h;
    const int x = h.leaf(1.0);
    const int f = h.apply(op::neg, x);
    const tape::index past = h.t.size();
    CHECK_THROWS_AS(compile(h.t, {h[f]}, {h[f]}, {}, true), std::invalid_argument);
    CHECK_THROWS_AS(compile(h.t, {h[x]}, {past}, {}, true), std::invalid_argument);
    CHECK_THROWS_AS(compile(h.t, {past}, {h[f]}, {}, true), std::invalid_argument);
    const std::vector<recorded_guard> bad{{cmp::lt, {true, past, 0}, {false, 0, 0.0}, true, ""}};
    CHECK_THROWS_AS(compile(h.t, {h[x]}, {h[f]}, bad, true), std::invalid_argument);
}
