// Test helpers: a tape held the way the bindings hold it, and expression graphs that can
// be built eagerly at any point and compiled into a program.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tapegrad/program.hpp"
#include "tapegrad/tape.hpp"
#include "tapegrad/vector_math.hpp"

namespace tg_test {

using namespace tapegrad;

// Append op o over nodes a and b (b is ignored by unary ops), by the table's kernel.
inline tape::index push_op(tape& t, op o, tape::index a, tape::index b) {
    switch (o) {
#define TG_OP(name, arity, ...)                \
    case op::name:                             \
        if constexpr (arity == 2)              \
            return t.push<kernel::name>(a, b); \
        else                                   \
            return t.push<kernel::name>(a);
#include "tapegrad/ops.def"
#undef TG_OP
        default: throw std::logic_error("push_op: not an op");
    }
}

// A tape whose nodes are held through handles, as live Vars hold theirs: each handle
// retains its node, and the relocator keeps the handles right when the tape compacts.
// Whether and when it compacts is the tape's business; these tests never rely on it.
struct held_tape : relocator {
    tape t;
    std::vector<tape::index> at;  // handle -> the node's current index
    std::vector<bool> alive;      // handle -> still holding its node
    int relocations = 0;

    explicit held_tape(std::uint64_t max_nodes = tape::hard_max_nodes) : t(max_nodes) {
        t.set_relocator(this);
    }
    ~held_tape() override { t.set_relocator(nullptr); }
    held_tape(const held_tape&) = delete;
    held_tape& operator=(const held_tape&) = delete;

    void relocate(const std::uint32_t* new_index) override {
        for (std::size_t h = 0; h < at.size(); ++h)
            if (alive[h]) at[h] = new_index[at[h]];
        ++relocations;
    }
    int hold(tape::index i) {
        t.retain(i);
        at.push_back(i);
        alive.push_back(true);
        return int(at.size()) - 1;
    }
    // The handle lets go of its node, as a Var dying: the node (and what only it held)
    // becomes garbage unless something else holds it.
    void drop(int h) {
        alive[h] = false;
        t.release(at[h]);
    }
    // tape::check against the handles alive: an empty string when the counts agree.
    std::string check() const {
        std::vector<std::uint32_t> hosts(t.size());
        for (std::size_t h = 0; h < at.size(); ++h)
            if (alive[h]) ++hosts.at(at[h]);
        return t.check(hosts.data());
    }
    int leaf(double v) { return hold(t.push_leaf(op::leaf, v)); }
    int constant(double v) { return hold(t.push_leaf(op::constant, v)); }
    // Indices are read after reserve_more, which may compact (tape.hpp).
    tape::index push(op o, int a, int b) {
        t.reserve_more(1);
        return push_op(t, o, at[a], at[b]);
    }
    int apply(op o, int a, int b) { return hold(push(o, a, b)); }
    int apply(op o, int a) { return apply(o, a, a); }
    tape::index operator[](int h) const { return at[h]; }
    double val(int h) const { return t.val(at[h]); }
    double adj(int h) const { return t.adj(at[h]); }
};

// An expression graph: inputs, then constants, then ops over earlier nodes.
struct expr {
    struct node {
        op o;
        int a, b;
    };
    int n_inputs = 0;
    std::vector<double> consts;
    std::vector<node> ops;
    std::vector<int> outputs;  // node numbers (inputs first, then constants, then ops)
    int n_nodes() const { return n_inputs + int(consts.size() + ops.size()); }
};

// The graph built eagerly at x, node k of e held by handle k.
inline void build(held_tape& h, const expr& e, const double* x) {
    for (int i = 0; i < e.n_inputs; ++i) h.leaf(x[i]);
    for (double c : e.consts) h.constant(c);
    for (const auto& n : e.ops) h.apply(n.o, n.a, n.b);
}

inline std::vector<tape::index> indices(const held_tape& h, int from, int to) {
    std::vector<tape::index> r;
    for (int k = from; k < to; ++k) r.push_back(h[k]);
    return r;
}

// The program of e, compiled from a tape built at x.
inline program compile_expr(const expr& e, const double* x, bool cse) {
    held_tape h;
    build(h, e, x);
    std::vector<tape::index> outs;
    for (int k : e.outputs) outs.push_back(h[k]);
    return compile(h.t, indices(h, 0, e.n_inputs), outs, {}, cse);
}

// Eager values of e's outputs at x and the gradient of output 0 (Var.backward()).
struct eager_result {
    std::vector<double> out, grad;
};
inline eager_result eager(const expr& e, const double* x) {
    held_tape h;
    build(h, e, x);
    eager_result r;
    for (int k : e.outputs) r.out.push_back(h.val(k));
    h.t.backward(h[e.outputs[0]]);
    for (int i = 0; i < e.n_inputs; ++i) r.grad.push_back(h.adj(i));
    return r;
}

// A random graph over `ops` with shared operands (recent nodes are likelier), as the
// Python suite's differential tests draw them. `distinct`: no binary op takes one node
// twice.
inline expr random_expr(std::mt19937_64& rng, const std::vector<op>& ops, int n_inputs, int n_ops,
                        int n_outputs, bool distinct = false) {
    expr e;
    e.n_inputs = n_inputs;
    e.consts = {0.5, -2.0, 3.0};
    auto pick = [&](int below) {
        std::uniform_int_distribution<int> recent(std::max(0, below - 4), below - 1),
            any(0, below - 1);
        return rng() % 2 ? recent(rng) : any(rng);
    };
    for (int k = 0; k < n_ops; ++k) {
        const int below = e.n_nodes();
        const op o = ops[rng() % ops.size()];
        const int a = pick(below);
        int b = pick(below);
        if (op_table[int(o)].arity == 1)
            b = a;
        else if (distinct && b == a)
            b = a == 0 ? 1 : a - 1;
        e.ops.push_back({o, a, b});
    }
    for (int k = 0; k < n_outputs; ++k) e.outputs.push_back(e.n_nodes() - 1 - 2 * k);
    return e;
}

// Equal bits, or both NaN (a NaN's payload is not part of any contract).
inline bool same_bits(double a, double b) {
    if (a != a && b != b) return true;
    std::uint64_t x, y;
    std::memcpy(&x, &a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x == y;
}

// Whether C++ text from ops.def calls a function the lanes take from glibc's libmvec in
// this process (a row of vector_math.def found at load time), or math::sigmoid, which
// calls exp. Without libmvec (or with TAPEGRAD_LIBMVEC=0) that is none: the lanes call
// scalar libm, as one point does.
inline bool names_libmvec(const std::string& text) {
    for (const auto& f : tapegrad::vector_math::functions()) {
        if (!f.from_libmvec) continue;
        const std::string name = f.name;
        for (const std::string& fn : name == "exp" ? std::vector<std::string>{name, "sigmoid"}
                                                   : std::vector<std::string>{name})
            for (const char* ns : {"std::", "math::"})
                if (text.find(ns + fn + "(") != std::string::npos) return true;
    }
    return false;
}

// The ops whose kernels call libm from libmvec in the lanes (<= 4 ulp). Read
// off the op table's own text, so a new op is classified without a list here.
inline bool calls_libm(op o) {
    switch (o) {
#define TG_OP(name, arity, fwd, dx, dy, tangent)                                  \
    case op::name:                                                                \
        return names_libmvec(#fwd) || names_libmvec(#dx) || names_libmvec(#dy) || \
               names_libmvec(#tangent);
#include "tapegrad/ops.def"
#undef TG_OP
        default: return false;
    }
}

inline std::vector<op> all_ops() {
    std::vector<op> r;
#define TG_OP(name, ...) r.push_back(op::name);
#include "tapegrad/ops.def"
#undef TG_OP
    return r;
}

}  // namespace tg_test
