#include "tapegrad/hessian_program.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace tapegrad {

namespace symbolic {

// A value being recorded: node `id` (a slot of the function's program below n_orig, a new
// node above), or a number.
struct sym {
    double v = 0.0;
    std::uint32_t id = 0;
    bool node = false;
    sym() = default;
    sym(double value) : v(value) {}  // NOLINT: numbers mix into rules implicitly
};

// fwd::dual on recorded values: the same operations in the same order.
struct sdual {
    sym v, d;
    sdual() = default;
    sdual(double value) : v(value), d(0.0) {}  // NOLINT
    sdual(const sym& value, const sym& tangent) : v(value), d(tangent) {}
};

namespace {

constexpr std::uint32_t const_bit = 1u << 31;

struct node_key {
    op o;
    std::uint32_t a, b;
    bool operator==(const node_key& k) const { return o == k.o && a == k.a && b == k.b; }
};
struct node_hash {
    std::size_t operator()(const node_key& k) const {
        // splitmix64's finalizer: every bit of a, b and o reaches the low bits
        std::uint64_t h = (std::uint64_t(k.a) << 32 | k.b) ^ std::uint64_t(k.o) << 56;
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
        return std::size_t(h ^ (h >> 31));
    }
};
struct guard_key {
    cmp c;
    std::uint32_t a, b;
    bool operator==(const guard_key& k) const { return c == k.c && a == k.a && b == k.b; }
};
struct guard_hash {
    std::size_t operator()(const guard_key& k) const {
        return node_hash{}(node_key{op(k.c), k.a, k.b});
    }
};

// The recording: new nodes (ids n_orig + k), numbers (ids const_bit | k), guards, and the
// nodes a fold multiplied by 0 (their values must be checked finite).
struct builder {
    std::uint32_t n_orig = 0;
    std::vector<op> ops;
    std::vector<std::uint32_t> a, b;
    std::vector<double> consts;
    std::unordered_map<std::uint64_t, std::uint32_t> const_ids;  // by bit pattern
    // CSE: per id, the newest new node whose newest operand it is (~0u: none), and per
    // new node the previous one of that list.
    std::vector<std::uint32_t> head, next;
    std::vector<std::pair<cmp, std::pair<std::uint32_t, std::uint32_t>>> guards;
    std::vector<bool> outcomes;
    std::unordered_set<guard_key, guard_hash> seen_guards;
    std::vector<std::uint32_t> checks;
};
thread_local builder* rec = nullptr;

std::uint32_t id_of(const sym& s) {
    if (s.node) return s.id;
    std::uint64_t bits;
    std::memcpy(&bits, &s.v, sizeof bits);
    const auto [it, fresh] = rec->const_ids.try_emplace(bits, std::uint32_t(rec->consts.size()));
    if (fresh) rec->consts.push_back(s.v);
    return const_bit | it->second;
}

// The new node (o, a, b): an existing one, or appended. Nodes are listed by their newest
// operand (each list holds that value's users so far, a few), so recording, which goes
// through the slots in order, looks in memory near where it has just been: a hash table's
// random probes were cache and TLB misses, half of recording's time. A list past
// max_walk nodes is not searched further (that node is then not shared).
std::uint32_t intern(op o, std::uint32_t a, std::uint32_t b) {
    builder& r = *rec;
    const std::uint32_t m = std::max(a & const_bit ? 0 : a, b & const_bit ? 0 : b);
    constexpr int max_walk = 64;
    int walked = 0;
    for (std::uint32_t k = r.head[m]; k != ~0u && walked < max_walk; k = r.next[k], ++walked)
        if (r.ops[k] == o && r.a[k] == a && r.b[k] == b) return k;
    const std::uint32_t k = std::uint32_t(r.ops.size());
    r.ops.push_back(o);
    r.a.push_back(a);
    r.b.push_back(b);
    r.next.push_back(r.head[m]);
    r.head[m] = k;
    r.head.push_back(~0u);  // the new node's own users
    return k;
}

bool is_number(const sym& s, double v) { return !s.node && s.v == v; }
bool is_zero(const sym& s) { return !s.node && s.v == 0.0; }

sym zero_times(const sym& x) {  // x * 0 or 0 * x, x a node: 0 where x is finite
    rec->checks.push_back(x.id);
    return sym(0.0);
}

// y where x is a new node -y, else a number.
sym negated(const sym& x) {
    if (!x.node || x.id < rec->n_orig) return sym(0.0);
    const std::uint32_t k = x.id - rec->n_orig;
    if (rec->ops[k] != op::neg || rec->a[k] & const_bit) return sym(0.0);
    sym r(-x.v);
    r.id = rec->a[k];
    r.node = true;
    return r;
}

template <class K>
sym apply(const sym& x, const sym& y);

template <class K>
sym apply(const sym& x, const sym& y) {
    if (!x.node && !y.node) return sym(K::forward(x.v, y.v));
    if constexpr (K::code == op::mul) {
        if (is_number(y, 1.0)) return x;
        if (is_number(x, 1.0)) return y;
        if (is_zero(y)) return zero_times(x);
        if (is_zero(x)) return zero_times(y);
        // -y * c is y * -c: rounding is symmetric in sign
        if (const sym nx = negated(x); nx.node && !y.node) return apply<kernel::mul>(nx, -y.v);
        if (const sym ny = negated(y); ny.node && !x.node) return apply<kernel::mul>(-x.v, ny);
    } else if constexpr (K::code == op::add) {
        if (is_zero(y)) return x;
        if (is_zero(x)) return y;
        // x + -y is x - y, the same IEEE operation (so is -y + x, addition commuting)
        if (const sym ny = negated(y); ny.node) return apply<kernel::sub>(x, ny);
        if (const sym nx = negated(x); nx.node) return apply<kernel::sub>(y, nx);
    } else if constexpr (K::code == op::sub) {
        if (is_zero(y)) return x;
        if (const sym ny = negated(y); ny.node) return apply<kernel::add>(x, ny);
    } else if constexpr (K::code == op::div) {
        if (is_number(y, 1.0)) return x;
    }
    if constexpr (K::code == op::neg)
        if (const sym nx = negated(x); nx.node) return nx;  // -(-y) is y
    const std::uint32_t ia = id_of(x), ib = K::arity == 1 ? ia : id_of(y);
    sym r(K::forward(x.v, y.v));
    r.id = rec->n_orig + intern(K::code, ia, ib);
    r.node = true;
    return r;
}

bool observed(const sym& x, const sym& y, cmp c) {
    const bool outcome = compare(c, x.v, y.v);
    if (x.node || y.node) {
        const std::uint32_t ia = id_of(x), ib = id_of(y);
        if (rec->seen_guards.insert(guard_key{c, ia, ib}).second) {
            rec->guards.push_back({c, {ia, ib}});
            rec->outcomes.push_back(outcome);
        }
    }
    return outcome;
}

}  // namespace

TG_RECORDING_OPERATORS(sym)
TG_DUAL_ARITHMETIC(, sdual, sym)  // fwd::dual's arithmetic, overload for overload

namespace {

// The table's tangent column on recorded values. Linear and select rows: their own
// expression; PARTIALS rows: dx(g = tx) + dy(g = ty), a term skipped where its tangent is
// a structural 0 (hessian_block skips it where the tangent is 0).
#define PARTIALS T(0.0)
#define TG_OP(name, ar, fwd_, dx_, dy_, t_)                                                     \
    template <class T>                                                                          \
    T linear_tangent_##name([[maybe_unused]] T x, [[maybe_unused]] T y, [[maybe_unused]] T out, \
                            [[maybe_unused]] T tx, [[maybe_unused]] T ty) {                     \
        return t_;                                                                              \
    }
#include "tapegrad/ops.def"
#undef TG_OP
#undef PARTIALS

template <class K>
sym tangent(const sym& x, const sym& y, const sym& out, const sym& tx, const sym& ty);
#define TG_OP(name, ...)                                                                        \
    template <>                                                                                 \
    sym tangent<kernel::name>(const sym& x, const sym& y, const sym& out, const sym& tx,        \
                              const sym& ty) {                                                  \
        using K = kernel::name;                                                                 \
        if constexpr (K::linear) {                                                              \
            return linear_tangent_##name<sym>(x, y, out, tx, ty);                               \
        } else {                                                                                \
            const sym r = is_zero(tx) ? sym(0.0) : K::dx<sym>(x, y, out, tx);                   \
            const sym s = K::arity == 2 && !is_zero(ty) ? K::dy<sym>(x, y, out, ty) : sym(0.0); \
            return r + s;                                                                       \
        }                                                                                       \
    }
#include "tapegrad/ops.def"
#undef TG_OP

}  // namespace
}  // namespace symbolic

namespace math {
using symbolic::sdual;
using symbolic::sym;
#define TG_MATH_UNARY(name)                                                     \
    sym name(const sym& x) { return symbolic::apply<kernel::name>(x, x); }      \
    sdual name(const sdual& x) {                                                \
        const sym out = symbolic::apply<kernel::name>(x.v, x.v);                \
        return {out, symbolic::tangent<kernel::name>(x.v, 0.0, out, x.d, 0.0)}; \
    }
#define TG_MATH_BINARY(name)                                                             \
    sym name(const sym& x, const sym& y) { return symbolic::apply<kernel::name>(x, y); } \
    sdual name(const sdual& x, const sdual& y) {                                         \
        const sym out = symbolic::apply<kernel::name>(x.v, y.v);                         \
        return {out, symbolic::tangent<kernel::name>(x.v, y.v, out, x.d, y.d)};          \
    }
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY

template <class F>
sym value_only(double v, const sym& /*like*/, F&&) {
    return sym(v);
}
template <class F>
sym value_only(const sym& v, const sym& /*like*/, F&&) {
    return v;
}
template <class F>
sdual value_only(double v, const sdual& /*like*/, F&& full) {
    return {sym(v), full().d};
}
template <class F>
sdual value_only(const sdual& v, const sdual& /*like*/, F&& full) {
    return {v.v, full().d};
}
}  // namespace math

using symbolic::sdual;
using symbolic::sym;

namespace {

// Lays each run of q whose block ops read nothing of an earlier iteration out block op by
// block op (slot start + j * count + k for block op j of iteration k, which was
// start + k * period + j): a block op then reads its own iteration's earlier block ops
// at unit stride and writes consecutive slots, so its loop is an elementwise one. The same
// operations on the same operands, in another topological order. True if q changed (its
// runs and codes are then stale).
bool transpose_runs(program& q, const std::vector<run>& runs) {
    std::vector<slot> to;
    for (const run& r : runs) {
        if (r.period < 2) continue;
        bool carried = false;
        for (slot j = 0; j < r.period; ++j)
            carried |= r.a[j].kind == operand_kind::carried || r.b[j].kind == operand_kind::carried;
        if (carried) continue;
        if (to.empty()) {
            to.resize(q.n_slots());
            for (slot s = 0; s < q.n_slots(); ++s) to[s] = s;
        }
        for (slot k = 0; k < r.count; ++k)
            for (slot j = 0; j < r.period; ++j)
                to[r.start + k * r.period + j] = r.start + j * r.count + k;
    }
    if (to.empty()) return false;
    std::vector<op> ops(q.n_slots());
    std::vector<slot> a(q.n_slots()), b(q.n_slots());
    for (slot s = 0; s < q.n_slots(); ++s) {
        const bool moves = s >= q.first_op();
        ops[to[s]] = q.op_[s];
        a[to[s]] = moves ? to[q.a_[s]] : q.a_[s];
        b[to[s]] = moves ? to[q.b_[s]] : q.b_[s];
    }
    q.op_ = std::move(ops);
    q.a_ = std::move(a);
    q.b_ = std::move(b);
    for (slot& s : q.outputs_) s = to[s];
    for (guard& g : q.guards_) g.lhs = to[g.lhs], g.rhs = to[g.rhs];
    return true;
}

}  // namespace

std::unique_ptr<recorded_hessian> record_hessian(const program& p, const hessian_plan& plan,
                                                 const std::vector<std::pair<slot, slot>>& entries,
                                                 const double* x, std::size_t max_ops) {
    const program_view pv = p.view();
    const slot n = p.n_slots(), first = p.first_op(), n_in = p.n_inputs;
    const consts_in_range is_const = pv.consts();
    const std::size_t n_cols = plan.groups.empty() ? n_in : plan.groups.size();
    std::vector<double> val(n);
    p.forward(x, val.data());
    symbolic::builder bld;
    bld.n_orig = n;
    bld.head.assign(n, ~0u);
    bld.head.reserve(3 * std::size_t(n));
    bld.ops.reserve(2 * std::size_t(n));
    bld.a.reserve(2 * std::size_t(n));
    bld.b.reserve(2 * std::size_t(n));
    bld.next.reserve(2 * std::size_t(n));
    struct restore {
        symbolic::builder* saved = symbolic::rec;
        ~restore() { symbolic::rec = saved; }
    } restored;
    symbolic::rec = &bld;
    // The function's slots: constants as numbers (they fold), the rest as nodes.
    const auto orig = [&](slot s) {
        sym r(val[s]);
        if (!is_const(s)) {
            r.id = s;
            r.node = true;
        }
        return r;
    };
    const slot root = p.outputs_.at(0);
    // The adjoints, as program::adjoints computes them (adj[a] += d, newest first).
    std::vector<sym> adj(n, sym(0.0));
    adj[root] = sym(1.0);
    for (slot s = n; s-- > first;) {
        const sym g = adj[s];
        if (symbolic::is_zero(g)) continue;
        const slot a = pv.a[s], b = pv.b[s];
        const sym X = orig(a), Y = orig(b), O = orig(s);
        switch (pv.ops[s]) {
#define TG_OP(name, arity, ...)                                                    \
    case op::name:                                                                 \
        if (!is_const(a)) adj[a] = adj[a] + kernel::name::dx<sym>(X, Y, O, g);     \
        if constexpr (arity == 2)                                                  \
            if (!is_const(b)) adj[b] = adj[b] + kernel::name::dy<sym>(X, Y, O, g); \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
        if (bld.ops.size() > max_ops) return nullptr;
    }
    // Per seed group: hessian_block's tangent and adjoint-tangent sweeps.
    std::vector<std::vector<std::size_t>> by_col(n_cols);
    for (std::size_t k = 0; k < entries.size(); ++k) {
        if (entries[k].first >= n_in || entries[k].second >= n_cols)
            throw std::invalid_argument("record_hessian: entry out of range");
        by_col[entries[k].second].push_back(k);
    }
    std::vector<std::uint32_t> outputs(entries.size());
    std::vector<sym> t(n, sym(0.0)), adjt(n, sym(0.0));
    std::vector<slot> all_ops;
    if (plan.dense)
        for (slot s = first; s < n; ++s) all_ops.push_back(s);
    for (std::size_t j = 0; j < n_cols; ++j) {
        std::vector<slot> seeds;
        if (plan.groups.empty())
            seeds.assign(1, slot(j));
        else
            seeds = plan.groups[j];
        for (slot i : seeds) t[i] = sym(1.0);
        const std::vector<slot>& fwd = plan.dense ? all_ops : plan.fwd[j];
        for (slot s : fwd) {
            const slot a = pv.a[s], b = pv.b[s];
            switch (pv.ops[s]) {
#define TG_OP(name, ...)                                                               \
    case op::name:                                                                     \
        t[s] = symbolic::tangent<kernel::name>(orig(a), orig(b), orig(s), t[a], t[b]); \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
                default: break;
            }
        }
        std::vector<slot> touched;
        const auto give = [&](slot to, const sym& d) {
            if (is_const(to)) return;
            adjt[to] = adjt[to] + d;
            touched.push_back(to);
        };
        const std::size_t n_rev = plan.dense ? all_ops.size() : plan.rev[j].size();
        for (std::size_t k = 0; k < n_rev; ++k) {
            const slot r = plan.dense ? all_ops[n_rev - 1 - k] : plan.rev[j][k];
            const sym g = adj[r], gt = adjt[r];
            if (symbolic::is_zero(g) && symbolic::is_zero(gt)) continue;
            const slot a = pv.a[r], b = pv.b[r];
            const sdual X{orig(a), t[a]}, Y{orig(b), t[b]}, O{orig(r), t[r]}, G{g, gt};
            switch (pv.ops[r]) {
#define TG_OP(name, arity, ...)                                                      \
    case op::name:                                                                   \
        if (a == b) {                                                                \
            if (is_const(a)) break;                                                  \
            sdual da = kernel::name::dx<sdual>(X, Y, O, G);                          \
            if constexpr (arity == 2) da = da + kernel::name::dy<sdual>(X, Y, O, G); \
            give(a, da.d);                                                           \
        } else {                                                                     \
            if (!is_const(a)) give(a, kernel::name::dx<sdual>(X, Y, O, G).d);        \
            if constexpr (arity == 2)                                                \
                if (!is_const(b)) give(b, kernel::name::dy<sdual>(X, Y, O, G).d);    \
        }                                                                            \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
                default: break;
            }
            if (bld.ops.size() > max_ops) return nullptr;
        }
        for (std::size_t k : by_col[j]) outputs[k] = symbolic::id_of(adjt[entries[k].first]);
        for (slot i : seeds) t[i] = sym(0.0);
        for (slot s : fwd) t[s] = sym(0.0);
        for (slot s : touched) adjt[s] = sym(0.0);
    }
    // What the entries, the guards and the checks read; the rest is dropped.
    const std::uint32_t n_new = std::uint32_t(bld.ops.size());
    std::vector<char> live(std::size_t(n) + n_new, 0);
    const auto mark = [&](std::uint32_t id) {
        if (!(id & symbolic::const_bit)) live[id] = 1;
    };
    for (std::uint32_t id : outputs) mark(id);
    for (const auto& g : bld.guards) mark(g.second.first), mark(g.second.second);
    for (std::uint32_t id : bld.checks) mark(id);
    for (const guard& g : p.guards_) mark(g.lhs), mark(g.rhs);
    for (std::uint32_t k = n_new; k-- > 0;)
        if (live[n + k]) mark(bld.a[k]), mark(bld.b[k]);
    for (slot s = n; s-- > first;)
        if (live[s]) mark(pv.a[s]), mark(pv.b[s]);
    // Slots: the inputs and the function's constants, the new numbers, the function's
    // kept ops, the new kept ops.
    auto h = std::make_unique<recorded_hessian>();
    program& q = h->prog;
    const slot n_consts = slot(bld.consts.size());
    std::vector<slot> where(std::size_t(n) + n_new);
    for (slot s = 0; s < first; ++s) where[s] = s;
    slot next = first + n_consts;
    for (slot s = first; s < n; ++s)
        if (live[s]) where[s] = next++;
    for (std::uint32_t k = 0; k < n_new; ++k)
        if (live[n + k]) where[n + k] = next++;
    const auto slot_of = [&](std::uint32_t id) {
        return id & symbolic::const_bit ? first + (id & ~symbolic::const_bit) : where[id];
    };
    q.n_inputs = n_in;
    q.op_.assign(next, op::leaf);
    q.a_.assign(next, 0);
    q.b_.assign(next, 0);
    q.init_.assign(first + n_consts, 0.0);
    for (slot s = 0; s < first; ++s) {
        q.op_[s] = p.op_[s];
        q.a_[s] = p.a_[s];
        q.b_[s] = p.b_[s];
        q.init_[s] = p.init_[s];
    }
    for (slot k = 0; k < n_consts; ++k) {
        q.op_[first + k] = op::constant;
        q.a_[first + k] = q.b_[first + k] = first + k;
        q.init_[first + k] = bld.consts[k];
    }
    for (slot s = first; s < n; ++s)
        if (live[s]) {
            q.op_[where[s]] = pv.ops[s];
            q.a_[where[s]] = where[pv.a[s]];
            q.b_[where[s]] = where[pv.b[s]];
        }
    for (std::uint32_t k = 0; k < n_new; ++k)
        if (live[n + k]) {
            q.op_[where[n + k]] = bld.ops[k];
            q.a_[where[n + k]] = slot_of(bld.a[k]);
            q.b_[where[n + k]] = slot_of(bld.b[k]);
        }
    q.set_first_op(first + n_consts);
    for (std::uint32_t id : outputs) q.outputs_.push_back(slot_of(id));
    for (const guard& g : p.guards_)
        q.guards_.push_back({g.c, where[g.lhs], where[g.rhs], g.outcome, g.where});
    for (std::size_t k = 0; k < bld.guards.size(); ++k)
        q.guards_.push_back({bld.guards[k].first, slot_of(bld.guards[k].second.first),
                             slot_of(bld.guards[k].second.second), bool(bld.outcomes[k]),
                             "a derivative rule's branch"});
    q.finish();
    h->n_ops = next - q.first_op();
    h->runs = find_runs(q.view());
    if (transpose_runs(q, h->runs)) {
        q.finish();
        h->runs = find_runs(q.view());
    }
    return h;
}

bool run_recorded_hessian(const recorded_hessian& h, const double* x, double* val, double* out) {
    const program& q = h.prog;
    if (!forward_by_runs_finite(q, h.runs, x, val) || q.failing_guard(val) >= 0) return false;
    for (std::size_t k = 0; k < q.outputs_.size(); ++k) out[k] = val[q.outputs_[k]];
    return true;
}

}  // namespace tapegrad
