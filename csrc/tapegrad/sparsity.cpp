#include "tapegrad/sparsity.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace tapegrad {

namespace {

// One row's second-order structure from its own rules on dual numbers: the tangent of
// d/dx along x is d²/dx², and so on. A second derivative counts as present if it is
// finite and nonzero at one of the generic points below, or never finite (then it cannot
// be ruled out). Linear and select rows (ops.hpp: their rules depend on the operands only
// through branches) have none.
template <class K>
op_structure classify(bool dx_zero, bool dy_zero) {
    op_structure s{{dx_zero, K::arity == 1 || dy_zero}, {false, false, false}};
    if (K::linear) return s;
    static constexpr double xs[] = {-1.3, -0.45, 0.3, 0.7, 1.0, 1.6, 2.0, 2.5};
    static constexpr double ys[] = {-0.6, 0.4, 1.0, 1.3, 2.2, 3.0};
    bool nonzero[3] = {}, finite[3] = {};
    const auto note = [&](int k, double v) {
        if (std::isfinite(v)) {
            finite[k] = true;
            nonzero[k] = nonzero[k] || v != 0;
        }
    };
    for (double x : xs)
        for (double y : ys) {
            if (K::arity == 1 && y != ys[0]) break;
            const double out = K::forward(x, y);
            for (int along = 0; along < K::arity; ++along) {
                const double tx = along == 0, ty = along == 1;
                const fwd::dual X{x, tx}, Y{y, ty}, G{1.0, 0.0};
                const fwd::dual O{out, K::tangent(x, y, out, tx, ty)};
                note(along, K::dx(X, Y, O, G).d);  // d²/dx² or d²/dxdy
                if (K::arity == 2) note(1 + along, K::dy(X, Y, O, G).d);  // d²/dydx, d²/dy²
            }
        }
    for (int k = 0; k < 3; ++k) s.d2[k] = nonzero[k] || !finite[k];
    if (K::arity == 1) s.d2[1] = s.d2[2] = false;
    return s;
}

const op_structure* structure_table() {
    static const std::vector<op_structure> table = [] {
        std::vector<op_structure> t(std::size_t(op::count_),
                                    op_structure{{true, true}, {false, false, false}});
#define TG_OP(name, arity, fwd, dx, dy, tangent) \
    t[std::size_t(op::name)] =                   \
        classify<kernel::name>(kernel::same_text(#dx, "0.0"), kernel::same_text(#dy, "0.0"));
#include "tapegrad/ops.def"
#undef TG_OP
        return t;
    }();
    return table.data();
}

using index_list = std::vector<std::int32_t>;

// The inputs a slot depends on: an ascending list, or, once the list would outgrow it, a
// bitset over all inputs (n_inputs / 8 bytes), so that adding a few indices to a large
// set costs their number whatever their order (a sum over inputs in reverse order).
struct index_set {
    index_list list;
    std::vector<std::uint64_t> bits;  // non-empty: the bitset form
    bool dense() const { return !bits.empty(); }
    std::size_t weight() const { return dense() ? bits.size() * 64 : list.size(); }
    index_list to_list() const {
        if (!dense()) return list;
        index_list out;
        for (std::size_t w = 0; w < bits.size(); ++w)
            if (bits[w])
                for (unsigned k = 0; k < 64; ++k)
                    if (bits[w] >> k & 1) out.push_back(std::int32_t(w * 64 + k));
        return out;
    }
};

// The arguments of op slot s whose derivative is not structurally zero (at most two,
// a repeated argument once).
struct live_args {
    slot arg[2];
    int n = 0;
};
live_args differentiable_args(const program_view& p, slot s) {
    const op_structure& st = structure_of(p.ops[s]);
    live_args r;
    if (!st.dzero[0]) r.arg[r.n++] = p.a[s];
    if (op_table[std::size_t(p.ops[s])].arity == 2 && !st.dzero[1] &&
        (r.n == 0 || p.b[s] != p.a[s]))
        r.arg[r.n++] = p.b[s];
    return r;
}

// Index sets for the slots marked in `need`, built in slot order; each set is dropped
// after its last read (`reads`, counted by the caller), and moved rather than copied into
// a user that reads it last.
class index_sets {
public:
    index_sets(const program_view& p, std::vector<std::uint32_t> reads)
        : p_(p), reads_(std::move(reads)), sets_(p.n_slots), words_((p.n_inputs + 63) / 64) {}

    // The set of slot s (inputs: {s}; constants: empty).
    const index_set& of(slot s) {
        if (s < p_.n_inputs && sets_[s].list.empty() && reads_[s])
            sets_[s].list.assign(1, std::int32_t(s));
        return sets_[s];
    }
    // Builds op slot s's set from its differentiable arguments.
    void build(slot s) {
        const live_args args = differentiable_args(p_, s);
        if (args.n == 0) return;
        if (args.n == 1) {
            sets_[s] = take(args.arg[0]);
            return;
        }
        slot big = args.arg[0], small = args.arg[1];
        if (of(big).weight() < of(small).weight()) std::swap(big, small);
        const index_set& other = of(small);
        index_set out = take(big);
        if (out.dense()) {
            if (other.dense())
                for (std::size_t w = 0; w < words_; ++w) out.bits[w] |= other.bits[w];
            else
                for (std::int32_t i : other.list) out.bits[std::size_t(i) / 64] |= bit(i);
        } else {
            merge(out.list, other.list);
            if (out.list.size() * 32 > std::size_t(p_.n_inputs) && out.list.size() > 64) {
                out.bits.assign(words_, 0);
                for (std::int32_t i : out.list) out.bits[std::size_t(i) / 64] |= bit(i);
                index_list().swap(out.list);
            }
        }
        sets_[s] = std::move(out);
    }
    // One read of s's set is done.
    void release(slot s) {
        if (reads_[s] && --reads_[s] == 0) sets_[s] = index_set();
    }

private:
    static std::uint64_t bit(std::int32_t i) { return std::uint64_t(1) << (unsigned(i) % 64); }
    // Adds `other` to the ascending list `out`. A sum over inputs in order adds a few
    // indices at or past its end: those already in it are found by binary search, the
    // rest appended.
    static void merge(index_list& out, const index_list& other) {
        if (other.empty()) return;
        const auto past =
            out.empty() ? other.begin() : std::upper_bound(other.begin(), other.end(), out.back());
        if (std::all_of(other.begin(), past, [&](std::int32_t i) {
                return std::binary_search(out.begin(), out.end(), i);
            })) {
            out.insert(out.end(), past, other.end());
            return;
        }
        const auto mid = std::ptrdiff_t(out.size());
        out.insert(out.end(), other.begin(), other.end());
        std::inplace_merge(out.begin(), out.begin() + mid, out.end());
        out.erase(std::unique(out.begin(), out.end()), out.end());
    }
    // A copy of s's set, or the set itself when this is its last read.
    index_set take(slot s) {
        const index_set& set = of(s);
        if (reads_[s] == 1) return std::move(sets_[s]);
        return set;
    }
    const program_view& p_;
    std::vector<std::uint32_t> reads_;
    std::vector<index_set> sets_;
    std::size_t words_;
};

pattern from_rows(std::vector<index_list>& rows, std::size_t cols) {
    pattern out;
    out.rows = rows.size();
    out.cols = cols;
    out.indptr.reserve(rows.size() + 1);
    for (index_list& r : rows) {
        std::sort(r.begin(), r.end());
        r.erase(std::unique(r.begin(), r.end()), r.end());
        out.indices.insert(out.indices.end(), r.begin(), r.end());
        out.indptr.push_back(std::int64_t(out.indices.size()));
        index_list().swap(r);
    }
    return out;
}

// Marks `first`-based reads: every slot each needed op reads differentiably, once.
void count_reads(const program_view& p, const std::vector<char>& need,
                 std::vector<std::uint32_t>& reads) {
    for (slot s = p.first_op; s < p.n_slots; ++s) {
        if (!need[s]) continue;
        const live_args args = differentiable_args(p, s);
        for (int k = 0; k < args.n; ++k) ++reads[args.arg[k]];
    }
}

}  // namespace

const op_structure& structure_of(op o) { return structure_table()[std::size_t(o)]; }

pattern jacobian_pattern(const program_view& p, const slot* outputs, std::size_t n_outputs) {
    const slot n = p.n_slots;
    std::vector<char> need(n, 0);
    for (std::size_t k = 0; k < n_outputs; ++k) need[outputs[k]] = 1;
    for (slot s = n; s-- > p.first_op;) {
        if (!need[s]) continue;
        const live_args args = differentiable_args(p, s);
        for (int k = 0; k < args.n; ++k) need[args.arg[k]] = 1;
    }
    std::vector<std::uint32_t> reads(n, 0);
    count_reads(p, need, reads);
    for (std::size_t k = 0; k < n_outputs; ++k) ++reads[outputs[k]];
    index_sets sets(p, std::move(reads));
    std::vector<index_list> rows(n_outputs);
    // Each output's row is taken when its slot is built (or at the start, for inputs).
    std::vector<std::vector<std::size_t>> rows_at(n);
    for (std::size_t k = 0; k < n_outputs; ++k) rows_at[outputs[k]].push_back(k);
    const auto take_rows = [&](slot s) {
        for (std::size_t k : rows_at[s]) {
            rows[k] = sets.of(s).to_list();
            sets.release(s);
        }
    };
    for (slot s = 0; s < p.first_op; ++s) take_rows(s);
    for (slot s = p.first_op; s < n; ++s) {
        if (!need[s]) continue;
        sets.build(s);
        const live_args args = differentiable_args(p, s);
        for (int k = 0; k < args.n; ++k) sets.release(args.arg[k]);
        take_rows(s);
    }
    return from_rows(rows, p.n_inputs);
}

pattern hessian_pattern(const program_view& p, slot root) {
    const slot n = p.n_slots;
    // live: the root's adjoint reaches the slot. need: a nonlinear live op reads the
    // slot's index set, or a needed slot is built from it.
    std::vector<char> live(n, 0), need(n, 0);
    live[root] = 1;
    std::vector<std::uint32_t> reads(n, 0);
    // The arguments a live op's second derivatives pair up: mask bit k for argument k.
    const auto paired = [&](slot s) {
        const op_structure& st = structure_of(p.ops[s]);
        unsigned m = (st.d2[0] || st.d2[1] ? 1u : 0u) | (st.d2[2] || st.d2[1] ? 2u : 0u);
        if (m == 3 && p.a[s] == p.b[s]) m = 1;  // f(x, x): one set, read once
        return m;
    };
    for (slot s = n; s-- > p.first_op;) {
        const live_args args = differentiable_args(p, s);
        if (live[s]) {
            for (int k = 0; k < args.n; ++k) live[args.arg[k]] = 1;
            const unsigned m = paired(s);
            if (m & 1) need[p.a[s]] = 1, ++reads[p.a[s]];
            if (m & 2) need[p.b[s]] = 1, ++reads[p.b[s]];
        }
        if (need[s])
            for (int k = 0; k < args.n; ++k) need[args.arg[k]] = 1;
    }
    count_reads(p, need, reads);
    index_sets sets(p, std::move(reads));
    std::vector<index_list> rows(p.n_inputs);
    const auto clique = [&](const index_set& set) {
        const index_list d = set.to_list();
        for (std::int32_t i : d)
            rows[std::size_t(i)].insert(rows[std::size_t(i)].end(), d.begin(), d.end());
    };
    const auto biclique = [&](const index_set& su, const index_set& sv) {
        const index_list u = su.to_list(), v = sv.to_list();
        for (std::int32_t i : u)
            rows[std::size_t(i)].insert(rows[std::size_t(i)].end(), v.begin(), v.end());
        for (std::int32_t j : v)
            rows[std::size_t(j)].insert(rows[std::size_t(j)].end(), u.begin(), u.end());
    };
    for (slot s = p.first_op; s < n; ++s) {
        unsigned m = 0;
        if (live[s] && (m = paired(s)) != 0) {
            const op_structure& st = structure_of(p.ops[s]);
            const slot a = p.a[s], b = p.b[s];
            if (a == b) {
                clique(sets.of(a));  // f(x, x): every second derivative pairs x with x
            } else {
                if (st.d2[0]) clique(sets.of(a));
                if (st.d2[2]) clique(sets.of(b));
                if (st.d2[1]) biclique(sets.of(a), sets.of(b));
            }
        }
        if (need[s]) sets.build(s);
        if (m & 1) sets.release(p.a[s]);
        if (m & 2) sets.release(p.b[s]);
        if (need[s]) {
            const live_args args = differentiable_args(p, s);
            for (int k = 0; k < args.n; ++k) sets.release(args.arg[k]);
        }
    }
    return from_rows(rows, p.n_inputs);
}

std::vector<std::int32_t> color_columns(const pattern& J) {
    const std::size_t m = J.rows, n = J.cols;
    // The rows of each column (J transposed), then each column takes the least color no
    // column sharing one of its rows has.
    std::vector<std::int64_t> start(n + 1, 0);
    for (std::int32_t j : J.indices) ++start[std::size_t(j) + 1];
    std::partial_sum(start.begin(), start.end(), start.begin());
    std::vector<std::int32_t> rows_of(J.nnz());
    {
        std::vector<std::int64_t> at(start.begin(), start.end() - 1);
        for (std::size_t i = 0; i < m; ++i)
            for (std::int64_t e = J.indptr[i]; e < J.indptr[i + 1]; ++e)
                rows_of[std::size_t(at[std::size_t(J.indices[std::size_t(e)])]++)] =
                    std::int32_t(i);
    }
    std::vector<std::int32_t> color(n, -1);
    std::vector<std::int64_t> forbidden(n + 1, -1);  // forbidden[c] == j: taken near j
    for (std::size_t j = 0; j < n; ++j) {
        for (std::int64_t e = start[j]; e < start[j + 1]; ++e) {
            const std::size_t i = std::size_t(rows_of[std::size_t(e)]);
            for (std::int64_t f = J.indptr[i]; f < J.indptr[i + 1]; ++f) {
                const std::int32_t c = color[std::size_t(J.indices[std::size_t(f)])];
                if (c >= 0) forbidden[std::size_t(c)] = std::int64_t(j);
            }
        }
        std::int32_t c = 0;
        while (forbidden[std::size_t(c)] == std::int64_t(j)) ++c;
        color[j] = c;
    }
    return color;
}

namespace {
// The off-diagonal neighbours of each vertex of a symmetric pattern, in CSR.
struct graph {
    std::vector<std::int64_t> start;
    std::vector<std::int32_t> nb;
    explicit graph(const pattern& H) : start(H.rows + 1, 0) {
        for (std::size_t i = 0; i < H.rows; ++i) {
            for (std::int64_t e = H.indptr[i]; e < H.indptr[i + 1]; ++e)
                if (std::size_t(H.indices[std::size_t(e)]) != i)
                    nb.push_back(H.indices[std::size_t(e)]);
            start[i + 1] = std::int64_t(nb.size());
        }
    }
    const std::int32_t* begin(std::size_t v) const { return nb.data() + start[v]; }
    const std::int32_t* end(std::size_t v) const { return nb.data() + start[v + 1]; }
    std::size_t degree(std::size_t v) const { return std::size_t(start[v + 1] - start[v]); }
};
}  // namespace

std::vector<std::int32_t> star_color(const pattern& H) {
    if (H.rows != H.cols) throw std::invalid_argument("star_color: the pattern is not square");
    const std::size_t n = H.rows;
    const graph g(H);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t u, std::size_t v) { return g.degree(u) > g.degree(v); });
    std::vector<std::int32_t> color(n, -1);
    std::vector<std::int64_t> forbidden(n + 1, -1);
    for (std::size_t v : order) {
        const auto forbid = [&](std::int32_t c) { forbidden[std::size_t(c)] = std::int64_t(v); };
        for (const std::int32_t* w = g.begin(v); w != g.end(v); ++w) {
            const std::int32_t cw = color[std::size_t(*w)];
            if (cw >= 0) forbid(cw);
            for (const std::int32_t* x = g.begin(std::size_t(*w)); x != g.end(std::size_t(*w));
                 ++x) {
                const std::int32_t cx = color[std::size_t(*x)];
                if (cx < 0) continue;
                if (cw < 0) {
                    forbid(cx);  // v - w - x: v may not take x's color while w is open
                    continue;
                }
                // w colored: v may not take x's color if x - w' of w's color exists (a
                // two-colored path v - w - x - y would follow).
                for (const std::int32_t* y = g.begin(std::size_t(*x)); y != g.end(std::size_t(*x));
                     ++y)
                    if (*y != *w && color[std::size_t(*y)] == cw) {
                        forbid(cx);
                        break;
                    }
            }
        }
        std::int32_t c = 0;
        while (forbidden[std::size_t(c)] == std::int64_t(v)) ++c;
        color[v] = c;
    }
    return color;
}

std::vector<std::int64_t> star_recovery(const pattern& H, const std::vector<std::int32_t>& colors) {
    const std::size_t n = H.rows;
    if (colors.size() != n) throw std::invalid_argument("star_recovery: one color per column");
    std::int32_t k = 0;
    for (std::int32_t c : colors) k = std::max(k, c + 1);
    // count[c]: columns of color c in the current row, off the diagonal (stamped by row).
    std::vector<std::int32_t> count(std::size_t(k), 0);
    std::vector<std::int64_t> stamp(std::size_t(k), -1);
    std::vector<char> unique(H.nnz(), 0);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::int64_t e = H.indptr[i]; e < H.indptr[i + 1]; ++e) {
            const std::size_t j = std::size_t(H.indices[std::size_t(e)]);
            if (j == i) continue;
            const std::size_t c = std::size_t(colors[j]);
            if (stamp[c] != std::int64_t(i)) stamp[c] = std::int64_t(i), count[c] = 0;
            ++count[c];
        }
        for (std::int64_t e = H.indptr[i]; e < H.indptr[i + 1]; ++e) {
            const std::size_t j = std::size_t(H.indices[std::size_t(e)]);
            unique[std::size_t(e)] = j == i || count[std::size_t(colors[j])] == 1;
        }
    }
    std::vector<std::int64_t> at(H.nnz());
    for (std::size_t i = 0; i < n; ++i)
        for (std::int64_t e = H.indptr[i]; e < H.indptr[i + 1]; ++e) {
            const std::size_t j = std::size_t(H.indices[std::size_t(e)]);
            if (j == i && colors[i] == colors[j]) {
                at[std::size_t(e)] = std::int64_t(colors[i]) * std::int64_t(n) + std::int64_t(i);
                continue;
            }
            if (colors[i] == colors[j])
                throw std::logic_error("star_recovery: neighbours share a color");
            if (unique[std::size_t(e)]) {
                at[std::size_t(e)] = std::int64_t(colors[j]) * std::int64_t(n) + std::int64_t(i);
                continue;
            }
            // (j, i) in row j: the pattern is symmetric, rows ascending.
            const std::int32_t* row = H.indices.data() + H.indptr[j];
            const std::int32_t* end = H.indices.data() + H.indptr[j + 1];
            const std::int32_t* f = std::lower_bound(row, end, std::int32_t(i));
            if (f == end || *f != std::int32_t(i))
                throw std::logic_error("star_recovery: the pattern is not symmetric");
            if (!unique[std::size_t(H.indptr[j] + (f - row))])
                throw std::logic_error("star_recovery: the coloring is not a star coloring");
            at[std::size_t(e)] = std::int64_t(colors[i]) * std::int64_t(n) + std::int64_t(j);
        }
    return at;
}

}  // namespace tapegrad
