// The recorded Hessian (hessian_program.hpp): for every op of the table, its entries equal
// hessian_block's at every point it does not decline, and it declines NaN, infinities and
// the other side of a rule's branch.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "graphs.hpp"
#include "tapegrad/hessian_program.hpp"

using namespace tapegrad;
using tg_test::held_tape;

namespace {

// f(x0, x1, x2) = o(x0 * x1, x2) * x2 + o(x1, x0 + x2) (unary: o(x0 * x1) * x2 + o(x1)).
program two_uses(op o) {
    held_tape h;
    const int x0 = h.leaf(0.6), x1 = h.leaf(0.7), x2 = h.leaf(1.3);
    const bool binary = op_table[int(o)].arity == 2;
    const int p = h.apply(op::mul, x0, x1);
    const int u = binary ? h.apply(o, p, x2) : h.apply(o, p);
    const int v = binary ? h.apply(o, x1, h.apply(op::add, x0, x2)) : h.apply(o, x1);
    const int f = h.apply(op::add, h.apply(op::mul, u, x2), v);
    return compile(h.t, {h[x0], h[x1], h[x2]}, {h[f]}, {}, true);
}

// Every (input, column) of the Hessian with one input per column, by hessian_block.
std::vector<double> by_sweeps(const program& p, const hessian_plan& plan, const double* x) {
    const std::size_t n = p.n_slots();
    std::vector<double> val(n), adj(n), t(n, 0.0), adjt(n, 0.0), cols(9);
    p.forward(x, val.data());
    p.adjoints(val.data(), adj.data(), 0);
    hessian_block(p.view(), plan, p.outputs_[0], val.data(), adj.data(), t.data(), adjt.data(), 1,
                  1, cols.data(), 0, true);
    return cols;
}

bool same_but_zero_sign(double a, double b) { return a == b || (a != a && b != b); }

}  // namespace

TEST_CASE("recorded Hessian: every table op equals hessian_block where it does not decline") {
    const double inf = std::numeric_limits<double>::infinity();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<std::vector<double>> points = {
        {0.6, 0.7, 1.3}, {1.1, 0.9, 2.0}, {-0.4, 0.8, 0.5}, {0.0, 0.7, 0.0},   {1.0, 1.0, 1.0},
        {0.5, 2.0, 1.0}, {inf, 0.5, 1.0}, {nan, 1.0, 2.0},  {-1.0, 1.0, -1.0}, {2.0, 0.5, 0.0}};
    std::vector<std::pair<slot, slot>> entries;
    for (slot i = 0; i < 3; ++i)
        for (slot j = 0; j < 3; ++j) entries.push_back({i, j});
    int replayed = 0;
    for (int o = int(op::constant) + 1; o < int(op::count_); ++o) {
        CAPTURE(std::string(op_table[o].name));
        const program p = two_uses(op(o));
        const hessian_plan plan = plan_hessian(p.view(), {{0}, {1}, {2}});
        const auto h = record_hessian(p, plan, entries, points[0].data(), 1u << 20);
        REQUIRE(h);
        std::vector<double> val(h->prog.n_slots()), out(entries.size());
        for (const auto& x : points) {
            const std::vector<double> want = by_sweeps(p, plan, x.data());
            if (!run_recorded_hessian(*h, x.data(), val.data(), out.data())) continue;
            ++replayed;
            for (std::size_t k = 0; k < entries.size(); ++k) {
                CAPTURE(k);
                CHECK(same_but_zero_sign(out[k], want[entries[k].first * 3 + entries[k].second]));
            }
        }
    }
    CHECK(replayed > 200);  // most points replay
}

TEST_CASE("recorded Hessian: NaN and infinities decline, the size limit declines recording") {
    held_tape h;
    const int x0 = h.leaf(1.0), x1 = h.leaf(2.0);
    const int f = h.apply(op::mul, h.apply(op::exp, x0), h.apply(op::square, x1));
    const program p = compile(h.t, {h[x0], h[x1]}, {h[f]}, {}, true);
    const hessian_plan plan = plan_hessian(p.view(), {{0}, {1}});
    const std::vector<std::pair<slot, slot>> entries = {{0, 0}, {1, 0}, {1, 1}};
    const double x[] = {1.0, 2.0};
    CHECK_FALSE(record_hessian(p, plan, entries, x, 1));
    const auto r = record_hessian(p, plan, entries, x, 1000);
    REQUIRE(r);
    std::vector<double> val(r->prog.n_slots()), out(3);
    REQUIRE(run_recorded_hessian(*r, x, val.data(), out.data()));
    CHECK(out[0] == std::exp(1.0) * 4.0);
    CHECK(out[1] == std::exp(1.0) * 2.0 * 2.0);
    CHECK(out[2] == std::exp(1.0) * 2.0);
    const double big[] = {1000.0, 2.0}, nan[] = {std::nan(""), 2.0};
    CHECK_FALSE(run_recorded_hessian(*r, big, val.data(), out.data()));  // exp overflows
    CHECK_FALSE(run_recorded_hessian(*r, nan, val.data(), out.data()));
}

TEST_CASE("recorded Hessian: runs laid out block op by block op give hessian_block's values") {
    // Rosenbrock's chain, n inputs, 3 seed groups (i mod 3): the recording has runs of
    // several block ops per iteration, which the replay lays out one block op at a time
    constexpr slot n = 60;
    held_tape h;
    std::vector<int> x;
    for (slot i = 0; i < n; ++i) x.push_back(h.leaf(0.1 * i));
    const int c100 = h.constant(100.0), c1 = h.constant(1.0);
    int f = -1;
    for (slot i = 0; i + 1 < n; ++i) {
        const int d = h.apply(op::sub, x[i + 1], h.apply(op::square, x[i]));
        const int e = h.apply(op::sub, c1, x[i]);
        const int t = h.apply(op::add, h.apply(op::mul, c100, h.apply(op::square, d)),
                              h.apply(op::square, e));
        f = f < 0 ? t : h.apply(op::add, f, t);
    }
    std::vector<tape::index> in_nodes;
    for (int k : x) in_nodes.push_back(h[k]);
    const program p = compile(h.t, in_nodes, {h[f]}, {}, true);
    std::vector<std::vector<slot>> groups(3);
    for (slot i = 0; i < n; ++i) groups[i % 3].push_back(i);
    const hessian_plan plan = plan_hessian(p.view(), groups);
    std::vector<std::pair<slot, slot>> entries;
    for (slot i = 0; i < n; ++i)
        for (slot j = i > 0 ? i - 1 : 0; j <= i + 1 && j < n; ++j) entries.push_back({i, j % 3});
    std::vector<double> at(n);
    for (slot i = 0; i < n; ++i) at[i] = std::sin(1.0 + i);
    const auto r = record_hessian(p, plan, entries, at.data(), 1u << 20);
    REQUIRE(r);
    bool all_one = true;
    for (const run& u : r->runs) all_one &= u.period == 1;
    CHECK(all_one);
    CHECK(r->runs.size() >= 4);
    std::vector<double> val(r->prog.n_slots()), out(entries.size());
    const std::size_t m = p.n_slots();
    for (double shift : {0.0, 0.25, -1.5}) {
        std::vector<double> xs = at;
        for (double& v : xs) v += shift;
        REQUIRE(run_recorded_hessian(*r, xs.data(), val.data(), out.data()));
        std::vector<double> v(m), adj(m), t(m, 0.0), adjt(m, 0.0), cols(n * 3);
        p.forward(xs.data(), v.data());
        p.adjoints(v.data(), adj.data(), 0);
        hessian_block(p.view(), plan, p.outputs_[0], v.data(), adj.data(), t.data(), adjt.data(), 1,
                      1, cols.data(), 0, true);
        for (std::size_t k = 0; k < entries.size(); ++k) {
            CAPTURE(k);
            CHECK(same_but_zero_sign(out[k], cols[entries[k].first * 3 + entries[k].second]));
        }
    }
}
