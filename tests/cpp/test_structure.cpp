// find_runs() and run_count(): runs of isomorphic blocks in programs laid out by hand,
// so that every slot of the expected runs is known.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "graphs.hpp"
#include "tapegrad/program.hpp"
#include "tapegrad/structure.hpp"

using namespace tapegrad;

namespace {

// A program laid out slot by slot: n_in inputs, n_const constants, then ops.
struct layout {
    std::vector<op> ops;
    std::vector<slot> a, b;
    slot n_inputs, first_op;
    layout(slot n_in, slot n_const) : n_inputs(n_in), first_op(n_in + n_const) {
        for (slot s = 0; s < first_op; ++s) push(s < n_in ? op::leaf : op::constant, 0, 0);
    }
    slot push(op o, slot x, slot y) {
        ops.push_back(o);
        a.push_back(x);
        b.push_back(y);
        return slot(ops.size() - 1);
    }
    slot unary(op o, slot x) { return push(o, x, x); }
    program_view view() const {
        return {ops.data(), a.data(), b.data(), nullptr,
                nullptr,    n_inputs, first_op, slot(ops.size())};
    }
};

// s = s + x[i] * x[i + 1] for i < n: per iteration mul (strided, strided), add (carried,
// same); s starts as input 0, x[i] is input 1 + i.
layout dot_loop(slot n) {
    layout L(n + 2, 0);
    slot s = 0;
    for (slot i = 0; i < n; ++i) s = L.push(op::add, s, L.push(op::mul, 1 + i, 2 + i));
    return L;
}

}  // namespace

TEST_CASE("structure: a running dot product is one run with the sum carried") {
    const layout L = dot_loop(50);
    const auto runs = find_runs(L.view());
    REQUIRE(runs.size() == 1);
    const run& r = runs[0];
    CHECK(r.start == L.first_op);
    CHECK(r.period == 2);
    CHECK(r.count == 50);
    CHECK(r.a[0].kind == operand_kind::strided);
    CHECK(r.a[0].first == 1);
    CHECK(r.a[0].stride == 1);
    CHECK(r.b[0].kind == operand_kind::strided);
    CHECK(r.a[1].kind == operand_kind::carried);
    CHECK(r.a[1].first == 0);  // the sum's initial value
    CHECK(r.a[1].source == 1);
    CHECK(r.b[1].kind == operand_kind::same);
    CHECK(r.b[1].source == 0);
}

TEST_CASE("structure: run_count stops at the first iteration that breaks a rule") {
    layout L = dot_loop(30);
    CHECK(run_count(L.view(), L.first_op, 2) == 30);
    L.a[L.first_op + 2 * 17] = 5;  // iteration 17's mul reads x[4] instead of x[17]
    CHECK(run_count(L.view(), L.first_op, 2) == 17);
    L = dot_loop(30);
    L.ops[L.first_op + 2 * 9] = op::sub;  // another op in iteration 9
    CHECK(run_count(L.view(), L.first_op, 2) == 9);
    L = dot_loop(30);
    L.a[L.first_op + 2 * 21 + 1] = L.first_op + 2 * 19 + 1;  // carried from two back
    CHECK(run_count(L.view(), L.first_op, 2) == 21);
    CHECK(run_count(L.view(), L.first_op, 0) == 1);
    CHECK(run_count(L.view(), L.first_op, 40) == 1);  // a second iteration would pass the end
}

TEST_CASE("structure: an operand invariant but once, and a stride that enters the run") {
    // t_i = c * x[i] (c: constant slot), all as outputs; iteration 12 reads another c
    layout L(40, 2);
    for (slot i = 0; i < 30; ++i) L.push(op::mul, i, i == 12 ? 41 : 40);
    auto runs = find_runs(L.view());
    REQUIRE(runs.size() == 2);
    CHECK(runs[0].start == L.first_op);
    CHECK(runs[0].count == 12);
    CHECK(runs[0].b[0].kind == operand_kind::invariant);
    CHECK(runs[1].start == L.first_op + 13);
    CHECK(runs[1].count == 17);
    // u_i = sin(v_{i-3}) where v starts before the run then runs into it: a strided
    // operand may only read slots before the run
    layout M(1, 0);
    for (slot i = 0; i < 3; ++i) M.unary(op::exp, 0);
    for (slot i = 0; i < 20; ++i) M.unary(op::sin, M.first_op + i);
    runs = find_runs(M.view());
    for (const run& r : runs)
        for (slot k = 0; k < r.count; ++k)
            for (slot j = 0; j < r.period; ++j) {
                const block_operand& o = r.a[j];
                if (o.kind == operand_kind::strided || o.kind == operand_kind::invariant)
                    CHECK(M.a[r.start + k * r.period + j] < r.start);
            }
}

TEST_CASE("structure: two iterations are runs only when asked for") {
    layout L(4, 0);
    L.unary(op::sin, 0);
    L.unary(op::sin, 3);
    CHECK(find_runs(L.view()).empty());
    const auto runs = find_runs(L.view(), 2);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].b[0].stride == 3);
}

TEST_CASE("structure: random programs give only runs that hold") {
    std::mt19937 rng(7);
    const op choices[] = {op::add, op::mul, op::sin, op::sub};
    for (int trial = 0; trial < 200; ++trial) {
        layout L(3, 2);
        const slot n = 2 + rng() % 200;
        for (slot i = 0; i < n; ++i) {
            const slot top = slot(L.ops.size());
            const op o = choices[rng() % 4];
            const slot x = rng() % top, y = rng() % top;
            L.push(o, x, o == op::sin ? x : y);
        }
        for (slot min_count : {2u, 3u})
            for (const run& r : find_runs(L.view(), min_count)) {
                CHECK(r.count >= min_count);
                run again;
                CHECK(run_count(L.view(), r.start, r.period, &again) == r.count);
                for (slot k = 0; k < r.count; ++k)
                    for (slot j = 0; j < r.period; ++j) {
                        const slot t = r.start + k * r.period + j;
                        CHECK(L.ops[t] == L.ops[r.start + j]);
                        for (const auto& [o, arg] : {std::pair{r.a[j], L.a[t]}, {r.b[j], L.b[t]}}) {
                            std::int64_t want = 0;
                            switch (o.kind) {
                                case operand_kind::same:
                                    want = r.start + k * r.period + o.source;
                                    break;
                                case operand_kind::carried:
                                    want = k ? r.start + (k - 1) * r.period + o.source : o.first;
                                    break;
                                default: want = o.first + std::int64_t(k) * o.stride;
                            }
                            CHECK(arg == want);
                        }
                    }
            }
    }
}

TEST_CASE("structure: forward_by_runs gives the interpreter's values") {
    // a running sum of x[i] * x[i + 1] (a reduction), then sin(x[39 - i]) (a negative
    // stride) and x[i] * s (an invariant op before the run), all outputs
    tg_test::held_tape h;
    std::vector<int> x, out;
    for (int i = 0; i < 40; ++i) x.push_back(h.leaf(0.1 * i + 0.05));
    int s = x[0];
    for (int i = 0; i < 39; ++i) s = h.apply(op::add, s, h.apply(op::mul, x[i], x[i + 1]));
    for (int i = 0; i < 40; ++i) out.push_back(h.apply(op::sin, x[39 - i], x[39 - i]));
    for (int i = 0; i < 40; ++i) out.push_back(h.apply(op::mul, x[i], s));
    out.push_back(s);
    std::vector<tape::index> in_nodes, out_nodes;
    for (int k : x) in_nodes.push_back(h[k]);
    for (int k : out) out_nodes.push_back(h[k]);
    const program p = compile(h.t, in_nodes, out_nodes, {}, true);
    const std::vector<run> runs = find_runs(p.view());
    CHECK(runs.size() >= 3);
    std::vector<double> in(40), want(p.n_slots()), got(p.n_slots(), -1.0);
    for (int i = 0; i < 40; ++i) in[i] = std::sin(1.0 + i);
    p.forward(in.data(), want.data());
    forward_by_runs(p, runs, in.data(), got.data());
    CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) == 0);
}

TEST_CASE("structure: forward_by_runs with a number on either side, strides 1 and -1") {
    // c - x[i], c / x[n - 1 - i], x[i] - c, x[n - 1 - i] / c with c = x[0] * x[1]: each a
    // run of one op reading the invariant c, longer than one chunk of iterations
    constexpr int n = 3000;
    tg_test::held_tape h;
    std::vector<int> x, out;
    for (int i = 0; i < n; ++i) x.push_back(h.leaf(1.0 + i));
    const int c = h.apply(op::mul, x[0], x[1]);
    for (int i = 0; i < n; ++i) out.push_back(h.apply(op::sub, c, x[i]));
    for (int i = 0; i < n; ++i) out.push_back(h.apply(op::div, c, x[n - 1 - i]));
    for (int i = 0; i < n; ++i) out.push_back(h.apply(op::sub, x[i], c));
    for (int i = 0; i < n; ++i) out.push_back(h.apply(op::div, x[n - 1 - i], c));
    std::vector<tape::index> in_nodes, out_nodes;
    for (int k : x) in_nodes.push_back(h[k]);
    for (int k : out) out_nodes.push_back(h[k]);
    const program p = compile(h.t, in_nodes, out_nodes, {}, true);
    const std::vector<run> runs = find_runs(p.view());
    int long_runs = 0;
    for (const run& r : runs) long_runs += r.period == 1 && r.count == slot(n);
    CHECK(long_runs == 4);
    std::vector<double> in(n), want(p.n_slots()), got(p.n_slots(), -1.0);
    for (int i = 0; i < n; ++i) in[i] = std::sin(1.0 + i);
    p.forward(in.data(), want.data());
    CHECK(forward_by_runs_finite(p, runs, in.data(), got.data()));
    CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) == 0);
    std::fill(got.begin(), got.end(), -1.0);
    forward_by_runs(p, runs, in.data(), got.data());
    CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) == 0);
    // Not finite: c / 0 in the second chunk of a run, c itself before the runs, an input.
    in[n - 1 - 2500] = 0.0;
    CHECK_FALSE(forward_by_runs_finite(p, runs, in.data(), got.data()));
    in[n - 1 - 2500] = 0.5;
    CHECK(forward_by_runs_finite(p, runs, in.data(), got.data()));
    in[0] = in[1] = 1e200;
    CHECK_FALSE(forward_by_runs_finite(p, runs, in.data(), got.data()));
    in[0] = in[1] = 0.5;
    in[7] = std::nan("");
    CHECK_FALSE(forward_by_runs_finite(p, runs, in.data(), got.data()));
}

TEST_CASE("structure: all_finite finds one infinity or NaN at any position") {
    const double inf = std::numeric_limits<double>::infinity();
    const double finite[] = {0.0,
                             -0.0,
                             1.0,
                             -1.0,
                             std::numeric_limits<double>::max(),
                             -std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::min(),
                             1e308,
                             -3.5e-310};
    const double bad[] = {inf, -inf, std::nan(""), -std::nan(""),
                          std::numeric_limits<double>::signaling_NaN()};
    for (std::size_t n : {0, 1, 2, 3, 7, 8, 9, 16, 33}) {
        std::vector<double> v(n);
        for (std::size_t k = 0; k < n; ++k) v[k] = finite[k % std::size(finite)];
        CHECK(all_finite(v.data(), n));
        for (std::size_t k = 0; k < n; ++k)
            for (double b : bad) {
                const double kept = v[k];
                v[k] = b;
                CHECK_FALSE(all_finite(v.data(), n));
                CHECK(all_finite(v.data(), k));  // the values before it
                v[k] = kept;
            }
    }
}
