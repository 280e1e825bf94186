// The reverse sweep recorded as nodes (backward_graph.hpp): the recorded gradient's
// values are the plain sweep's, it differentiates again, the tape's reference counts stay
// exact, and nothing on the tape (adjoints included) changes but the new nodes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "graphs.hpp"
#include "tapegrad/backward_graph.hpp"

using namespace tapegrad;
using tg_test::held_tape;

namespace {

// gradient_graph as the bindings call it: relocation off, the results held, then the
// sweep's own nodes released.
std::vector<int> recorded(held_tape& h, int out, const std::vector<int>& wrt) {
    grad_request r;
    r.outputs = {h[out]};
    r.seeds = {term(1.0)};
    for (const int w : wrt) r.wrt.push_back(h[w]);
    std::vector<tape::index> held;
    h.t.set_relocator(nullptr);
    const std::vector<tape::index> g = gradient_graph(h.t, r, held);
    std::vector<int> handles;
    for (const tape::index i : g) handles.push_back(h.hold(i));
    for (const tape::index i : held) h.t.release(i);
    h.t.set_relocator(&h);
    return handles;
}

}  // namespace

TEST_CASE("recorded sweep: x^3 differentiates to 3x^2, 6x, 6, 0") {
    held_tape h;
    const int x = h.leaf(2.0);
    int d = h.apply(op::mul, h.apply(op::mul, x, x), x);
    const double want[] = {12.0, 12.0, 6.0, 0.0};
    for (const double w : want) {
        d = recorded(h, d, {x})[0];
        CHECK(h.val(d) == w);
        CHECK(h.check() == "");
    }
    CHECK(h.adj(x) == 0.0);  // the leaf's adjoint is untouched
}

TEST_CASE("recorded sweep: values equal the plain sweep's on every op") {
    for (const op o : tg_test::all_ops()) {
        CAPTURE(op_table[int(o)].name);
        held_tape h;
        const int x = h.leaf(0.37), y = h.leaf(1.6);
        const int fo = op_table[int(o)].arity == 2 ? h.apply(o, x, y) : h.apply(o, y);
        const int f = h.apply(op::mul, fo, h.apply(op::sin, x));
        grad_request r;
        r.outputs = {h[f]};
        r.seeds = {term(1.0)};
        r.wrt = {h[x], h[y]};
        const std::vector<double> numbers = gradient_values(h.t, r);
        const std::vector<int> g = recorded(h, f, {x, y});
        h.t.backward(h[f]);
        for (int k = 0; k < 2; ++k) {
            const double plain = h.adj(k == 0 ? x : y);
            CHECK(tg_test::same_bits(numbers[k], plain));
            CHECK((h.val(g[k]) == plain || (std::isnan(plain) && std::isnan(h.val(g[k])))));
        }
        CHECK(h.check() == "");
        for (const int k : g) h.drop(k);
        h.drop(f);
        CHECK(h.check() == "");
    }
}

namespace {
struct counting_observer final : compare_observer {
    int comparisons = 0;
    void compared(const term&, const term&, cmp, bool, op) override { ++comparisons; }
};
}  // namespace

TEST_CASE("recorded sweep: a constant operand's rule is not evaluated") {
    // pow(x, 3) with 3 a constant node: d/dy (which compares x == 0) is never needed, so
    // the recording makes no comparison; with a leaf exponent it does.
    for (const bool constant_exponent : {true, false}) {
        CAPTURE(constant_exponent);
        held_tape h;
        const int x = h.leaf(0.0);
        const int y = constant_exponent ? h.constant(3.0) : h.leaf(3.0);
        const int f = h.apply(op::pow, x, y);
        grad_request r;
        r.outputs = {h[f]};
        r.seeds = {term(1.0)};
        r.wrt = {h[x], h[y]};
        std::vector<tape::index> held;
        counting_observer watch;
        h.t.set_relocator(nullptr);
        const std::vector<tape::index> g = gradient_graph(h.t, r, held, &watch);
        CHECK(h.t.val(g[0]) == 0.0);  // 3 x^2 at 0
        CHECK(h.t.val(g[1]) == 0.0);  // a constant takes no gradient; d/dy at x = 0 is 0
        for (const tape::index i : held) h.t.release(i);
        h.t.set_relocator(&h);
        CHECK((watch.comparisons == 0) == constant_exponent);
        CHECK(h.check() == "");
    }
}

TEST_CASE("below: the nodes in a root's graph, through every op's operands") {
    held_tape h;
    const int x = h.leaf(1.0), y = h.leaf(2.0), z = h.leaf(3.0), outside = h.leaf(4.0);
    const int d = h.apply(op::detach, z);
    const int f = h.apply(op::add, h.apply(op::mul, x, h.constant(0.0)), h.apply(op::add, d, y));
    const int later = h.apply(op::neg, x);  // above the root: not below it
    const std::vector<bool> got = below(h.t, h[f], {h[x], h[y], h[z], h[outside], h[f], h[later]});
    CHECK(got == std::vector<bool>{true, true, true, false, true, false});
}
