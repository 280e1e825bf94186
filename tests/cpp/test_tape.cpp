// The eager tape, through what must hold whatever its compaction policy: values,
// gradients, the top-of-tape drop, and indices that follow their nodes when they move.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

#include "graphs.hpp"

using namespace tapegrad;
using tg_test::held_tape;

TEST_CASE("tape: pushes compute values with the table's forward column") {
    held_tape h;
    const int x = h.leaf(3.0), y = h.leaf(-2.0), c = h.constant(0.5);
    CHECK(h.t.op_at(h[x]) == op::leaf);
    CHECK(h.t.op_at(h[c]) == op::constant);
    CHECK(h.val(h.apply(op::add, x, y)) == 1.0);
    CHECK(h.val(h.apply(op::mul, x, c)) == 1.5);
    CHECK(h.val(h.apply(op::div, y, x)) == -2.0 / 3.0);
    CHECK(h.val(h.apply(op::square, y)) == 4.0);
    CHECK(h.val(h.apply(op::neg, x)) == -3.0);
    CHECK(h.val(h.apply(op::exp, c)) == std::exp(0.5));
    const int s = h.apply(op::sqrt, x);
    CHECK(h.t.arg0(h[s]) == h[x]);
    CHECK(h.t.arg1(h[s]) == h[x]);  // unary: b points at a
    CHECK(h.t.size() == 10);
}

TEST_CASE("tape: backward on small graphs with shared leaves") {
    SUBCASE("f = x*y + x*x: df/dx = y + 2x, df/dy = x") {
        held_tape h;
        const int x = h.leaf(3.0), y = h.leaf(2.0);
        const int f = h.apply(op::add, h.apply(op::mul, x, y), h.apply(op::mul, x, x));
        h.t.backward(h[f]);
        CHECK(h.val(f) == 15.0);
        CHECK(h.adj(x) == 8.0);
        CHECK(h.adj(y) == 3.0);
    }
    SUBCASE("a chain reusing one leaf: f = ((x * x) * x) * x, df/dx = 4x^3") {
        held_tape h;
        const int x = h.leaf(1.5);
        int f = x;
        for (int k = 0; k < 3; ++k) f = h.apply(op::mul, f, x);
        h.t.backward(h[f]);
        CHECK(h.adj(x) == doctest::Approx(4 * 1.5 * 1.5 * 1.5).epsilon(1e-15));
    }
    SUBCASE("a diamond: f = (x + y) * (x - y), df/dx = 2x, df/dy = -2y") {
        held_tape h;
        const int x = h.leaf(5.0), y = h.leaf(2.0);
        const int f = h.apply(op::mul, h.apply(op::add, x, y), h.apply(op::sub, x, y));
        h.t.backward(h[f], 0.5);  // the seed scales every gradient
        CHECK(h.adj(x) == 5.0);
        CHECK(h.adj(y) == -2.0);
    }
    SUBCASE("constants get no gradient, detach stops it") {
        held_tape h;
        const int x = h.leaf(2.0), c = h.constant(3.0);
        const int f =
            h.apply(op::add, h.apply(op::mul, x, c), h.apply(op::mul, x, h.apply(op::detach, x)));
        h.t.backward(h[f]);
        CHECK(h.adj(x) == 3.0 + 2.0);  // d(x*c) + d(x * stop(x)) = c + stop(x)
        CHECK(h.adj(c) == 0.0);
    }
    SUBCASE("leaf adjoints accumulate across backward calls, the others are reset") {
        held_tape h;
        const int x = h.leaf(3.0);
        const int m = h.apply(op::mul, x, x);
        const int f = h.apply(op::add, m, x);
        h.t.backward(h[f]);
        CHECK(h.adj(x) == 7.0);
        CHECK(h.adj(m) == 1.0);
        h.t.backward(h[f]);
        CHECK(h.adj(x) == 14.0);
        CHECK(h.adj(m) == 1.0);
    }
    SUBCASE("a zero adjoint is skipped: where(0, sqrt(x), .) at x = 0 gives 0, not 0 * inf") {
        held_tape h;
        const int x = h.leaf(0.0), zero = h.constant(0.0);
        const int f = h.apply(op::if_true, zero, h.apply(op::sqrt, x));
        h.t.backward(h[f]);
        CHECK(h.val(f) == 0.0);
        CHECK(h.adj(x) == 0.0);
    }
}

TEST_CASE("tape: an unreferenced top is dropped at once, garbage below a live node is not") {
    held_tape h;
    const int x = h.leaf(1.0), y = h.leaf(2.0);
    const tape::index base = h.t.size();
    const tape::index c = h.push(op::add, x, y);
    h.t.retain(c);
    CHECK(h.t.size() == base + 1);
    h.t.release(c);
    CHECK(h.t.size() == base);

    const tape::index d = h.push(op::mul, x, y);
    h.t.retain(d);
    const tape::index e = h.push(op::add, x, y);  // not d's user: d is only below it
    h.t.retain(e);
    h.t.release(d);
    CHECK(h.t.size() == base + 2);  // e is still live on top
    h.t.release(e);
    CHECK(h.t.size() == base);  // e, then d under it

    h.push(op::sub, x, y);  // nobody holds it
    CHECK(h.t.size() == base + 1);
    h.t.trim();
    CHECK(h.t.size() == base);
    CHECK(h.val(x) == 1.0);
    CHECK(h.val(y) == 2.0);
}

TEST_CASE("tape: max_nodes is a hard limit, and a refused push changes nothing") {
    held_tape h(10);
    for (int k = 0; k < 10; ++k) h.leaf(double(k));
    CHECK(h.t.size() == 10);
    CHECK_THROWS_AS(h.t.push_leaf(op::leaf, 1.0), std::length_error);
    CHECK_THROWS_AS(h.t.reserve_more(1), std::length_error);
    CHECK(h.t.size() == 10);
    for (int k = 0; k < 10; ++k) CHECK(h.val(k) == double(k));
}

// Many held nodes with unreferenced ones between them, so that a tape that compacts has
// something to remove. Whatever it does, every held node keeps its value, op, operands
// (through the relocated indices) and uid, the order stays topological, and gradients
// come out as on a tape that never held garbage.
TEST_CASE("tape: reserve_more and pushes keep held nodes, their operands and uids consistent") {
    held_tape h;
    struct node {
        int handle;
        op o;
        int a, b;  // handles of the operands (leaves: -1)
        double value;
    };
    std::vector<node> kept;
    std::vector<std::pair<std::size_t, std::uint64_t>> uids;  // (kept number, uid)
    auto keep = [&](int handle, op o, int a, int b) {
        kept.push_back({handle, o, a, b, h.val(handle)});
        if (kept.size() % 100 == 1) uids.emplace_back(kept.size() - 1, h.t.uid(h[handle]));
        return handle;
    };
    const int x = keep(h.leaf(0.5), op::leaf, -1, -1);
    const int y = keep(h.leaf(-1.25), op::leaf, -1, -1);
    int acc = x;
    for (int r = 0; r < 3000; ++r) {
        int dead[40];
        for (int k = 0; k < 40; ++k) dead[k] = h.apply(k % 2 ? op::mul : op::add, x, y);
        const op o = r % 3 == 0 ? op::add : r % 3 == 1 ? op::mul : op::sub;
        const int other = r % 2 ? x : y;
        acc = keep(h.apply(o, acc, other), o, acc, other);
        for (int d : dead) h.drop(d);  // garbage below a live node
        if (r % 7 == 6) acc = keep(h.apply(op::tanh, acc), op::tanh, acc, acc);  // stay O(1)
        if (r % 500 == 0) h.t.reserve_more(5000);
    }
    MESSAGE("the tape compacted " << h.relocations << " times");
    CHECK(h.check() == "");

    for (std::size_t k = 0; k < kept.size(); ++k) {
        const node& n = kept[k];
        const tape::index i = h[n.handle];
        REQUIRE(i < h.t.size());
        CHECK(tg_test::same_bits(h.t.val(i), n.value));
        CHECK(h.t.op_at(i) == n.o);
        if (n.a >= 0) {
            CHECK(h.t.arg0(i) == h[n.a]);
            CHECK(h.t.arg1(i) == h[n.b]);
            CHECK(h.t.arg0(i) < i);
        }
        if (k > 0) CHECK(h[kept[k - 1].handle] < i);  // still in push order
    }
    std::set<std::uint64_t> distinct;
    for (const auto& [k, u] : uids) {
        CHECK(h.t.uid(h[kept[k].handle]) == u);
        distinct.insert(u);
    }
    CHECK(distinct.size() == uids.size());
    const std::uint64_t fresh = h.t.uid(h[kept[1].handle]);  // never asked before
    CHECK(distinct.count(fresh) == 0);

    h.t.backward(h[acc]);
    held_tape clean;
    std::vector<int> twin(h.at.size(), -1);
    for (const node& n : kept)
        twin[n.handle] = n.a < 0 ? clean.leaf(n.value) : clean.apply(n.o, twin[n.a], twin[n.b]);
    clean.t.backward(clean[twin[acc]]);
    CHECK(h.val(acc) == clean.val(twin[acc]));
    CHECK(h.adj(x) == clean.adj(twin[x]));
    CHECK(h.adj(y) == clean.adj(twin[y]));
}

TEST_CASE("tape: garbage is counted as it dies, and a recount agrees") {
    held_tape h;
    const int x = h.leaf(2.0), y = h.leaf(3.0);
    const int a = h.apply(op::mul, x, y), b = h.apply(op::sin, a), c = h.apply(op::add, b, x);
    const int top = h.apply(op::neg, x);
    CHECK(h.t.garbage() == 0);
    h.drop(b);  // c still holds b, and b holds a
    CHECK(h.t.garbage() == 0);
    h.drop(a);
    CHECK(h.t.garbage() == 0);
    h.drop(c);  // c, then b, then a: all below `top`
    CHECK(h.t.garbage() == 3);
    CHECK(h.t.size() == 6);
    CHECK(h.check() == "");
    h.drop(top);  // the top goes, and the garbage under it with it
    CHECK(h.t.size() == 2);
    CHECK(h.t.garbage() == 0);
    CHECK(h.check() == "");
}

TEST_CASE("tape: backward visits only the root's own graph") {
    held_tape h;
    const int w = h.leaf(0.5);
    int old = w;
    for (int k = 0; k < 100; ++k) old = h.apply(op::mul, old, w);  // an older graph
    const int f = h.apply(op::add, h.apply(op::mul, w, w), w);
    CHECK(h.t.sweep_start(h[f]) == h[f] - 1);  // w * w, the first op of f's graph
    h.t.backward(h[f]);
    CHECK(h.adj(w) == 2.0);  // 2w + 1
    CHECK(h.adj(old) == 0.0);  // not swept
}

// A thread's new tape starts on the memory of one that was freed (bindings/tapes.cpp).
TEST_CASE("tape: a tape with no nodes hands its arrays to another, within that one's limit") {
    held_tape done;
    std::vector<int> hs;
    int v = done.leaf(0.5);
    hs.push_back(v);
    for (int k = 0; k < 5000; ++k) {
        v = done.apply(op::sin, v);
        hs.push_back(v);
    }
    held_tape busy;
    busy.leaf(1.0);
    CHECK_FALSE(done.t.swap_memory(busy.t));  // both hold nodes
    for (auto it = hs.rbegin(); it != hs.rend(); ++it) done.drop(*it);
    REQUIRE(done.t.size() == 0);
    const tape::index room = done.t.capacity();
    REQUIRE(room >= 5001);

    CHECK_FALSE(busy.t.swap_memory(done.t));  // busy still holds a node
    held_tape small(100);                     // a limit below the capacity on offer
    CHECK_FALSE(small.t.swap_memory(done.t));
    CHECK(done.t.capacity() == room);

    held_tape fresh;
    CHECK(fresh.t.swap_memory(done.t));
    CHECK(fresh.t.capacity() == room);
    CHECK(done.t.size() == 0);
    // The new tape works as any other: values, gradients, a clean recount.
    const int x = fresh.leaf(3.0), y = fresh.leaf(-2.0);
    const int f = fresh.apply(op::mul, fresh.apply(op::add, x, y), x);  // (x + y) x
    fresh.t.backward(fresh[f]);
    CHECK(fresh.val(f) == 3.0);
    CHECK(fresh.t.adj(fresh[x]) == 2 * 3.0 - 2.0);
    CHECK(fresh.t.adj(fresh[y]) == 3.0);
    CHECK(fresh.check().empty());
    // and the one it traded with is a working tape too.
    const int z = done.leaf(2.0);
    CHECK(done.val(done.apply(op::square, z)) == 4.0);
}
