#include "tapegrad/backward_graph.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace tapegrad {

namespace {

// An operation of a rule not yet on the tape (see `settle`).
struct pending_op {
    tape::index (*push)(tape&, tape::index, tape::index);
    term a, b;
    op rule;  // whose rule made it
    tape::index at = tape::none;  // its node, once settled
};

// The tape a gradient_graph call records on, the nodes it holds and the rule operations
// not yet settled (one thread at a time per tape: the bindings hold the GIL).
struct recording {
    tape* t = nullptr;
    std::vector<tape::index>* held = nullptr;
    compare_observer* observer = nullptr;
    op rule = op::leaf;  // whose rule is being recorded
    std::vector<pending_op> pending;
};
thread_local recording rec;

tape::index hold(tape::index i) {
    rec.t->retain(i);
    rec.held->push_back(i);
    return i;
}

template <class K>
tape::index push_op(tape& t, tape::index x, tape::index y) {
    return t.push<K>(x, y);
}

// The node of a term: settled first if it is pending; a number becomes a constant node.
tape::index node_of(const term& a);

// A rule's operations are appended when its result is settled (a contribution entering an
// adjoint, a result, a guard's operand), operands before the operation, left before
// right: the order in which Python evaluates the same expression (tapegrad.reference),
// not the order in which a C++ compiler happens to evaluate the operands of `a * b` (which
// the language leaves open, and GCC and Clang differ in). The order of nodes decides the
// order in which a later sweep adds contributions, so this makes higher-order gradients
// the same on every compiler, and the same as the reference's bit for bit. A pending
// operation that is never settled (value_only's unused full form) is never appended.
term settle(const term& a) {
    if (a.pending < 0) return a;
    pending_op& p = rec.pending[std::size_t(a.pending)];
    if (p.at == tape::none) {
        const term x = p.a, y = p.b;  // (copies: settling may grow `pending`)
        // Operation operands first, then the numbers among them become constants
        const tape::index ix = x.node ? node_of(x) : tape::none;
        const tape::index iy = y.node ? node_of(y) : tape::none;
        rec.t->reserve_more(3);
        const tape::index cx = ix != tape::none ? ix : hold(rec.t->push_leaf(op::constant, x.v));
        const tape::index cy = iy != tape::none ? iy : hold(rec.t->push_leaf(op::constant, y.v));
        pending_op& q = rec.pending[std::size_t(a.pending)];
        q.at = hold(q.push(*rec.t, cx, cy));
        if (rec.observer) rec.observer->appended(q.at, q.rule);
    }
    return term::of(*rec.t, rec.pending[std::size_t(a.pending)].at);
}

tape::index node_of(const term& a) {
    if (a.pending >= 0) return settle(a).i;
    return a.node ? a.i : hold(rec.t->push_leaf(op::constant, a.v));
}

template <class K>
term apply(const term& a, const term& b) {
    if (!a.node && !b.node) return term(K::forward(a.v, b.v));
    rec.pending.push_back({&push_op<K>, a, b, rec.rule});
    term r(K::forward(a.v, b.v));
    r.node = true;
    r.pending = std::int32_t(rec.pending.size() - 1);
    return r;
}

bool observed(const term& a, const term& b, cmp c) {
    const bool outcome = compare(c, a.v, b.v);
    if (rec.observer && (a.node || b.node))
        rec.observer->compared(settle(a), settle(b), c, outcome, rec.rule);
    return outcome;
}

}  // namespace

// ---- term arithmetic: each operation is the op of the table that computes it on doubles.
term operator+(const term& a, const term& b) { return apply<kernel::add>(a, b); }
term operator-(const term& a, const term& b) { return apply<kernel::sub>(a, b); }
term operator*(const term& a, const term& b) { return apply<kernel::mul>(a, b); }
term operator/(const term& a, const term& b) { return apply<kernel::div>(a, b); }
term operator-(const term& a) { return apply<kernel::neg>(a, a); }
// Comparisons see values only: a rule's branch is the one its value takes (PyTorch's
// create_graph records the same).
bool operator==(const term& a, const term& b) { return observed(a, b, cmp::eq); }
bool operator!=(const term& a, const term& b) { return observed(a, b, cmp::ne); }
bool operator<(const term& a, const term& b) { return observed(a, b, cmp::lt); }
bool operator<=(const term& a, const term& b) { return observed(a, b, cmp::le); }
bool operator>(const term& a, const term& b) { return observed(a, b, cmp::gt); }
bool operator>=(const term& a, const term& b) { return observed(a, b, cmp::ge); }

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
double settled(double c) { return c; }
term settled(const term& c) { return settle(c); }  // a rule's result, appended now
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
            if (!fresh) it->second = settled(it->second + c);
            return;
        }
        T& a = dense_[j - lo_];
        a = has_[j - lo_] ? settled(a + c) : c;
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
        // Both parts of the rule first, then both contributions: the reference's order
        T cx(0.0), cy(0.0);
        switch (t.op_at(k)) {
#define TG_OP(name, arity, ...)                                                                    \
    case op::name:                                                                                 \
        cx = t.op_at(a) != op::constant ? settled(kernel::name::dx<T>(x, y, out, g)) : T(0.0);     \
        cy = arity == 2 && t.op_at(b) != op::constant ? settled(kernel::name::dy<T>(x, y, out, g)) \
                                                      : T(0.0);                                    \
        break;
#include "tapegrad/ops.def"
#undef TG_OP
            default: break;
        }
        add(a, cx, g);
        if (op_table[int(t.op_at(k))].arity == 2) add(b, cy, g);
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
    // (A nested call, from Python code an observer runs, records on its own.)
    struct restore {
        recording saved;
        ~restore() { rec = std::move(saved); }
    } restore_on_exit{std::move(rec)};
    rec = recording{};
    rec.t = &t;
    rec.held = &held;
    rec.observer = observer;
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
