// native_source(): a program's one-point sweeps as C++, runs as loops; native_code: the
// built library, loaded (dlopen; LoadLibrary on Windows).
#include "tapegrad/codegen.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "tapegrad/structure.hpp"
#include "tapegrad/shared_library.hpp"

namespace tapegrad {

std::uint64_t program_digest(const program& p) {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void* data, std::size_t n) {
        const auto* c = static_cast<const unsigned char*>(data);
        for (std::size_t k = 0; k < n; ++k) h = (h ^ c[k]) * 1099511628211ull;
    };
    const std::uint32_t head[3] = {p.n_inputs, p.first_op(), p.n_slots()};
    mix(head, sizeof head);
    mix(p.op_.data(), p.op_.size() * sizeof(op));
    mix(p.a_.data(), p.a_.size() * sizeof(slot));
    mix(p.b_.data(), p.b_.size() * sizeof(slot));
    mix(p.init_.data() + p.n_inputs, (p.first_op() - p.n_inputs) * sizeof(double));
    const std::uint64_t n_out = p.outputs_.size();
    mix(&n_out, sizeof n_out);
    mix(p.outputs_.data(), p.outputs_.size() * sizeof(slot));
    return h;
}

namespace {

// Whether an op table rule's text names the identifier `word` (a whole token).
constexpr bool mentions(std::string_view text, std::string_view word) {
    auto ident = [](char c) {
        return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
               (c >= 'A' && c <= 'Z');
    };
    for (std::size_t at = text.find(word); at != std::string_view::npos;
         at = text.find(word, at + 1)) {
        const std::size_t end = at + word.size();
        if ((at == 0 || !ident(text[at - 1])) && (end == text.size() || !ident(text[end])))
            return true;
    }
    return false;
}

// Which values an op's reverse rules (d/dx and d/dy of ops.def) read: operand x, operand
// y, its own value out. A value nothing else reads need not be stored by a loop.
struct rule_reads {
    bool x, y, out;
};
constexpr rule_reads rule_reads_of(std::string_view rule, int arity) {
    return {mentions(rule, "x"), arity == 2 && mentions(rule, "y"), mentions(rule, "out")};
}
constexpr rule_reads reads[][2] = {
    {{false, false, false}, {false, false, false}},  // leaf
    {{false, false, false}, {false, false, false}},  // constant
#define TG_OP(name, arity, fwd, dx, dy, tangent) \
    {rule_reads_of(#dx, arity), rule_reads_of(arity == 2 ? #dy : "", arity)},
#include "tapegrad/ops.def"
#undef TG_OP
};
static_assert(sizeof reads / sizeof reads[0] == std::size_t(op::count_));
static_assert(!reads[std::size_t(op::add)][0].x && reads[std::size_t(op::mul)][0].y &&
              !reads[std::size_t(op::mul)][0].x && reads[std::size_t(op::exp)][0].out &&
              !reads[std::size_t(op::exp)][0].x && reads[std::size_t(op::if_true)][1].x &&
              !reads[std::size_t(op::sub)][1].y && !reads[std::size_t(op::exp)][1].x);

struct writer {
    std::string s;
    template <class... T>
    void f(const char* fmt, T... args) {
        char buf[1024];
        const int n = std::snprintf(buf, sizeof buf, fmt, args...);
        if (n >= int(sizeof buf)) throw std::logic_error("codegen: line too long");
        s.append(buf, std::size_t(n));
    }
    void put(const std::string& t) { s += t; }
};

// A stretch of the sweep: one op slot, or iterations [k0, k1) of a run as a loop.
struct piece {
    slot s;             // the op slot (straight), or the run's start
    const run* r;       // null: straight
    std::int64_t k0, k1;
    std::vector<std::uint8_t> modes;  // loops: per block op, FA | FB << 2
    // loops: per block op, whether its adjoint lives in a local of the iteration (every
    // use of its slot is by this iteration's block ops, and it is no output)
    std::vector<bool> local;
};

class generator {
public:
    generator(const program& p, bool reassociate)
        : p_(p), v_(p.view()), is_const_(v_.consts()), uses_(p.n_slots(), 0),
          reassociate_(reassociate) {
        for (slot s = p.first_op(); s < p.n_slots(); ++s) {
            ++uses_[p.a_[s]];
            if (op_table[std::size_t(p.op_[s])].arity == 2) ++uses_[p.b_[s]];
        }
        for (slot s : p.outputs_) uses_[s] = ~0u;  // never local
    }

    // Which block ops of iterations [k0, k1) have all their uses inside their iteration.
    std::vector<bool> locals(const run& r, std::int64_t k0, std::int64_t k1) const {
        std::vector<std::uint32_t> inside(r.period, 0);
        for (slot j = 0; j < r.period; ++j) {
            const bool binary = op_table[std::size_t(p_.op_[r.start + j])].arity == 2;
            if (r.a[j].kind == operand_kind::same) ++inside[r.a[j].source];
            if (binary && r.b[j].kind == operand_kind::same) ++inside[r.b[j].source];
        }
        std::vector<bool> local(r.period);
        for (slot j = 0; j < r.period; ++j) {
            bool ok = inside[j] > 0;
            for (std::int64_t k = k0; ok && k < k1; ++k)
                ok = uses_[r.start + k * r.period + j] == inside[j];
            local[j] = ok;
        }
        return local;
    }

    // How op slot s's contribution to operand `pos` (0: a, 1: b) arrives (native_rules.hpp).
    unsigned mode(slot s, int pos) const {
        const slot o = pos ? p_.b_[s] : p_.a_[s];
        if (pos && op_table[std::size_t(p_.op_[s])].arity == 1) return 2;
        if (is_const_(o)) return 2;
        return ((v_.rcode[s] >> (2 * pos)) & 3) != 0 ? 1 : 0;
    }
    std::uint8_t modes(slot s) const { return std::uint8_t(mode(s, 0) | mode(s, 1) << 2); }

    static std::int64_t operand_slot(const run& r, const block_operand& o, std::int64_t k) {
        switch (o.kind) {
            case operand_kind::same: return std::int64_t(r.start) + k * r.period + o.source;
            case operand_kind::carried:
                return k ? std::int64_t(r.start) + (k - 1) * r.period + o.source
                         : std::int64_t(o.first);
            default: return std::int64_t(o.first) + k * o.stride;
        }
    }

    // Runs cut into loops over iterations whose operands are exactly the run's (a swapped
    // add or mul breaks a loop there) and whose contributions arrive the same way;
    // iteration 0 (carried values start outside) and short stretches stay straight.
    std::vector<piece> pieces(const std::vector<run>& runs, codegen_stats& st) const {
        std::vector<piece> out;
        slot s = p_.first_op();
        auto straight = [&](slot to) {
            for (; s < to; ++s) out.push_back({s, nullptr, 0, 0, {}, {}});
        };
        for (const run& r : runs) {
            straight(r.start);
            std::vector<std::vector<std::uint8_t>> sig(r.count);
            std::vector<bool> ok(r.count, true);
            for (std::int64_t k = 0; k < r.count; ++k) {
                sig[k].resize(r.period);
                for (slot j = 0; j < r.period; ++j) {
                    const slot at = slot(r.start + k * r.period + j);
                    sig[k][j] = modes(at);
                    for (int pos = 0; pos < 2; ++pos) {
                        const block_operand& o = pos ? r.b[j] : r.a[j];
                        const std::int64_t want = operand_slot(r, o, k);
                        const bool outside =
                            o.kind == operand_kind::strided || o.kind == operand_kind::invariant;
                        if (want != (pos ? p_.b_[at] : p_.a_[at]) ||
                            (outside && (want < 0 || want >= r.start)))
                            ok[k] = false;
                    }
                }
            }
            std::int64_t k = 0;
            straight(r.start + r.period);  // iteration 0
            k = 1;
            while (k < r.count) {
                std::int64_t e = k + 1;
                if (ok[k])
                    while (e < r.count && ok[e] && sig[e] == sig[k]) ++e;
                if (ok[k] && e - k >= 3) {
                    out.push_back({r.start, &r, k, e, sig[k], locals(r, k, e)});
                    ++st.loops;
                    st.looped_ops += std::size_t(e - k) * r.period;
                    s = slot(r.start + e * r.period);
                } else {
                    straight(slot(r.start + e * r.period));
                }
                k = e;
            }
        }
        straight(p_.n_slots());
        st.straight_ops = 0;
        for (const piece& pc : out) st.straight_ops += pc.r == nullptr;
        return out;
    }

    // Which slots' values the forward must leave where, for whom. external_: read at its
    // slot in V by an output, a guard, straight code, or a loop op that reads V (an
    // operand from before its run, or the carried value in a loop's first iteration).
    // internal_: read by a reverse rule of its own loop (same or next iteration). A loop
    // stores only values that are either, and an op whose values are all internal and
    // none external goes to a column (columns_); straight code stores every value.
    void observe(const std::vector<piece>& pcs) {
        const slot n = p_.n_slots();
        external_.assign(n, false);
        internal_.assign(n, false);
        for (slot s : p_.outputs_) external_[s] = true;
        for (const guard& g : p_.guards_) external_[g.lhs] = external_[g.rhs] = true;
        for (const piece& pc : pcs) {
            if (!pc.r) {  // straight code reads its operands from V
                external_[p_.a_[pc.s]] = true;
                if (op_table[std::size_t(p_.op_[pc.s])].arity == 2) external_[p_.b_[pc.s]] = true;
                continue;
            }
            const run& r = *pc.r;
            for (std::int64_t k = pc.k0; k < pc.k1; ++k)
                for (slot j = 0; j < r.period; ++j) {
                    const slot s = slot(r.start + k * r.period + j);
                    const rule_reads rr = needs(s);
                    const bool binary = op_table[std::size_t(p_.op_[s])].arity == 2;
                    for (int pos = 0; pos < 1 + binary; ++pos) {
                        const operand_kind kind = (pos ? r.b[j] : r.a[j]).kind;
                        const slot o = pos ? p_.b_[s] : p_.a_[s];
                        const bool inside = kind == operand_kind::same ||
                                            (kind == operand_kind::carried && k > pc.k0);
                        if (!inside) external_[o] = true;  // forward and reverse read V
                        if (inside && (pos ? rr.y : rr.x)) internal_[o] = true;
                    }
                    if (rr.out) internal_[s] = true;
                }
        }
        columns_.assign(pcs.size(), {});
        for (std::size_t L = 0; L < pcs.size(); ++L)
            if (pcs[L].r) columns_[L] = place_columns(pcs[L]);
    }

    // Whether op slot s's value is read after the forward at all.
    bool observed(std::int64_t s) const { return external_[s] || internal_[s]; }

    // Columns for a loop's block ops whose values are all internal and not carried:
    // element k of op j's is at V[start + columns[j] + k], so the reverse reads them
    // one after another rather than one a block apart. They go into the loop's own
    // stretch of slots [start + k0 period, start + k1 period), where nothing else is
    // stored; if one does not fit, there are none (-1).
    std::vector<std::int64_t> place_columns(const piece& pc) const {
        const run& r = *pc.r;
        const std::int64_t n = pc.k1 - pc.k0, base = std::int64_t(r.start) + pc.k0 * r.period;
        std::vector<std::int64_t> col(r.period, -1);
        std::vector<bool> want(r.period, false);
        std::vector<bool> taken(std::size_t(n * r.period), false);
        for (slot j = 0; j < r.period; ++j) {
            bool all_internal = true, any = false;
            for (std::int64_t k = pc.k0; k < pc.k1; ++k) {
                const std::int64_t s = std::int64_t(r.start) + k * r.period + j;
                all_internal = all_internal && !external_[s];
                any = any || internal_[s];
            }
            want[j] = all_internal && any;
        }
        for (slot j = 0; j < r.period; ++j)
            for (const block_operand* o : {&r.a[j], &r.b[j]})
                if (o->kind == operand_kind::carried) want[o->source] = false;
        // what the loop stores at the slots' own places stays there
        for (slot j = 0; j < r.period; ++j) {
            if (want[j]) continue;
            const bool in_loop = store_in_loop(pc, j, col);
            for (std::int64_t k = pc.k0; k < pc.k1; ++k)
                if (in_loop || (k + 1 == pc.k1 && observed(r.start + k * r.period + j)))
                    taken[std::size_t((k - pc.k0) * r.period + j)] = true;
        }
        std::size_t at = 0;
        for (slot j = 0; j < r.period; ++j) {
            if (!want[j]) continue;
            std::size_t free = 0;
            while (at < taken.size() && free < std::size_t(n)) free = taken[at++] ? 0 : free + 1;
            if (free < std::size_t(n)) return std::vector<std::int64_t>(r.period, -1);
            col[j] = base + std::int64_t(at) - n - pc.k0 - std::int64_t(r.start);
        }
        return col;
    }

    // The values op slot s's reverse step reads: those of the rules for the operands
    // whose contributions are not dropped (a constant's).
    rule_reads needs(slot s) const {
        rule_reads r{false, false, false};
        for (int pos = 0; pos < 2; ++pos) {
            if (mode(s, pos) == 2) continue;
            const rule_reads& d = reads[std::size_t(p_.op_[s])][pos];
            r = {r.x || d.x, r.y || d.y, r.out || d.out};
        }
        return r;
    }

    static std::string name(op o) { return op_table[std::size_t(o)].name; }

    static std::string strided(const char* base, const block_operand& o) {
        char buf[96];
        if (o.kind == operand_kind::strided)
            std::snprintf(buf, sizeof buf, "%s[%" PRId64 " + k * %" PRId64 "]", base,
                          std::int64_t(o.first), o.stride);
        else
            std::snprintf(buf, sizeof buf, "%s[%u]", base, o.first);
        return buf;
    }

    // In a reverse loop over piece L (iteration k's values at v = VR + k * period): block
    // op j's value, from its column or its slot, and an operand's.
    std::string reverse_own(std::size_t L, slot j) const {
        const std::int64_t c = columns_[L][j];
        if (c >= 0) return "VR[" + std::to_string(c) + " + k]";
        return "v[" + std::to_string(j) + "]";
    }
    std::string reverse_value(std::size_t L, const run& r, const block_operand& o) const {
        if (o.kind == operand_kind::same) return reverse_own(L, o.source);
        if (o.kind == operand_kind::carried)
            return "v[-" + std::to_string(r.period - o.source) + "]";
        return strided("V", o);
    }

    // Whether a loop stores block op j's value at its slot in every iteration: it has no
    // column and some iteration's is read, other than the last one of a carried value
    // (stored after the loop).
    bool store_in_loop(const piece& pc, slot j, const std::vector<std::int64_t>& col) const {
        const run& r = *pc.r;
        if (col[j] >= 0) return false;
        bool carried = false;
        for (slot i = 0; i < r.period; ++i)
            for (const block_operand* o : {&r.a[i], &r.b[i]})
                carried = carried || (o->kind == operand_kind::carried && o->source == j);
        for (std::int64_t k = pc.k0; k < pc.k1; ++k)
            if (observed(r.start + k * r.period + j) && (k + 1 < pc.k1 || !carried)) return true;
        return false;
    }

    // A loop's forward: B the slots before the run, R the run's own (R = V + start). The
    // values of this iteration (t) and the carried ones of the last (c) stay in locals.
    // Whether reassociate=True sums the loop's recurrence in partial sums: a sum whose
    // values before the last iteration nobody reads (and that has no column).
    bool reassociable(std::size_t L, const piece& pc, slot* jc, int* cpos) const {
        const run& r = *pc.r;
        if (!reassociate_ || pc.k1 - pc.k0 < 2 * sum_lanes || !sum_recurrence(pc, jc, cpos))
            return false;
        if (columns_[L][*jc] >= 0) return false;
        for (std::int64_t k = pc.k0; k + 1 < pc.k1; ++k)
            if (observed(r.start + k * r.period + *jc)) return false;
        return true;
    }

    // reassociate=True: a sum's terms go to a buffer, in blocks of sum_block iterations,
    // and are added into sum_lanes partial sums, term i (from the loop's first) into sum
    // i % sum_lanes, the first starting from the value carried in and the others from
    // -0.0 (which added changes nothing); the partial sums are then added pairwise.
    static constexpr std::int64_t sum_lanes = 8, sum_block = 256;

    // The block ops a loop computes for the gradient alone: those with a live value
    // (liveness()) in some iteration, and what they read within the loop, from this
    // iteration or the last.
    std::vector<bool> needed_ops(const piece& pc) const {
        const run& r = *pc.r;
        std::vector<bool> need(r.period, false);
        for (std::int64_t k = pc.k0; k < pc.k1; ++k)
            for (slot j = 0; j < r.period; ++j)
                if (live_[r.start + k * r.period + j]) need[j] = true;
        for (bool grew = true; grew;) {
            grew = false;
            for (slot j = 0; j < r.period; ++j) {
                if (!need[j]) continue;
                const int n_operands = op_table[std::size_t(p_.op_[r.start + j])].arity;
                for (int pos = 0; pos < n_operands; ++pos) {
                    const block_operand& o = pos ? r.b[j] : r.a[j];
                    if ((o.kind == operand_kind::same || o.kind == operand_kind::carried) &&
                        !need[o.source])
                        need[o.source] = grew = true;
                }
            }
        }
        return need;
    }

    // Whether the gradient's reverse of loop L computes again the values its rules read
    // (rg_L), so that tg_forward_gradient need not run the loop at all: a loop with
    // contribution columns whose needed values are read by its own rules alone and are
    // computed within their iteration (nothing carried).
    bool rematerialised(const piece& pc) const {
        const run& r = *pc.r;
        if (!plan_columns(pc).ok) return false;
        const std::vector<bool> need = needed_ops(pc);
        for (slot j = 0; j < r.period; ++j) {
            // (a sum's rules read neither operand, so its carried one is never read)
            const rule_reads rr = needs(slot(r.start + pc.k0 * r.period + j));
            if ((rr.x && r.a[j].kind == operand_kind::carried) ||
                (rr.y && r.b[j].kind == operand_kind::carried))
                return false;
            if (!need[j]) continue;
            const int n_operands = op_table[std::size_t(p_.op_[r.start + j])].arity;
            for (int pos = 0; pos < n_operands; ++pos)
                if ((pos ? r.b[j] : r.a[j]).kind == operand_kind::carried) return false;
            for (std::int64_t k = pc.k0; k < pc.k1; ++k)
                if (external_[r.start + k * r.period + j]) return false;
        }
        return true;
    }

    // gradient: tg_forward_gradient's loop (fg_L), which computes only needed_ops() and
    // stores those where fw_L does; empty if it need not run.
    std::string forward_loop(std::size_t L, const piece& pc, bool gradient) const {
        const run& r = *pc.r;
        std::vector<bool> need(r.period, true);
        if (gradient) {
            if (rematerialised(pc)) return std::string();
            need = needed_ops(pc);
            if (std::find(need.begin(), need.end(), true) == need.end()) return std::string();
        }
        writer w;
        w.f("TG_NATIVE_LOOP %s_%zu(const double* __restrict B, double* __restrict R) {\n",
            gradient ? "fg" : "fw", L);
        slot jc = 0;
        int cpos = 0;
        bool sum = reassociable(L, pc, &jc, &cpos);
        sum = sum && need[jc];
        std::vector<bool> carried(r.period, false);
        for (slot j = 0; j < r.period; ++j)
            for (const block_operand* o : {&r.a[j], &r.b[j]})
                if (o->kind == operand_kind::carried) carried[o->source] = true;
        const std::vector<std::int64_t>& col = columns_[L];
        if (sum) {
            w.f("double acc[%" PRId64 "] = {R[%" PRId64 "]", sum_lanes,
                (pc.k0 - 1) * r.period + jc);
            for (std::int64_t l = 1; l < sum_lanes; ++l) w.put(", -0.0");
            w.f("};\ndouble u[%" PRId64 "];\n", sum_block);
            w.f("for (std::int64_t b = %" PRId64 "; b < %" PRId64 "; b += %" PRId64 ") {\n", pc.k0,
                pc.k1, sum_block);
            w.f("const std::int64_t e = b + %" PRId64 " < %" PRId64 " ? b + %" PRId64 " : %" PRId64
                ";\n",
                sum_block, pc.k1, sum_block, pc.k1);
            w.put("for (std::int64_t k = b; k < e; ++k) {\n");
        } else {
            for (slot j = 0; j < r.period; ++j)
                if (carried[j] && need[j])
                    w.f("double c%u = R[%" PRId64 "];\n", j, (pc.k0 - 1) * r.period + j);
            w.f("for (std::int64_t k = %" PRId64 "; k < %" PRId64 "; ++k) {\n", pc.k0, pc.k1);
        }
        bool slots = false;
        for (slot j = 0; j < r.period; ++j) slots = slots || (need[j] && store_in_loop(pc, j, col));
        if (slots) w.f("double* const r = R + k * %u;\n", r.period);
        auto value = [&](const block_operand& o) -> std::string {
            if (o.kind == operand_kind::same) return "t" + std::to_string(o.source);
            if (o.kind == operand_kind::carried) return "c" + std::to_string(o.source);
            return strided("B", o);
        };
        for (slot j = 0; j < r.period; ++j) {
            if (!need[j]) continue;
            if (sum && j == jc) {  // the term (s - t is s + -t, exactly)
                const std::string t = value(cpos ? r.a[j] : r.b[j]);
                w.f("u[k - b] = %s%s;\n", p_.op_[r.start + j] == op::sub ? "-" : "", t.c_str());
                continue;
            }
            w.f("const double t%u = K::%s::forward(%s, %s);\n", j,
                name(p_.op_[r.start + j]).c_str(), value(r.a[j]).c_str(), value(r.b[j]).c_str());
            if (col[j] >= 0) w.f("R[%" PRId64 " + k] = t%u;\n", col[j], j);
            if (store_in_loop(pc, j, col)) w.f("r[%u] = t%u;\n", j, j);
        }
        for (slot j = 0; j < r.period; ++j)
            if (carried[j] && need[j] && !sum) w.f("c%u = t%u;\n", j, j);
        w.put("}\n");
        if (sum) {
            w.f("std::int64_t i = 0;\n"
                "for (; i + %" PRId64 " <= e - b; i += %" PRId64
                ")\n"
                "for (int l = 0; l < %" PRId64
                "; ++l) acc[l] += u[i + l];\n"
                "for (; i < e - b; ++i) acc[i %% %" PRId64 "] += u[i];\n}\n",
                sum_lanes, sum_lanes, sum_lanes, sum_lanes);
            std::vector<std::string> level;
            for (std::int64_t l = 0; l < sum_lanes; ++l)
                level.push_back("acc[" + std::to_string(l) + "]");
            while (level.size() > 1) {
                std::vector<std::string> next;
                for (std::size_t q = 0; q < level.size(); q += 2)
                    next.push_back("(" + level[q] + " + " + level[q + 1] + ")");
                level = next;
            }
            w.f("const double c%u = %s;\n", jc, level[0].c_str());
        }
        for (slot j = 0; j < r.period; ++j)
            if (carried[j] && need[j] && col[j] < 0 && !store_in_loop(pc, j, col) &&
                observed(r.start + (pc.k1 - 1) * r.period + j))
                w.f("R[%" PRId64 "] = c%u;\n", (pc.k1 - 1) * r.period + j, j);
        w.put("}\n");
        return w.s;
    }

    // Contribution columns: a loop's reverse as two loops that vectorise, for a run whose
    // one recurrence is an add (or a sub's x) reading its own last value, all of whose
    // other block ops are local to their iteration, and whose contributions to slots
    // before the run all go to strided operands of one positive stride. The recurrence's
    // adjoint is then the same value G in every iteration (d/dx of add and of sub's x is
    // g, exactly), so no iteration waits for another: the first loop runs each
    // iteration's rules with G and stores its contributions to slots before the run in
    // columns (one per operand that gets them); the second adds them up, each slot's in
    // the order the interpreter adds them (iterations downward, block ops newest first).
    // The columns live in the run's stretch of the adjoints, which nothing reads: only
    // the recurrence's slots are not local, and their adjoints are all G.
    struct site {
        slot j;
        int pos;
        unsigned mode;  // 0 added, 1 stored (native_rules.hpp)
        std::int64_t first;
    };
    struct column_plan {
        bool ok = false;
        slot jc = 0;  // the recurrence's block op
        int cpos = 0;  // where it reads its last value
        std::int64_t stride = 0;
        std::vector<site> sites;  // in the interpreter's order: newest op first, a then b
    };
    // A target slot's contributions beyond this many at the ends of its stretch (where
    // not every column has one) are written out one by one; a loop with more is not split.
    static constexpr std::int64_t max_edge_targets = 64;

    // Whether the loop's one recurrence is a sum: an add (or a sub's x) reading its own
    // last value (block op *jc, operand *cpos), which nothing else reads before the last
    // iteration. Its adjoint is then passed on unchanged, and its value is a running sum.
    bool sum_recurrence(const piece& pc, slot* jc, int* cpos) const {
        const run& r = *pc.r;
        int carried = 0;
        for (slot j = 0; j < r.period; ++j)
            for (int pos = 0; pos < 2; ++pos) {
                const block_operand& o = pos ? r.b[j] : r.a[j];
                if (pos && op_table[std::size_t(p_.op_[r.start + j])].arity == 1) continue;
                if (o.kind != operand_kind::carried) continue;
                ++carried;
                *jc = j;
                *cpos = pos;
                if (o.source != j) return false;
            }
        if (carried != 1) return false;
        const op co = p_.op_[r.start + *jc];
        if (!(co == op::add || (co == op::sub && *cpos == 0))) return false;
        for (std::int64_t k = pc.k0; k + 1 < pc.k1; ++k)
            if (uses_[r.start + k * r.period + *jc] != 1) return false;
        return true;
    }

    column_plan plan_columns(const piece& pc) const {
        const run& r = *pc.r;
        column_plan plan;
        if (pc.k1 - pc.k0 < 8 || !sum_recurrence(pc, &plan.jc, &plan.cpos)) return plan;
        if (((pc.modes[plan.jc] >> (2 * plan.cpos)) & 3u) != 1) return plan;
        for (slot j = 0; j < r.period; ++j)
            if (j != plan.jc && !pc.local[j]) return plan;
        for (slot j = r.period; j-- > 0;)
            for (int pos = 0; pos < 2; ++pos) {
                const unsigned m = (pc.modes[j] >> (2 * pos)) & 3u;
                const block_operand& o = pos ? r.b[j] : r.a[j];
                if (m == 2 || o.kind == operand_kind::same || o.kind == operand_kind::carried)
                    continue;
                if (o.kind != operand_kind::strided || o.stride <= 0) return plan;
                if (plan.stride && plan.stride != o.stride) return plan;
                plan.stride = o.stride;
                plan.sites.push_back({j, pos, m, std::int64_t(o.first)});
            }
        if (plan.sites.empty() || plan.sites.size() > r.period) return plan;
        std::int64_t lo = plan.sites[0].first, hi = lo;
        for (const site& c : plan.sites) lo = std::min(lo, c.first), hi = std::max(hi, c.first);
        if ((hi - lo) / plan.stride * 2 * std::int64_t(plan.sites.size()) > max_edge_targets)
            return plan;
        plan.ok = true;
        return plan;
    }

    // remat: the gradient's (rg_L, rematerialised()): each iteration first computes
    // needed_ops() again, and the rules read those values, not V.
    std::string reverse_columns(std::size_t L, const piece& pc, const column_plan& plan,
                                bool remat) const {
        const run& r = *pc.r;
        const std::int64_t n = pc.k1 - pc.k0, s = plan.stride;
        writer w;
        w.f("TG_NATIVE_LOOP %s_%zu(const double* __restrict V, double* __restrict AB, "
            "double* __restrict AR) {\n",
            remat ? "rg" : "rv", L);
        w.f("const double* const VR = V + %u;\n", r.start);
        w.f("const double G = AR[%" PRId64 "];\n", (pc.k1 - 1) * r.period + plan.jc);
        w.f("AR[%" PRId64 "] = G;\n", (pc.k0 - 1) * r.period + plan.jc);
        w.f("double* const C = AR + %" PRId64 ";\n", pc.k0 * r.period);
        // An operand that is the same in every iteration is read before the loop: GCC then
        // unswitches the loop on a rule's zero-adjoint test of an invariant adjoint (100 *
        // G, say) instead of blending both outcomes in every iteration.
        for (slot j = 0; j < r.period; ++j) {
            const rule_reads rr = needs(slot(r.start + pc.k0 * r.period + j));
            if (rr.x && r.a[j].kind == operand_kind::invariant)
                w.f("const double x%u = %s;\n", j, strided("V", r.a[j]).c_str());
            if (rr.y && r.b[j].kind == operand_kind::invariant)
                w.f("const double y%u = %s;\n", j, strided("V", r.b[j]).c_str());
        }
        w.f("for (std::int64_t k = %" PRId64 "; k < %" PRId64 "; ++k) {\n", pc.k0, pc.k1);
        std::function<std::string(slot)> own = [&](slot j) { return reverse_own(L, j); };
        std::function<std::string(const block_operand&)> value = [&](const block_operand& o) {
            return reverse_value(L, r, o);
        };
        if (remat) {
            own = [](slot j) { return "t" + std::to_string(j); };
            value = [&](const block_operand& o) {
                return o.kind == operand_kind::same ? own(o.source) : strided("V", o);
            };
            const std::vector<bool> need = needed_ops(pc);
            for (slot j = 0; j < r.period; ++j)
                if (need[j])
                    w.f("const double t%u = K::%s::forward(%s, %s);\n", j,
                        name(p_.op_[r.start + j]).c_str(), value(r.a[j]).c_str(),
                        value(r.b[j]).c_str());
        } else {
            w.f("const double* const v = VR + k * %u;\n", r.period);
        }
        // A target's contributions from its latest iteration come first: those with the
        // smallest `first` of its residue class. When the first of them is a store, the
        // first loop adds them up itself and stores the sum into the target (direct).
        std::vector<std::int64_t> residues;
        for (const site& c : plan.sites)
            if (std::find(residues.begin(), residues.end(), c.first % s) == residues.end())
                residues.push_back(c.first % s);
        std::vector<bool> direct(plan.sites.size(), false);
        std::vector<std::vector<std::size_t>> groups;  // per direct class, its sites
        for (std::int64_t res : residues) {
            std::int64_t lo = -1;
            for (const site& c : plan.sites)
                if (c.first % s == res) lo = lo < 0 ? c.first : std::min(lo, c.first);
            std::vector<std::size_t> group;
            for (std::size_t m = 0; m < plan.sites.size(); ++m)
                if (plan.sites[m].first == lo) group.push_back(m);
            if (plan.sites[group[0]].mode != 1) continue;
            for (std::size_t m : group) direct[m] = true;
            groups.push_back(group);
        }
        for (slot j = 0; j < r.period; ++j)
            w.f(j == plan.jc ? "double g%u = G;\n" : "double g%u = 0.0;\n", j);
        for (std::size_t m = 0; m < plan.sites.size(); ++m)
            if (direct[m]) w.f("double q%zu;\n", m);
        w.put("double ignored;\n");
        auto site_of = [&](slot j, int pos) -> std::int64_t {
            for (std::size_t m = 0; m < plan.sites.size(); ++m)
                if (plan.sites[m].j == j && plan.sites[m].pos == pos) return std::int64_t(m);
            return -1;
        };
        for (slot j = r.period; j-- > 0;) {
            const op o = p_.op_[r.start + j];
            unsigned fm[2];
            std::string where[2];
            for (int pos = 0; pos < 2; ++pos) {
                const block_operand& b = pos ? r.b[j] : r.a[j];
                fm[pos] = (pc.modes[j] >> (2 * pos)) & 3u;
                const std::int64_t m = site_of(j, pos);
                if (m >= 0 && direct[std::size_t(m)]) {
                    fm[pos] = plan.sites[std::size_t(m)].mode == 1 ? 1 : 3;
                    where[pos] = "&q" + std::to_string(m);
                } else if (m >= 0) {
                    fm[pos] = 3;
                    where[pos] =
                        "C + " + std::to_string(m * n) + " + (k - " + std::to_string(pc.k0) + ")";
                } else if (b.kind == operand_kind::same) {
                    where[pos] = "&g" + std::to_string(b.source);
                } else {  // the recurrence's own (its adjoint is G), or dropped
                    where[pos] = "&ignored";
                }
            }
            // Values are read before the rule's zero-adjoint test: GCC vectorises a
            // load it may make unconditional, not a masked load of an invariant.
            const rule_reads rr = needs(slot(r.start + pc.k0 * r.period + j));
            if (rr.x && r.a[j].kind != operand_kind::invariant)
                w.f("const double x%u = %s;\n", j, value(r.a[j]).c_str());
            if (rr.y && r.b[j].kind != operand_kind::invariant)
                w.f("const double y%u = %s;\n", j, value(r.b[j]).c_str());
            if (rr.out) w.f("const double o%u = %s;\n", j, own(j).c_str());
            const std::string js = std::to_string(j);
            w.f("rvp<K::%s, %u, %u>(%s, %s, %s, g%u, %s, %s);\n", name(o).c_str(), fm[0], fm[1],
                rr.x ? ("x" + js).c_str() : "unread", rr.y ? ("y" + js).c_str() : "unread",
                rr.out ? ("o" + js).c_str() : "unread", j, where[0].c_str(), where[1].c_str());
        }
        for (const std::vector<std::size_t>& group : groups) {
            w.f("{\ndouble a = q%zu;\n", group[0]);
            for (std::size_t q = 1; q < group.size(); ++q) w.f("a += q%zu;\n", group[q]);
            w.f("AB[%" PRId64 " + k * %" PRId64 "] = a;\n}\n", plan.sites[group[0]].first, s);
        }
        w.put("(void)ignored;\n}\n");
        // Each target slot first + k * s gets its contributions from the iterations
        // downward, so from the columns of the smallest `first` up (ties: block order).
        std::vector<std::size_t> order(plan.sites.size());
        for (std::size_t m = 0; m < order.size(); ++m) order[m] = m;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
            return plan.sites[x].first < plan.sites[y].first;
        });
        auto sum_into = [&](const std::string& target, const std::string& i, std::int64_t T) {
            std::string t = "double a = " + target + ";\n";
            bool any = false;
            for (std::size_t m : order) {
                const site& c = plan.sites[m];
                if (direct[m] || (T - c.first) % s) continue;
                const std::int64_t k = (T - c.first) / s;
                if (k < pc.k0 || k >= pc.k1) continue;
                const std::int64_t at = std::int64_t(m) * n + k - pc.k0;
                t += std::string(c.mode == 1 ? "a = " : "a += ") + "C[" + std::to_string(at) + i +
                     "];\n";
                any = true;
            }
            return any ? "{\n" + t + target + " = a;\n}\n" : std::string();
        };
        for (std::int64_t res : residues) {
            std::int64_t lo = -1, hi = -1;  // the firsts of this residue
            bool left = false;              // contributions not added by the first loop
            for (std::size_t m = 0; m < plan.sites.size(); ++m)
                left = left || (plan.sites[m].first % s == res && !direct[m]);
            if (!left) continue;
            for (const site& c : plan.sites)
                if (c.first % s == res) {
                    lo = lo < 0 ? c.first : std::min(lo, c.first);
                    hi = std::max(hi, c.first);
                }
            // targets hi + k0 s .. lo + (k1 - 1) s get a contribution from every column
            const std::int64_t mid0 = hi + pc.k0 * s, mid1 = lo + (pc.k1 - 1) * s;
            for (std::int64_t T = lo + pc.k0 * s; T <= hi + (pc.k1 - 1) * s; T += s) {
                if (T >= mid0 && T <= mid1) continue;
                w.put(sum_into("AB[" + std::to_string(T) + "]", "", T));
            }
            if (mid0 <= mid1) {
                // in the loop, T stands for mid0 and i counts targets from there
                w.f("for (std::int64_t i = 0; i < %" PRId64 "; ++i) {\n", (mid1 - mid0) / s + 1);
                w.put(sum_into("AB[" + std::to_string(mid0) + " + i * " + std::to_string(s) + "]",
                               " + i", mid0));
                w.put("}\n");
            }
        }
        w.put("}\n");
        return w.s;
    }

    // A loop's reverse, iterations downward, block ops newest first: AB the adjoints
    // before the run, AR the run's own (AR = A + start).
    std::string reverse_loop(std::size_t L, const piece& pc) const {
        const run& r = *pc.r;
        if (const column_plan plan = plan_columns(pc); plan.ok) {
            std::string code = reverse_columns(L, pc, plan, false);
            if (rematerialised(pc)) code += reverse_columns(L, pc, plan, true);
            return code;
        }
        writer w;
        w.f("TG_NATIVE_LOOP rv_%zu(const double* __restrict V, double* __restrict AB, "
            "double* __restrict AR) {\n",
            L);
        w.f("const double* const VR = V + %u;\n", r.start);
        w.f("for (std::int64_t k = %" PRId64 "; k-- > %" PRId64 ";) {\n", pc.k1, pc.k0);
        w.f("const double* const v = VR + k * %u;\ndouble* const r = AR + k * %u;\n", r.period,
            r.period);
        auto own = [&](slot j) { return reverse_own(L, j); };
        auto value = [&](const block_operand& o) { return reverse_value(L, r, o); };
        // A local adjoint's first contribution is a store (its last user is in this
        // iteration), so its 0.0 is never read; it only keeps the compiler quiet.
        for (slot j = 0; j < r.period; ++j)
            if (pc.local[j]) w.f("double g%u = 0.0;\n", j);
        auto where = [&](const block_operand& o) -> std::string {
            if (o.kind == operand_kind::same)
                return pc.local[o.source] ? "&g" + std::to_string(o.source)
                                          : "r + " + std::to_string(o.source);
            if (o.kind == operand_kind::carried)
                return "r - " + std::to_string(r.period - o.source);
            return "&" + strided("AB", o);
        };
        for (slot j = r.period; j-- > 0;) {
            const std::string g =
                pc.local[j] ? "g" + std::to_string(j) : "r[" + std::to_string(j) + "]";
            // a value the rule does not read may not be stored: it gets NaN, never memory
            const op o = p_.op_[r.start + j];
            const rule_reads rr = needs(slot(r.start + pc.k0 * r.period + j));
            w.f("rvp<K::%s, %u, %u>(%s, %s, %s, %s, %s, %s);\n", name(o).c_str(), pc.modes[j] & 3u,
                unsigned(pc.modes[j]) >> 2, rr.x ? value(r.a[j]).c_str() : "unread",
                rr.y ? value(r.b[j]).c_str() : "unread", rr.out ? own(j).c_str() : "unread",
                g.c_str(), where(r.a[j]).c_str(), where(r.b[j]).c_str());
        }
        w.put("}\n}\n");
        return w.s;
    }

    std::size_t sums_reassociated(const std::vector<piece>& pcs) const {
        std::size_t n = 0;
        slot jc;
        int cpos;
        for (std::size_t L = 0; L < pcs.size(); ++L)
            n += pcs[L].r && reassociable(L, pcs[L], &jc, &cpos);
        return n;
    }

    std::string loops(const std::vector<piece>& pcs) {
        std::string s;
        gradient_loop_.assign(pcs.size(), false);
        remat_.assign(pcs.size(), false);
        for (std::size_t L = 0; L < pcs.size(); ++L) {
            if (!pcs[L].r) continue;
            const std::string fg = forward_loop(L, pcs[L], true);
            gradient_loop_[L] = !fg.empty();
            remat_[L] = rematerialised(pcs[L]);
            s += forward_loop(L, pcs[L], false) + fg + reverse_loop(L, pcs[L]);
        }
        return s;
    }

    // Which values the gradient needs: those a reverse rule reads (needs()) or a guard,
    // and what computing them reads, back to the inputs. tg_forward_gradient computes
    // these alone (an output's value, a sum that only it reads, are left out).
    void liveness() {
        const slot n = p_.n_slots();
        live_.assign(n, false);
        for (const guard& g : p_.guards_) live_[g.lhs] = live_[g.rhs] = true;
        for (slot s = p_.first_op(); s < n; ++s) {
            const rule_reads rr = needs(s);
            if (rr.x) live_[p_.a_[s]] = true;
            if (rr.y) live_[p_.b_[s]] = true;
            if (rr.out) live_[s] = true;
        }
        for (slot s = n; s-- > p_.first_op();) {
            if (!live_[s]) continue;
            live_[p_.a_[s]] = true;
            if (op_table[std::size_t(p_.op_[s])].arity == 2) live_[p_.b_[s]] = true;
        }
    }

    // Straight-line code goes into functions of at most this many ops: compilers take
    // time superlinear in a function's size (GCC -O2 took 8.6 s for one function of 1180
    // ops of a random program).
    static constexpr std::size_t chunk_ops = 128;

    // The forward sweep: definitions of its straight-line chunks (into defs), and the
    // body of tg_forward, which calls them and the loops in slot order.
    // gradient: tg_forward_gradient's (the live values alone: liveness()).
    std::string forward(const std::vector<piece>& pcs, std::string& defs, bool gradient) const {
        writer body, chunk;
        std::size_t n_chunk = 0, chunks = 0;
        const char* prefix = gradient ? "sg" : "sf";
        auto flush = [&] {
            if (!n_chunk) return;
            writer d;
            d.f("TG_NATIVE_LOOP %s_%zu(double* __restrict V) {\n", prefix, chunks);
            defs += d.s + chunk.s + "}\n";
            body.f("%s_%zu(V);\n", prefix, chunks++);
            chunk.s.clear();
            n_chunk = 0;
        };
        for (std::size_t L = 0; L < pcs.size(); ++L) {
            const piece& pc = pcs[L];
            if (pc.r) {
                flush();
                if (!gradient || gradient_loop_[L])
                    body.f("%s_%zu(V, V + %u);\n", gradient ? "fg" : "fw", L, pc.r->start);
                continue;
            }
            if (gradient && !live_[pc.s]) continue;
            chunk.f("fw<K::%s>(V, %u, %u, %u);\n", name(p_.op_[pc.s]).c_str(), pc.s, p_.a_[pc.s],
                    p_.b_[pc.s]);
            if (++n_chunk == chunk_ops) flush();
        }
        flush();
        return body.s;
    }

    // The bodies of tg_reverse and of tg_reverse_gradient (which calls rg_L for the
    // rematerialised loops), with the definitions of their shared straight-line chunks.
    std::pair<std::string, std::string> reverse(const std::vector<piece>& pcs,
                                                std::string& defs) const {
        writer body, gradient, chunk;
        std::size_t n_chunk = 0, chunks = 0;
        auto flush = [&] {
            if (!n_chunk) return;
            writer d;
            d.f("TG_NATIVE_LOOP sr_%zu(const double* __restrict V, double* __restrict A) {\n",
                chunks);
            defs += d.s + chunk.s + "}\n";
            body.f("sr_%zu(V, A);\n", chunks);
            gradient.f("sr_%zu(V, A);\n", chunks++);
            chunk.s.clear();
            n_chunk = 0;
        };
        for (std::size_t L = pcs.size(); L-- > 0;) {
            const piece& pc = pcs[L];
            if (pc.r) {
                flush();
                body.f("rv_%zu(V, A, A + %u);\n", L, pc.r->start);
                gradient.f("%s_%zu(V, A, A + %u);\n", remat_[L] ? "rg" : "rv", L, pc.r->start);
                continue;
            }
            const unsigned m = modes(pc.s);
            chunk.f("rv<K::%s, %u, %u>(V, A, %u, %u, %u);\n", name(p_.op_[pc.s]).c_str(), m & 3,
                    m >> 2, pc.s, p_.a_[pc.s], p_.b_[pc.s]);
            if (++n_chunk == chunk_ops) flush();
        }
        flush();
        return {body.s, gradient.s};
    }

private:
    const program& p_;
    program_view v_;
    consts_in_range is_const_;
    std::vector<std::uint32_t> uses_;  // per slot: operand references (outputs: ~0)
    bool reassociate_;
    std::vector<bool> external_, internal_;            // observe()
    std::vector<std::vector<std::int64_t>> columns_;  // per piece: place_columns()
    std::vector<bool> live_;                           // per slot: liveness()
    std::vector<bool> gradient_loop_;                  // per piece: loops() made fg_L
    std::vector<bool> remat_;                          // per piece: loops() made rg_L
};

void u32_array(writer& w, const char* name, const std::vector<slot>& xs) {
    w.f("static const u32 %s[] = {", name);
    for (std::size_t k = 0; k < xs.size(); ++k) w.f(k % 16 ? " %uu," : "\n%uu,", xs[k]);
    w.put("};\n");
}

}  // namespace

std::string native_source(const program& p, codegen_stats* stats, bool reassociate) {
    codegen_stats st;
    generator g(p, reassociate);
    const std::vector<run> runs = find_runs(p.view());
    const std::vector<piece> pcs = g.pieces(runs, st);
    g.observe(pcs);
    st.sums_reassociated = g.sums_reassociated(pcs);
    g.liveness();
    const slot n_in = p.n_inputs, n_const = p.first_op() - p.n_inputs;
    writer w;
    w.f("// Generated by tapegrad (F.compile()): %u inputs, %u constants, %u ops, %zu loops%s.\n",
        n_in, n_const, p.n_slots() - p.first_op(), st.loops,
        reassociate ? ", sums reassociated" : "");
    w.put(
        "#include \"tapegrad/native_rules.hpp\"\n"
        "namespace K = tapegrad::kernel;\n"
        "using tapegrad::native::fw;\n"
        "using tapegrad::native::rv;\n"
        "using tapegrad::native::rvp;\n"
        "using tapegrad::native::u32;\n"
        "using tapegrad::native::unread;\n");
    w.f("TG_NATIVE_EXPORT const std::uint64_t tg_digest = 0x%016" PRIx64 "ull;\n",
        program_digest(p));
    w.put(g.loops(pcs));
    std::string defs;
    const std::string forward_body = g.forward(pcs, defs, false);
    const std::string gradient_body = g.forward(pcs, defs, true);
    const auto [reverse_body, reverse_gradient_body] = g.reverse(pcs, defs);
    w.put(defs);
    if (n_const) {
        w.put("static const std::uint64_t constant_bits[] = {");
        for (slot c = 0; c < n_const; ++c) {
            std::uint64_t b;
            std::memcpy(&b, &p.init_[n_in + c], sizeof b);
            w.f(c % 6 ? " 0x%" PRIx64 "ull," : "\n0x%" PRIx64 "ull,", b);
        }
        w.put("};\n");
    }
    for (const char* name : {"tg_forward", "tg_forward_gradient"}) {
        w.f("TG_NATIVE_EXPORT void %s(const double* __restrict x, double* __restrict V) {\n", name);
        if (n_in) w.f("std::memcpy(V, x, %u * sizeof(double));\n", n_in);
        if (n_const) w.f("std::memcpy(V + %u, constant_bits, sizeof constant_bits);\n", n_in);
        w.put(name == std::string_view("tg_forward") ? forward_body : gradient_body);
        w.put("}\n");
    }
    if (!p.zero_slots().empty()) u32_array(w, "zero", p.zero_slots());
    if (!p.outputs_.empty()) u32_array(w, "outputs", p.outputs_);
    for (const char* name : {"tg_reverse", "tg_reverse_gradient"}) {
        w.f("TG_NATIVE_EXPORT void %s(const double* __restrict V, double* __restrict A,\n"
            "                         const double* seed, double* grad) {\n",
            name);
        if (!p.zero_slots().empty()) w.put("for (u32 z : zero) A[z] = 0.0;\n");
        if (!p.outputs_.empty())
            w.f("for (u32 k = 0; k < %zuu; ++k) A[outputs[k]] += seed[k];\n", p.outputs_.size());
        const bool gradient = name != std::string_view("tg_reverse");
        w.put(gradient ? reverse_gradient_body : reverse_body);
        // tg_reverse adds the inputs' adjoints to grad; tg_reverse_gradient stores them,
        // as 0.0 + A[i] would be (a -0.0 adjoint becomes +0.0)
        if (n_in)
            w.f("for (u32 i = 0; i < %uu; ++i) grad[i] %s A[i]%s;\n", n_in,
                gradient ? "=" : "+=", gradient ? " + 0.0" : "");
        w.put("}\n");
    }
    if (stats) *stats = st;
    return std::move(w.s);
}

// ------------------------------------------------------------------ loading

native_code::native_code(const std::string& path, const program& p) : path_(path) {
    handle_ = shared_library::open(path);
    if (!handle_)
        throw std::runtime_error("native code: cannot load " + path + ": " +
                                 shared_library::error());
    const auto* digest =
        static_cast<const std::uint64_t*>(shared_library::symbol(handle_, "tg_digest"));
    void* f = shared_library::symbol(handle_, "tg_forward");
    void* fg = shared_library::symbol(handle_, "tg_forward_gradient");
    void* r = shared_library::symbol(handle_, "tg_reverse");
    void* rg = shared_library::symbol(handle_, "tg_reverse_gradient");
    if (!digest || !f || !fg || !r || !rg) {
        shared_library::close(handle_);
        throw std::runtime_error("native code: " + path +
                                 " lacks tg_digest or a sweep (tg_forward, "
                                 "tg_forward_gradient, tg_reverse, tg_reverse_gradient): not "
                                 "made by tapegrad's native_source");
    }
    if (*digest != program_digest(p)) {
        shared_library::close(handle_);
        throw std::invalid_argument("native code: " + path +
                                    " was generated from another program (digest differs)");
    }
    forward = reinterpret_cast<forward_fn>(f);
    forward_gradient = reinterpret_cast<forward_fn>(fg);
    reverse_gradient = reinterpret_cast<reverse_fn>(rg);
    reverse = reinterpret_cast<reverse_fn>(r);
}

native_code::~native_code() { shared_library::close(handle_); }

}  // namespace tapegrad
