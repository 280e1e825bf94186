#include "tapegrad/backward_graph.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace tapegrad {

namespace {

// The tape a gradient_graph call records on, and the nodes it holds (one thread at a time
// per tape: the bindings hold the GIL).
struct recording {
    tape* t = nullptr;
    std::vector<tape::index>* held = nullptr;
    compare_observer* observer = nullptr;
    op rule = op::leaf;  // whose rule is being recorded
};
thread_local recording rec;

tape::index hold(tape::index i) {
    rec.t->retain(i);
    rec.held->push_back(i);
    return i;
}

tape::index node_of(const term& a) {
    return a.node ? a.i : hold(rec.t->push_leaf(op::constant, a.v));
}

template <class K>
term apply(const term& a, const term& b) {
    if (!a.node && !b.node) return term(K::forward(a.v, b.v));
    // Room first: pushing a constant, then the op, must not move the nodes in between.
    rec.t->reserve_more(3);
    const tape::index x = node_of(a), y = node_of(b);
    const tape::index i = hold(rec.t->push<K>(x, y));
    if (rec.observer) rec.observer->appended(i, rec.rule);
    return term::of(*rec.t, i);
}

bool observed(const term& a, const term& b, cmp c) {
    const bool outcome = compare(c, a.v, b.v);
    if (rec.observer && (a.node || b.node)) rec.observer->compared(a, b, c, outcome, rec.rule);
    return outcome;
}

}  // namespace

// ---- term arithmetic: each operation is the op of the table that computes it on doubles.
TG_RECORDING_OPERATORS(term)

namespace math {
#define TG_MATH_UNARY(name) \
    term name(const term& x) { return apply<kernel::name>(x, x); }
#define TG_MATH_BINARY(name) \
    term name(const term& x, const term& y) { return apply<kernel::name>(x, y); }
#include "tapegrad/ops_math.def"
#undef TG_MATH_UNARY
#undef TG_MATH_BINARY

// (-0.0 for 0.0 is allowed: pow's y == 0 shortcut is 0, its full form g * 0 * ...)
template <class F>
term value_only(double v, const term& /*like*/, F&& full) {
    const term r = full();
    return observed(r, term(v), cmp::same) ? r : term(v);
}
template <class F>
term value_only(const term& v, const term& /*like*/, F&& full) {
    const term r = full();
    return r == v ? r : v;
}
}  // namespace math

namespace {

bool is_zero(double g) { return g == 0.0; }
bool is_zero(const term& g) { return !g.node && g.v == 0.0; }  // a zero that stays zero
void entering_rule(double, op) {}
void entering_rule(const term&, op o) { rec.rule = o; }
double value(double g) { return g; }
double value(const term& g) { return g.v; }

template <class T>
T operand(const tape& t, tape::index i);
template <>
double operand<double>(const tape& t, tape::index i) {
    return t.val(i);
}
template <>
term operand<term>(const tape& t, tape::index i) {
    // A constant node is a number in the rules: it folds, and comparing it guards nothing.
    return t.op_at(i) == op::constant ? term(t.val(i)) : term::of(t, i);
}

// Adjoints by node: a dense array over the nodes the sweep visits, [lo, top], and a
// map for the nodes below (leaves and constants the graph uses): memory follows the graph,
// not the tape under it.
template <class T>
class adjoints {
public:
    adjoints(tape::index lo, tape::index top)
        : lo_(lo), dense_(std::size_t(top - lo) + 1, T(0.0)), has_(dense_.size(), 0) {}
    bool has(tape::index j) const {
        return j >= lo_ ? j - lo_ < has_.size() && has_[j - lo_] : below_.count(j) > 0;
    }
    const T& get(tape::index j) const { return j >= lo_ ? dense_[j - lo_] : below_.at(j); }
    // adj[j] += c (the first contribution is c itself)
    void add(tape::index j, const T& c) {
        if (j < lo_) {
            const auto [it, fresh] = below_.try_emplace(j, c);
            if (!fresh) it->second = it->second + c;
            return;
        }
        T& a = dense_[j - lo_];
        a = has_[j - lo_] ? a + c : c;
        has_[j - lo_] = 1;
    }
    T value_or_zero(tape::index j) const { return has(j) ? get(j) : T(0.0); }

private:
    tape::index lo_;
    std::vector<T> dense_;
    std::vector<char> has_;
    std::unordered_map<tape::index, T> below_;
};

// The reverse sweep over [lowest op of the outputs, highest output]. The same order of
// rules and of additions as tape::backward.
template <class T>
adjoints<T> sweep(const tape& t, const grad_request& r, const std::vector<T>& seeds) {
    tape::index top = 0, lo = tape::none;
    for (const tape::index o : r.outputs) {
        top = std::max(top, o);
        lo = std::min({lo, t.sweep_start(o), o});
    }
    adjoints<T> adj(lo, top);
    for (std::size_t k = 0; k < r.outputs.size(); ++k) adj.add(r.outputs[k], seeds[k]);
    auto add = [&](tape::index j, const T& c, const T& g) {
        if (is_zero(c)) return;
        // The plain sweep skips a zero adjoint: no 0 * inf NaN from it. A recorded zero
        // adjoint that is not a constant may still have derivatives: its finite
        // contributions are kept.
        if (value(g) == 0.0 && !std::isfinite(value(c))) return;
        adj.add(j, c);
    };
    for (tape::index k = top + 1; k-- > lo;) {
        if (!adj.has(k) || is_leaf(t.op_at(k))) continue;
        const T g = adj.get(k);
        if (is_zero(g)) continue;
        const tape::index a = t.arg0(k), b = t.arg1(k);
        const T x = operand<T>(t, a), y = operand<T>(t, b), out = operand<T>(t, k);
        entering_rule(g, t.op_at(k));
        switch (t.op_at(k)) {
#define TG_OP(name, arity, ...)                                                       \
    case op::name:                                                                    \
        if (t.op_at(a) != op::constant) add(a, kernel::name::dx<T>(x, y, out, g), g); \
        if (arity == 2 && t.op_at(b) != op::constant)                                 \
            add(b, kernel::name::dy<T>(x, y, out, g), g);                             \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
    }
    return adj;
}

}  // namespace

std::vector<double> gradient_values(const tape& t, const grad_request& r) {
    std::vector<double> seeds;
    for (const term& s : r.seeds) {
        if (s.node) throw std::invalid_argument("gradient_values takes number seeds");
        seeds.push_back(s.v);
    }
    const adjoints<double> adj = sweep(t, r, seeds);
    std::vector<double> out;
    for (const tape::index w : r.wrt) out.push_back(adj.value_or_zero(w));
    return out;
}

std::vector<tape::index> gradient_graph(tape& t, const grad_request& r,
                                        std::vector<tape::index>& held,
                                        compare_observer* observer) {
    const recording saved = rec;
    rec = {&t, &held, observer};
    struct restore {
        recording saved;
        ~restore() { rec = saved; }
    } restore_on_exit{saved};
    const adjoints<term> adj = sweep(t, r, r.seeds);
    std::vector<tape::index> out;
    for (const tape::index w : r.wrt) out.push_back(node_of(adj.value_or_zero(w)));
    return out;
}

std::vector<bool> below(const tape& t, tape::index root, const std::vector<tape::index>& nodes) {
    // Marks over [lo, root], the range a sweep from root visits, and a set for the nodes
    // below it (leaves and constants its ops use).
    const tape::index lo = std::min(t.sweep_start(root), root);
    std::vector<char> mark(std::size_t(root - lo) + 1, 0);
    std::unordered_set<tape::index> under;
    auto reach = [&](tape::index i) {
        if (i >= lo)
            mark[i - lo] = 1;
        else
            under.insert(i);
    };
    reach(root);
    for (tape::index k = root + 1; k-- > lo;) {
        if (!mark[k - lo] || is_leaf(t.op_at(k))) continue;
        reach(t.arg0(k));
        if (op_table[int(t.op_at(k))].arity == 2) reach(t.arg1(k));
    }
    std::vector<bool> out;
    for (const tape::index i : nodes)
        out.push_back(i > root ? false : i >= lo ? mark[i - lo] != 0 : under.count(i) > 0);
    return out;
}

}  // namespace tapegrad
