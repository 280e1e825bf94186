// native_source() and native_code: the generated text for a program laid out by hand,
// the digest that ties a library to its program, and a load that fails cleanly. (That the
// generated code computes what the interpreter does is tests/test_compile.py's job: it
// needs a compiler at run time.)
#include <doctest/doctest.h>

#include <initializer_list>
#include <stdexcept>
#include <string>

#include "tapegrad/codegen.hpp"
#include "tapegrad/codegen_batch.hpp"
#include "tapegrad/program.hpp"

using namespace tapegrad;

namespace {

// A program laid out by hand: its inputs, then its constants, then the ops push() appends.
struct by_hand {
    program p;
    by_hand(slot n_inputs, std::initializer_list<double> constants) {
        p.n_inputs = n_inputs;
        p.set_first_op(n_inputs + slot(constants.size()));
        p.op_.assign(n_inputs, op::leaf);
        p.init_.assign(n_inputs, 0.0);
        for (const double c : constants) {
            p.op_.push_back(op::constant);
            p.init_.push_back(c);
        }
        p.a_.assign(p.first_op(), 0);
        p.b_.assign(p.first_op(), 0);
    }
    slot push(op o, slot x, slot y) {
        p.op_.push_back(o);
        p.a_.push_back(x);
        p.b_.push_back(y);
        return slot(p.op_.size() - 1);
    }
    program done(slot output) {
        p.outputs_ = {output};
        p.finish();
        return std::move(p);
    }
};

// s = c * s + x[i] * x[i + 1] for i < n; s starts as input 0, x[i] is input 1 + i.
program dot_loop(slot n, double c) {
    by_hand h(n + 2, {c});
    slot s = 0;
    for (slot i = 0; i < n; ++i) {
        const slot m = h.push(op::mul, 1 + i, 2 + i);
        s = h.push(op::add, h.push(op::mul, n + 2, s), m);
    }
    return h.done(s);
}

// s = s + sin(x[i]) * x[i + 1] for i < n, and s (or s * s, squared): s starts as input 0,
// x[i] is input 1 + i. The products' rules read the sines; no rule reads a running sum or
// a product, unless the output is squared: then its rule reads the last sum, which needs
// them all.
program sum_loop(slot n, bool squared) {
    by_hand h(n + 2, {});
    slot s = 0;
    for (slot i = 0; i < n; ++i)
        s = h.push(op::add, s, h.push(op::mul, h.push(op::sin, 1 + i, 0), 2 + i));
    return h.done(squared ? h.push(op::mul, s, s) : s);
}

// The text of generated function `name`, up to the next one.
std::string function_text(const std::string& src, const std::string& name) {
    const std::size_t at = src.find(name);
    REQUIRE(at != std::string::npos);
    return src.substr(at, src.find("\nTG_NATIVE", at) - at);
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        ++n;
    return n;
}

}  // namespace

TEST_CASE("a run becomes one loop each way, the rest straight-line calls") {
    const program p = dot_loop(50, 0.5);
    codegen_stats st;
    const std::string src = native_source(p, &st);
    CHECK(st.loops == 1);
    CHECK(st.looped_ops + st.straight_ops == p.n_slots() - p.first_op());
    CHECK(st.straight_ops < 10);
    CHECK(count(src, "for (std::int64_t k") == 2);
    // tg_digest, tg_forward, tg_forward_gradient, tg_reverse, tg_reverse_gradient
    CHECK(count(src, "TG_NATIVE_EXPORT") == 5);
    CHECK(src.find("K::mul::forward") != std::string::npos);
    CHECK(src.find("0x3fe0000000000000ull") != std::string::npos);  // 0.5, bit for bit
}

TEST_CASE("the digest follows everything the sweeps read") {
    const std::uint64_t d = program_digest(dot_loop(10, 0.5));
    CHECK(program_digest(dot_loop(10, 0.5)) == d);
    CHECK(program_digest(dot_loop(10, -0.5)) != d);
    CHECK(program_digest(dot_loop(11, 0.5)) != d);
    program p = dot_loop(10, 0.5);
    p.outputs_.push_back(0);
    CHECK(program_digest(p) != d);
}

TEST_CASE("a library that is missing does not load") {
    const program p = dot_loop(3, 1.0);
    CHECK_THROWS_AS(native_code("/nonexistent/tg.so", p), std::runtime_error);
}

TEST_CASE("a gradient's sweeps leave out what no rule reads") {
    const std::string src = native_source(sum_loop(40, false));
    // the gradient's forward runs no loop: the reverse loop computes the sines again
    // (not the products), and only the plain forward computes the sum
    CHECK(function_text(src, "void tg_forward(").find("fw_") != std::string::npos);
    const std::string forward = function_text(src, "void tg_forward_gradient(");
    CHECK(forward.find("fw_") == std::string::npos);
    CHECK(forward.find("fg_") == std::string::npos);
    const std::string rg = function_text(src, "TG_NATIVE_LOOP rg_");
    CHECK(rg.find("K::sin::forward") != std::string::npos);
    CHECK(rg.find("K::mul::forward") == std::string::npos);
    CHECK(function_text(src, "void tg_reverse_gradient(").find("rg_") != std::string::npos);
    CHECK(function_text(src, "void tg_reverse(").find("rg_") == std::string::npos);
    CHECK(function_text(src, "void tg_reverse_gradient(").find("grad[i] = A[i] + 0.0;") !=
          std::string::npos);
    CHECK(function_text(src, "void tg_reverse(").find("grad[i] += A[i];") != std::string::npos);

    // squared, the last sum is read, and with it every term: the gradient's forward runs
    // the whole loop, and no reverse loop computes anything again
    const std::string all = native_source(sum_loop(40, true));
    CHECK(function_text(all, "TG_NATIVE_LOOP fg_").find("K::mul::forward") != std::string::npos);
    CHECK(all.find("TG_NATIVE_LOOP rg_") == std::string::npos);
}

TEST_CASE("batch code: one simd loop over the points, none for a program too large") {
    std::string why;
    const std::string src = native_batch_source(sum_loop(10, true), "baseline", &why);
    CHECK(why.empty());
    for (const char* name : {"tg_batch_value", "tg_batch_grad", "tg_batch_digest", "tg_batch_isa",
                             "tg_batch_init", "omp simd"})
        CHECK_MESSAGE(src.find(name) != std::string::npos, name);
    const program big = sum_loop(slot(native_batch_max_ops), true);
    CHECK(native_batch_source(big, "baseline", &why).empty());
    CHECK(why.find("ops") != std::string::npos);
}
