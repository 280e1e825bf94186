// The sweeps against each other: one-point replay against the eager tape (bit for bit),
// the lanes against one point (bit for bit, or within libmvec's bound where an op calls
// libm), threads against one thread, and the Hessian against Hessian-vector products.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "graphs.hpp"
#include "tapegrad/lanes.hpp"
#include "tapegrad/platform.hpp"

using namespace tapegrad;
using namespace tg_test;

namespace {

std::vector<op> exact_ops() {
    std::vector<op> r;
    for (op o : all_ops())
        if (!calls_libm(o)) r.push_back(o);
    return r;
}

// n points of n_in coordinates, row-major: in [-2, 2], some exact zeros and ones.
std::vector<double> random_points(std::mt19937_64& rng, std::size_t n, std::size_t n_in) {
    std::uniform_real_distribution<double> u(-2.0, 2.0);
    std::vector<double> x(n * n_in);
    for (auto& v : x) v = rng() % 16 == 0 ? double(rng() % 2) : u(rng);
    return x;
}

// Element by element: equal bits or both NaN (`exact`), else equal (+0 == -0) or both
// NaN. Reports the first difference only.
void check_same(const std::vector<double>& got, const std::vector<double>& want,
                const std::string& what, bool exact = true) {
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < got.size(); ++k) {
        const bool ok = exact ? same_bits(got[k], want[k])
                              : got[k] == want[k] || (got[k] != got[k] && want[k] != want[k]);
        if (!ok) {
            CAPTURE(what);
            CAPTURE(k);
            CHECK(got[k] == want[k]);
            return;
        }
    }
}

struct point_result {
    std::vector<double> out, grad, tout, hvp;
};

constexpr double junk = std::numeric_limits<double>::quiet_NaN();

// One point through the one-point API: values, the gradient of output 0, and with a
// tangent, the outputs' tangents and the Hessian of output 0 times it. The scratch is
// the caller's and holds junk: no sweep may read what it did not write.
point_result one_point(const program& p, const double* x, const double* tx = nullptr) {
    const std::size_t n = p.n_slots(), m = p.outputs_.size();
    std::vector<double> val(n, junk), adj(n, junk), seed(m, 0.0);
    point_result r;
    p.forward(x, val.data());
    for (slot o : p.outputs_) r.out.push_back(val[o]);
    seed[0] = 1.0;
    r.grad.assign(p.n_inputs, 0.0);
    p.reverse(val.data(), adj.data(), seed.data(), r.grad.data());
    if (tx) {
        std::vector<double> t(n, junk), adjt(n, junk);
        std::fill(t.begin() + p.n_inputs, t.begin() + p.first_op(), 0.0);  // constants
        std::copy(tx, tx + p.n_inputs, t.begin());
        p.tangent(val.data(), t.data());
        for (slot o : p.outputs_) r.tout.push_back(t[o]);
        p.reverse_dual(val.data(), t.data(), adj.data(), adjt.data(), 0);
        r.hvp.assign(adjt.begin(), adjt.begin() + p.n_inputs);
    }
    return r;
}

enum class ask { grad, jvp, hvp, hessian };

struct batch_result {
    std::vector<double> out, grad, tout, hvp, hess;  // per point, row-major
    std::vector<std::size_t> failed;
};

// n points (rows of X, tangents rows of T) through program::run_batch.
batch_result batch(const program& p, const std::vector<double>& X, const std::vector<double>& T,
                   std::size_t n, ask what, int threads = 1) {
    const std::size_t n_in = p.n_inputs, m = p.outputs_.size();
    const auto row_in = std::ptrdiff_t(n_in), row_out = std::ptrdiff_t(m);
    batch_result r;
    r.out.assign(n * m, 0.0);
    program::batch_io io;
    for (std::size_t i = 0; i < n_in; ++i) {
        io.in_base.push_back(X.data() + i);
        io.in_stride.push_back(row_in);
    }
    for (std::size_t k = 0; k < m; ++k) {
        io.out_base.push_back(r.out.data() + k);
        io.out_stride.push_back(row_out);
    }
    if (what == ask::jvp || what == ask::hvp)
        for (std::size_t i = 0; i < n_in; ++i) {
            io.tan_base.push_back(T.data() + i);
            io.tan_stride.push_back(row_in);
        }
    if (what == ask::grad) {
        r.grad.assign(n * n_in, 0.0);
        for (std::size_t i = 0; i < n_in; ++i) {
            io.grad_base.push_back(r.grad.data() + i);
            io.grad_stride.push_back(row_in);
        }
    } else if (what == ask::jvp) {
        r.tout.assign(n * m, 0.0);
        for (std::size_t k = 0; k < m; ++k) {
            io.tout_base.push_back(r.tout.data() + k);
            io.tout_stride.push_back(row_out);
        }
    } else if (what == ask::hvp) {
        r.hvp.assign(n * n_in, 0.0);
        for (std::size_t i = 0; i < n_in; ++i) {
            io.hvp_base.push_back(r.hvp.data() + i);
            io.hvp_stride.push_back(row_in);
        }
    } else {
        r.hess.assign(n * n_in * n_in, 0.0);
        io.hess_base = r.hess.data();
        io.hess_stride = std::ptrdiff_t(n_in * n_in);
    }
    REQUIRE(p.run_batch(io, n, threads, r.failed, [] { return false; }));
    return r;
}

// The rows of the one-point results, concatenated like a batch's.
struct rows {
    std::vector<double> out, grad, tout, hvp;
    void add(const point_result& r) {
        out.insert(out.end(), r.out.begin(), r.out.end());
        grad.insert(grad.end(), r.grad.begin(), r.grad.end());
        tout.insert(tout.end(), r.tout.begin(), r.tout.end());
        hvp.insert(hvp.end(), r.hvp.begin(), r.hvp.end());
    }
};

}  // namespace

TEST_CASE("one-point replay equals the eager tape bit for bit (random graphs, every op)") {
    std::mt19937_64 rng(1);
    for (int g = 0; g < 60; ++g) {
        CAPTURE(g);
        const expr e = random_expr(rng, all_ops(), 3, 30, 2);
        const auto X = random_points(rng, 6, 3);
        const program plain = compile_expr(e, X.data(), false);
        const program merged = compile_expr(e, X.data(), true);
        for (std::size_t k = 0; k < 6; ++k) {
            const double* x = X.data() + 3 * k;
            const eager_result want = eager(e, x);
            const point_result got = one_point(plain, x);
            check_same(got.out, want.out, "values");
            check_same(got.grad, want.grad, "gradient");
            // CSE may sum a merged node's adjoints in another order: values only.
            check_same(one_point(merged, x).out, want.out, "values with CSE");
        }
    }
}

TEST_CASE("a zero adjoint is skipped in replay and lanes as on the tape") {
    // where(c, sqrt(x), .) with c = 0, at x = 0: the rule of sqrt would give 0 * inf.
    expr e;
    e.n_inputs = 1;
    e.consts = {0.0};
    e.ops = {{op::sqrt, 0, 0}, {op::if_true, 1, 2}};
    e.outputs = {3};
    const std::vector<double> X(20, 0.0);
    const program p = compile_expr(e, X.data(), false);
    CHECK(eager(e, X.data()).grad[0] == 0.0);
    CHECK(one_point(p, X.data()).grad[0] == 0.0);
    for (double g : batch(p, X, {}, X.size(), ask::grad).grad) CHECK(g == 0.0);
}

TEST_CASE("lanes equal one point bit for bit on ops that call no libm") {
    std::mt19937_64 rng(2);
    const std::size_t n = 37;  // more than one lane, not a multiple of 8
    for (int g = 0; g < 60; ++g) {
        CAPTURE(g);
        const expr e = random_expr(rng, exact_ops(), 3, 30, 2);
        const auto X = random_points(rng, n, 3);
        const program p = compile_expr(e, X.data(), g % 2 == 0);
        rows want;
        for (std::size_t k = 0; k < n; ++k) want.add(one_point(p, X.data() + 3 * k));
        const batch_result got = batch(p, X, {}, n, ask::grad);
        CHECK(got.failed.empty());
        check_same(got.out, want.out, "values");
        check_same(got.grad, want.grad, "gradient");
    }
}

TEST_CASE("each lane kernel set equals one point (both sets this CPU runs)") {
    std::vector<const lanes::kernels*> sets{&lanes::baseline::set};
#ifdef TG_HAVE_AVX2
    if (platform::cpu_has_avx2()) sets.push_back(&lanes::avx2::set);
#endif
    std::mt19937_64 rng(3);
    const std::size_t B = 16, L = 13;
    for (const lanes::kernels* k : sets) {
        const std::string name = k->name;
        CAPTURE(name);
        for (int g = 0; g < 30; ++g) {
            const expr e = random_expr(rng, exact_ops(), 3, 30, 1);
            const auto X = random_points(rng, L, 3);
            const program p = compile_expr(e, X.data(), true);
            const program_view view = p.view();
            std::vector<double> v(B * view.n_slots, junk), adj(B * view.n_slots, junk);
            for (std::size_t l = 0; l < L; ++l)
                for (slot s = 0; s < view.first_op; ++s)
                    v[s * B + l] = s < view.n_inputs ? X[3 * l + s] : p.init_[s];
            k->forward(view, v.data(), B, L);
            // As run_block: first contributions are stores, so only the output (which
            // adds to its seed) and slots no op reads are cleared.
            std::vector<bool> read(view.n_slots, false);
            for (slot s = view.first_op; s < view.n_slots; ++s)
                read[view.a[s]] = read[view.b[s]] = true;
            for (slot s = 0; s < view.n_slots; ++s)
                if (!read[s] || s == p.outputs_[0]) std::fill_n(adj.begin() + s * B, L, 0.0);
            for (std::size_t l = 0; l < L; ++l) adj[p.outputs_[0] * B + l] = 1.0;
            k->reverse(view, v.data(), adj.data(), B, L);
            rows want, got;
            for (std::size_t l = 0; l < L; ++l) {
                want.add(one_point(p, X.data() + 3 * l));
                got.out.push_back(v[p.outputs_[0] * B + l]);
                for (slot i = 0; i < view.n_inputs; ++i) got.grad.push_back(adj[i * B + l] + 0.0);
            }
            check_same(got.out, want.out, "values");
            check_same(got.grad, want.grad, "gradient");
        }
    }
}

TEST_CASE("lanes equal one point within libmvec's bound on ops that call libm") {
    // libmvec is within 4 ulp of scalar libm per call; one op's value or rule holds at
    // most two such calls and a few exact roundings, so rel 1e-13 with room, and an
    // absolute floor of 4e-15 for rules like 1 - out * out where |out| <= 1.
    std::mt19937_64 rng(4);
    const std::size_t n = 64;
    for (op o : all_ops()) {
        if (!calls_libm(o)) continue;
        const std::string name = op_table[int(o)].name;
        CAPTURE(name);
        expr e;
        e.n_inputs = 2;
        e.ops = {{o, 0, op_table[int(o)].arity == 2 ? 1 : 0}};
        e.outputs = {2};
        std::uniform_real_distribution<double> u(0.1, 1.4);  // pow, log: x > 0; tan: no pole
        std::vector<double> X(2 * n);
        for (auto& x : X) x = u(rng);
        const program p = compile_expr(e, X.data(), false);
        const batch_result got = batch(p, X, {}, n, ask::grad);
        for (std::size_t k = 0; k < n; ++k) {
            const point_result want = one_point(p, X.data() + 2 * k);
            auto close = [](double a, double b) {  // (0.1, 1.4) leaves asin's domain: NaN
                if (a != a || b != b || std::isinf(a) || std::isinf(b)) {
                    CHECK_MESSAGE(((a != a && b != b) || a == b), a << " vs " << b);
                    return;
                }
                CHECK_MESSAGE(std::fabs(a - b) <= std::max(1e-13 * std::fabs(b), 4e-15),
                              a << " vs " << b);
            };
            close(got.out[k], want.out[0]);
            close(got.grad[2 * k], want.grad[0]);
            close(got.grad[2 * k + 1], want.grad[1]);
        }
    }
}

TEST_CASE("lanes equal one point in forward mode and forward-over-reverse") {
    // Binary ops on two distinct nodes: with one node twice (x * x) the lanes add the two
    // rules' adjoint tangents before adding them in, the one-point sweep one by one.
    std::mt19937_64 rng(5);
    const std::size_t n = 21;
    for (int g = 0; g < 40; ++g) {
        CAPTURE(g);
        const expr e = random_expr(rng, exact_ops(), 3, 25, 2, /*distinct=*/true);
        const auto X = random_points(rng, n, 3), T = random_points(rng, n, 3);
        const program p = compile_expr(e, X.data(), true);
        rows want;
        for (std::size_t k = 0; k < n; ++k)
            want.add(one_point(p, X.data() + 3 * k, T.data() + 3 * k));
        check_same(batch(p, X, T, n, ask::jvp).tout, want.tout, "tangents");
        check_same(batch(p, X, T, n, ask::hvp).hvp, want.hvp, "Hessian-vector product", false);
    }
}

TEST_CASE("the Hessian equals Hessian-vector products with unit vectors") {
    // The Hessian's columns skip contributions that are exact zeros, so where a product
    // meets 0 * inf the Hessian is finite and the plain product NaN: compare elsewhere.
    std::mt19937_64 rng(6);
    const std::size_t n = 11, n_in = 3;
    for (int g = 0; g < 40; ++g) {
        CAPTURE(g);
        const expr e = random_expr(rng, exact_ops(), int(n_in), 25, 1, /*distinct=*/true);
        const auto X = random_points(rng, n, n_in);
        const program p = compile_expr(e, X.data(), true);
        const batch_result got = batch(p, X, {}, n, ask::hessian);
        for (std::size_t k = 0; k < n; ++k)
            for (std::size_t j = 0; j < n_in; ++j) {
                double unit[n_in] = {};
                unit[j] = 1.0;
                const point_result col = one_point(p, X.data() + n_in * k, unit);
                for (std::size_t i = 0; i < n_in; ++i) {
                    const double h = got.hess[k * n_in * n_in + i * n_in + j];
                    if (col.hvp[i] == col.hvp[i]) CHECK(h == col.hvp[i]);
                }
            }
    }
}

TEST_CASE("a batch on two threads equals one thread bit for bit") {
    std::mt19937_64 rng(7);
    const expr e = random_expr(rng, all_ops(), 3, 40, 2);
    const std::size_t n = 5000;  // enough work for the batch driver to start a thread
    const auto X = random_points(rng, n, 3);
    const program p = compile_expr(e, X.data(), true);
    const batch_result one = batch(p, X, {}, n, ask::grad, 1);
    const batch_result two = batch(p, X, {}, n, ask::grad, 2);
    check_same(two.out, one.out, "values");
    check_same(two.grad, one.grad, "gradient");
}

TEST_CASE("a batch lists the points whose guards fail and gives them NaN") {
    held_tape h;
    const int x = h.leaf(1.0), y = h.leaf(2.0);
    const int f = h.apply(op::mul, x, y);
    const std::vector<recorded_guard> guards{
        {cmp::lt, {true, h[x], 0}, {true, h[y], 0}, true, "here:1"}};
    const program p = compile(h.t, {h[x], h[y]}, {h[f]}, guards, true);
    const std::vector<double> X{1, 2, 3, 2, 0, 5, 7, 7, -1, 0};
    const batch_result r = batch(p, X, {}, 5, ask::grad);
    CHECK(r.failed == std::vector<std::size_t>{1, 3});
    for (std::size_t k : {0, 2, 4}) {
        CHECK(r.out[k] == X[2 * k] * X[2 * k + 1]);
        CHECK(r.grad[2 * k] == X[2 * k + 1]);
    }
    for (std::size_t k : {1, 3}) {
        CHECK(std::isnan(r.out[k]));
        CHECK(std::isnan(r.grad[2 * k]));
    }
}
