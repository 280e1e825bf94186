#include "tapegrad/program.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "tapegrad/lanes.hpp"
#include "tapegrad/sweep.hpp"

namespace tapegrad {

// ------------------------------------------------------------------ compile

namespace {

// Where a tape node lives in the program being built.
struct ref {
    enum kind_t : std::uint8_t { none, input, constant, instr } kind = none;
    std::uint32_t k = 0;  // input number, constant number, or instruction number
};

std::uint64_t mix(std::uint64_t z) {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

std::uint64_t key(ref r) { return (std::uint64_t(r.kind) << 32) | r.k; }

// compile()'s working arrays, kept per thread between calls: fresh memory costs about
// 1 ms per MB here (page faults), more than compiling a large graph itself.
struct compile_scratch {
    std::vector<std::uint8_t> needed;
    std::vector<ref> where;
    std::vector<op> ops;
    std::vector<ref> args_a, args_b;
    struct users {
        std::uint32_t head = 0;   // the latest filed user: instruction number + 1 (0: none)
        std::uint32_t count = 0;  // users so far, filed or not
        std::uint64_t filed = 0;  // bit hash % 64 set for each filed user (a Bloom filter)
    };
    std::vector<users> users_in, users_const, users_instr;
    std::vector<std::uint32_t> next_user;  // per instruction: the user filed before it + 1
    std::vector<std::uint32_t> busy;       // instructions in the table
    std::vector<std::uint32_t> table;      // open addressing: instruction number + 1
    std::vector<std::uint32_t> const_table;  // open addressing: constant number + 1
};

// CSE files each instruction under its newer operand (the larger key). A node's first
// kFiled users form a list through next_user; a lookup walks the one list its (op, a, b)
// could be on, and only if the list's filter has its hash bit (a matmul gives a node
// many distinct users, all misses). Those entries were made recently, so they are in
// cache. Only the users of busy nodes (more than kFiled) go to a hash table, whose probes
// land anywhere in it. With one table for everything, CSE took about 1.5 ms of the 65k-op
// MLP step's trace (cache misses); this way about 0.45 ms. Either way exactly the earlier
// instruction with the same (op, a, b) is found, so the program is the same.
struct builder {
    static constexpr std::uint32_t kFiled = 16;
    using users = compile_scratch::users;

    builder(compile_scratch& s, std::size_t n_inputs)
        : ops(s.ops), args_a(s.args_a), args_b(s.args_b), users_in(s.users_in),
          users_const(s.users_const), users_instr(s.users_instr), next_user(s.next_user),
          busy(s.busy), table(s.table), const_table(s.const_table) {
        ops.clear();
        args_a.clear();
        args_b.clear();
        users_in.assign(n_inputs, users{});
        users_const.clear();
        users_instr.clear();
        next_user.clear();
        busy.clear();
        table.clear();
        const_table.assign(64, 0);
    }
    std::vector<double> consts;  // deduplicated by bit pattern
    std::vector<op>& ops;
    std::vector<ref>& args_a;
    std::vector<ref>& args_b;
    std::vector<users>& users_in;
    std::vector<users>& users_const;
    std::vector<users>& users_instr;
    std::vector<std::uint32_t>& next_user;
    std::vector<std::uint32_t>& busy;
    std::vector<std::uint32_t>& table;
    std::vector<std::uint32_t>& const_table;

    ref constant(double v) {
        const std::uint64_t b = bits(v);
        std::size_t mask = const_table.size() - 1;
        for (std::size_t i = mix(b) & mask;; i = (i + 1) & mask) {
            const std::uint32_t e = const_table[i];
            if (e == 0) break;
            if (bits(consts[e - 1]) == b) return {ref::constant, e - 1};
        }
        const auto k = std::uint32_t(consts.size());
        consts.push_back(v);
        users_const.emplace_back();
        if (2 * consts.size() > const_table.size()) {
            const_table.assign(2 * const_table.size(), 0);
            mask = const_table.size() - 1;
            for (std::uint32_t c = 0; c < consts.size(); ++c) file_const(c, mask);
        } else {
            file_const(k, mask);
        }
        return {ref::constant, k};
    }

    // The instruction computing (o, a, b): an earlier one (CSE), or a new one.
    ref instruction(op o, ref a, ref b, bool cse) {
        const auto next = std::uint32_t(ops.size());
        if (cse) {
            users& u = users_of(key(a) < key(b) ? b : a);
            const std::uint64_t h = hash(o, a, b), bit = std::uint64_t(1) << (h & 63);
            if (u.filed & bit)
                for (std::uint32_t e = u.head; e != 0; e = next_user[e - 1])
                    if (same(e - 1, o, a, b)) return {ref::instr, e - 1};
            if (u.count < kFiled) {
                next_user.push_back(u.head);
                u.head = next + 1;
                u.filed |= bit;
            } else {
                if (const std::uint32_t e = in_table(o, a, b, h, next)) return {ref::instr, e - 1};
                next_user.push_back(0);
            }
            ++u.count;
            users_instr.emplace_back();  // may move u: not used below
        }
        ops.push_back(o);
        args_a.push_back(a);
        args_b.push_back(b);
        return {ref::instr, next};
    }

    void reserve(std::size_t n) {
        ops.reserve(n);
        args_a.reserve(n);
        args_b.reserve(n);
        users_instr.reserve(n);
        next_user.reserve(n);
    }

private:
    static std::uint64_t bits(double v) {
        std::uint64_t b;
        std::memcpy(&b, &v, sizeof b);
        return b;
    }
    void file_const(std::uint32_t c, std::size_t mask) {
        std::size_t i = mix(bits(consts[c])) & mask;
        while (const_table[i] != 0) i = (i + 1) & mask;
        const_table[i] = c + 1;
    }
    users& users_of(ref r) {
        switch (r.kind) {
            case ref::input: return users_in[r.k];
            case ref::constant: return users_const[r.k];
            default: return users_instr[r.k];
        }
    }
    bool same(std::uint32_t e, op o, ref a, ref b) const {
        return ops[e] == o && key(args_a[e]) == key(a) && key(args_b[e]) == key(b);
    }
    // Two independent multiplies and a fold: mix(mix()) was a tenth of compile's time.
    static std::uint64_t hash(op o, ref a, ref b) {
        const std::uint64_t h = key(a) * 0x9E3779B97F4A7C15ull ^
                                ((key(b) << 8) | std::uint64_t(o)) * 0xBF58476D1CE4E5B9ull;
        return h ^ (h >> 32);
    }
    // The table's entry for (o, a, b) + 1 (h: their hash); if none, files `next`, returns 0.
    std::uint32_t in_table(op o, ref a, ref b, std::uint64_t h, std::uint32_t next) {
        if (2 * (busy.size() + 1) > table.size()) rehash(std::max<std::size_t>(64, 4 * busy.size()));
        const std::size_t mask = table.size() - 1;
        for (std::size_t i = (h >> 6) & mask;; i = (i + 1) & mask) {
            const std::uint32_t e = table[i];
            if (e == 0) {
                table[i] = next + 1;
                busy.push_back(next);
                return 0;
            }
            if (same(e - 1, o, a, b)) return e;
        }
    }
    void rehash(std::size_t want) {
        std::size_t cap = 64;
        while (cap < want) cap *= 2;
        table.assign(cap, 0);
        for (std::uint32_t e : busy)
            for (std::size_t i = (hash(ops[e], args_a[e], args_b[e]) >> 6) & (cap - 1);;
                 i = (i + 1) & (cap - 1))
                if (table[i] == 0) {
                    table[i] = e + 1;
                    break;
                }
    }
};

}  // namespace

program compile(const tape& t, const std::vector<tape::index>& inputs,
                const std::vector<tape::index>& outputs,
                const std::vector<recorded_guard>& guards, bool cse) {
    const tape::index size = t.size();
    for (tape::index i : inputs)
        if (i >= size || t.op_at(i) != op::leaf)
            throw std::invalid_argument("compile: an input is not a leaf on this tape");
    for (tape::index i : outputs)
        if (i >= size) throw std::invalid_argument("compile: an output is not on this tape");
    for (const auto& g : guards)
        for (const operand* o : {&g.lhs, &g.rhs})
            if (o->is_node && o->node >= size)
                throw std::invalid_argument("compile: a guard operand is not on this tape");

    // Only the part of the tape from the lowest input, output or guard node up matters:
    // anything below it is a constant of the trace (no input is below it).
    tape::index lo = size, hi = 0;
    auto span = [&](tape::index i) {
        lo = std::min(lo, i);
        hi = std::max(hi, i + 1);
    };
    for (tape::index i : inputs) lo = std::min(lo, i);
    for (tape::index i : outputs) span(i);
    for (const auto& g : guards)
        for (const operand* o : {&g.lhs, &g.rhs})
            if (o->is_node) span(o->node);
    if (hi <= lo) lo = hi;

    // Dead-code elimination: only what an output or a guard reaches.
    thread_local compile_scratch scratch;
    std::vector<std::uint8_t>& needed = scratch.needed;
    std::vector<ref>& where = scratch.where;
    // needed: bit 0 the node is needed, bit 1 it is an input. `where` is only read for
    // needed nodes after the fold has written them, so it needs no clearing.
    needed.assign(hi - lo, 0);
    where.resize(hi - lo);
    for (std::uint32_t k = 0; k < inputs.size(); ++k)
        if (inputs[k] < hi) {
            where[inputs[k] - lo] = {ref::input, k};
            needed[inputs[k] - lo] = 2;
        }
    for (tape::index i : outputs) needed[i - lo] |= 1;
    for (const auto& g : guards)
        for (const operand* o : {&g.lhs, &g.rhs})
            if (o->is_node) needed[o->node - lo] |= 1;
    // Branch-free: whether a node is needed follows no pattern a predictor could learn
    // (constants interleave with ops), and mispredictions were most of this loop's time.
    // Arguments below lo mark a spare entry past the end.
    const std::size_t n_span = hi - lo;
    needed.push_back(0);
    std::size_t n_ops = 0;
    {
        const op* o = t.op_data();
        const tape::index *a0 = t.arg0_data(), *a1 = t.arg1_data();
        std::uint8_t* need = needed.data();
        for (tape::index i = hi; i-- > lo;) {
            const std::uint8_t live = need[i - lo] & std::uint8_t(!is_leaf(o[i])) & 1;
            n_ops += live;
            need[a0[i] >= lo ? a0[i] - lo : n_span] |= live;
            need[a1[i] >= lo ? a1[i] - lo : n_span] |= live;
        }
    }

    // Constant folding and CSE, in tape order. A node computed only from constants is a
    // constant with the value the eager tape already computed for it.
    builder bld(scratch, inputs.size());
    if (cse) bld.reserve(n_ops);
    auto ref_of = [&](tape::index i) {
        return i < lo ? bld.constant(t.val(i)) : where[i - lo];
    };
    for (tape::index i = lo; i < hi; ++i) {
        if (needed[i - lo] != 1) continue;  // not needed, or an input
        const op o = t.op_at(i);
        if (is_leaf(o)) {
            where[i - lo] = bld.constant(t.val(i));
            continue;
        }
        ref ra = ref_of(t.arg0(i)), rb = ref_of(t.arg1(i));
        if (ra.kind == ref::constant && rb.kind == ref::constant) {
            where[i - lo] = bld.constant(t.val(i));
            continue;
        }
        if ((o == op::add || o == op::mul) && key(rb) < key(ra)) std::swap(ra, rb);
        where[i - lo] = bld.instruction(o, ra, rb, cse);
    }

    // Guard operands, registering the numbers they compare against as constants.
    std::vector<std::pair<ref, ref>> guard_refs;
    for (const auto& g : guards) {
        auto side = [&](const operand& o) {
            return o.is_node ? ref_of(o.node) : bld.constant(o.value);
        };
        guard_refs.emplace_back(side(g.lhs), side(g.rhs));
    }

    // Lay out the slots: inputs, constants, instructions.
    program p;
    p.n_inputs = std::uint32_t(inputs.size());
    const slot first_const = p.n_inputs;
    const slot first_op = first_const + slot(bld.consts.size());
    p.set_first_op(first_op);
    auto slot_of = [&](ref r) -> slot {
        switch (r.kind) {
            case ref::input: return r.k;
            case ref::constant: return first_const + r.k;
            case ref::instr: return first_op + r.k;
            default: throw std::logic_error("compile: unresolved node");
        }
    };
    const std::size_t n = std::size_t(first_op) + bld.ops.size();
    if (n >= tape::hard_max_nodes) throw std::length_error("compile: program too large");
    p.op_.assign(n, op::leaf);
    p.a_.assign(n, 0);
    p.b_.assign(n, 0);
    p.init_.assign(first_op, 0.0);
    for (std::size_t k = 0; k < bld.consts.size(); ++k) {
        p.op_[first_const + k] = op::constant;
        p.init_[first_const + k] = bld.consts[k];
    }
    for (std::size_t k = 0; k < bld.ops.size(); ++k) {
        p.op_[first_op + k] = bld.ops[k];
        p.a_[first_op + k] = slot_of(bld.args_a[k]);
        p.b_[first_op + k] = slot_of(bld.args_b[k]);
    }
    for (tape::index i : outputs) p.outputs_.push_back(slot_of(ref_of(i)));
    for (std::size_t k = 0; k < guards.size(); ++k) {
        const auto [l, r] = guard_refs[k];
        if (l.kind == ref::constant && r.kind == ref::constant) continue;  // always holds
        p.guards_.push_back({guards[k].c, slot_of(l), slot_of(r), guards[k].outcome,
                             guards[k].where});
    }
    p.finish();
    return p;
}

void program::finish() {
    const slot n = n_slots();
    static_assert(int(op::count_) <= 64, "reverse codes keep an op in 6 bits");
    rcode_.resize(n);
    fcode_.resize(n + 1);
    fcode_[n] = 0;  // the forward sweep's stop (a leaf kind)
    // Which slots some contribution reaches (the sweep goes newest first, so an
    // argument's first contribution comes from its last user). Per-thread scratch.
    thread_local std::vector<std::uint8_t> reached_scratch;
    reached_scratch.assign(n, 0);
    std::uint8_t* reached = reached_scratch.data();
    for (slot s : outputs_) reached[s] = 1;  // adds to its seed
    // A constant (its adjoint is never read) takes every contribution as first: a store.
    auto is_const = [this](slot s) { return s - n_inputs < first_op_ - n_inputs; };
    std::uint16_t gc = 0;  // slot s's g is handed over by slot s + 1
    for (slot s = n; s-- > first_op_;) {
        const slot a = a_[s], b = b_[s];
        const unsigned first_a = !reached[a] || is_const(a);
        reached[a] = 1;
        const unsigned first_b = (!reached[b] || is_const(b)) && b != a;
        reached[b] = 1;
        const unsigned code = unsigned(op_[s]);
        fcode_[s] = std::uint8_t(code << 2 | (a + 1 == s) | (b + 1 == s) << 1);
        // The one-point sweep hands a first contribution to slot s - 1 over in a
        // register when s is that op slot's only user (so its last: the first).
        const bool prev_op = s > first_op_;
        const bool carry_a = first_a && a + 1 == s && prev_op &&
                             (a != b || op_table[code].arity == 1);
        const bool carry_b = first_b && b + 1 == s && prev_op;
        rcode_[s] = std::uint16_t(code << 5 | gc | (carry_b ? 2 : first_b) << 2 |
                                   (carry_a ? 2 : first_a));
        gc = carry_a || carry_b ? 16 : 0;
    }
    for (slot s = 0; s < first_op_; ++s) {
        fcode_[s] = std::uint8_t(unsigned(op_[s]) << 2);
        rcode_[s] = std::uint16_t(unsigned(op_[s]) << 5);
    }
    // The slots nothing reaches: outputs get their seed; inputs and op slots without
    // users are cleared (constants are never read).
    zero_.assign(outputs_.begin(), outputs_.end());
    for (slot s = 0; s < n_inputs; ++s)
        if (!reached[s]) zero_.push_back(s);
    for (slot s = first_op_; s < n; ++s)
        if (!reached[s]) zero_.push_back(s);
}

// ------------------------------------------------------------------ one point

void program::forward(const double* x, double* val) const {
    std::memcpy(val, x, sizeof(double) * n_inputs);
    std::memcpy(val + n_inputs, init_.data() + n_inputs,
                sizeof(double) * (first_op_ - n_inputs));
    forward_sweep_carry(view(), val);
}

void program::reverse(const double* val, double* adj, const double* seed,
                      double* grad) const {
    for (slot s : zero_) adj[s] = 0.0;
    for (std::size_t k = 0; k < outputs_.size(); ++k) adj[outputs_[k]] += seed[k];
    reverse_one(val, adj);
    for (std::uint32_t i = 0; i < n_inputs; ++i) grad[i] += adj[i];
}

void program::tangent(const double* val, double* t) const {
    tangent_sweep(view(), val, t);
}

void program::reverse_dual(const double* val, const double* t, double* adj, double* adjt,
                           std::size_t k) const {
    std::memset(adj, 0, sizeof(double) * n_slots());
    std::memset(adjt, 0, sizeof(double) * n_slots());
    adj[outputs_[k]] += 1.0;
    reverse_dual_sweep(view(), val, t, adj, adjt);
}

// The adjoints of the inputs from the seeded outputs (zero_ cleared, seeds added).
void program::reverse_one(const double* val, double* adj) const {
    reverse_sweep_first(view(), val, adj);
}

long program::failing_guard(const double* val) const {
    for (std::size_t k = 0; k < guards_.size(); ++k) {
        const guard& g = guards_[k];
        if (compare(g.c, val[g.lhs], val[g.rhs]) != g.outcome) return long(k);
    }
    return -1;
}

std::vector<std::pair<std::string, std::size_t>> program::histogram() const {
    std::vector<std::size_t> count(std::size_t(op::count_), 0);
    for (slot s = first_op_; s < n_slots(); ++s) ++count[std::size_t(op_[s])];
    std::vector<std::pair<std::string, std::size_t>> h;
    for (std::size_t o = 0; o < count.size(); ++o)
        if (count[o]) h.emplace_back(op_table[o].name, count[o]);
    return h;
}

}  // namespace tapegrad

// ------------------------------------------------------------------ many points

namespace tapegrad {
namespace {

std::size_t block_size(slot n_slots) {
    // A block's values and adjoints take 16 bytes per slot and lane. Each op costs a
    // dispatch per block, so wide blocks pay off even past L2: measured here, a 984-slot
    // program (MLP step per point, 100 points) ran 2.2x faster with one 100-lane block
    // than with 8-lane blocks, and a 21-slot one did not care (36-38 ns/point for budgets
    // of 64 KiB to 1 MiB). The budget caps the scratch of huge programs (8 lanes).
    static const std::size_t budget = [] {
        const char* e = std::getenv("TAPEGRAD_BLOCK_BYTES");
        return e ? std::size_t(std::atol(e)) : (std::size_t(2) << 20);
    }();
    const std::size_t b = budget / (16 * std::max<std::size_t>(n_slots, 1));
    return std::clamp<std::size_t>(b & ~std::size_t(7), 8, 512);
}

}  // namespace

struct program::block_scratch {
    std::vector<double> v, adj, t, adjt;  // lane-major: slot s of lane l at [s * B + l]
};

// Which slots the j-th Hessian column touches. Its tangent is e_j, so only slots that
// depend on input j can have a nonzero tangent (tz). An op adds a nonzero adjoint tangent
// to its arguments only if its own adjoint tangent is nonzero (az) or, for an op whose
// rule is not linear (ops.hpp), one of its operands or its value moves (rev[j],
// descending); and only the tangents those ops read are computed (fwd[j], ascending).
// Every other contribution is an exact zero (or 0 * inf: a zero tangent contributes
// nothing, as a zero adjoint does in reverse mode).
struct program::hessian_plan {
    std::vector<std::vector<slot>> fwd, rev;
    std::vector<std::vector<slot>> t_set, adjt_set;  // slots to reset after column j
    // Lists past this many slots in all would cost more memory than they save time: the
    // columns then run every slot (a dense Hessian's columns touch most slots anyway).
    static constexpr std::size_t max_entries = std::size_t(1) << 24;
    bool dense = false;
};

program::hessian_plan program::plan_hessian() const {
    const slot n = n_slots();
    hessian_plan plan;
    plan.fwd.resize(n_inputs);
    plan.rev.resize(n_inputs);
    plan.t_set.resize(n_inputs);
    plan.adjt_set.resize(n_inputs);
    // TAPEGRAD_HESSIAN_PLAN=dense forces the dense columns (tests compare the two).
    static const bool force_dense = [] {
        const char* e = std::getenv("TAPEGRAD_HESSIAN_PLAN");
        return e && std::strcmp(e, "dense") == 0;
    }();
    if (force_dense) {
        hessian_plan dense;
        dense.dense = true;
        return dense;
    }
    // Column by column over just the slots it reaches, so a sparse Hessian plans in time
    // proportional to what it touches. The slots that depend on input j (its cone, where
    // tangents can be nonzero) are found through each slot's users; marks are stamped with
    // j + 1, so nothing is cleared between columns.
    std::vector<std::uint32_t> user_start(n + 1, 0), users;
    for (slot s = first_op_; s < n; ++s) {
        ++user_start[a_[s] + 1];
        if (b_[s] != a_[s]) ++user_start[b_[s] + 1];
    }
    for (slot s = 0; s < n; ++s) user_start[s + 1] += user_start[s];
    users.resize(user_start[n]);
    {
        std::vector<std::uint32_t> at(user_start.begin(), user_start.end() - 1);
        for (slot s = first_op_; s < n; ++s) {
            users[at[a_[s]]++] = s;
            if (b_[s] != a_[s]) users[at[b_[s]]++] = s;
        }
    }
    auto nonlinear = [&](slot s) { return !op_table[int(op_[s])].linear; };
    std::vector<std::uint32_t> in_cone(n, 0), active(n, 0), got_adjt(n, 0), need(n, 0);
    std::vector<slot> cone, stack;
    std::size_t entries = 0;
    for (slot j = 0; j < n_inputs; ++j) {
        const std::uint32_t mark = j + 1;
        // tz: the cone of input j (ascending, j itself first).
        cone.assign(1, j);
        in_cone[j] = mark;
        for (std::size_t k = 0; k < cone.size(); ++k)
            for (std::uint32_t u = user_start[cone[k]]; u < user_start[cone[k] + 1]; ++u)
                if (in_cone[users[u]] != mark) {
                    in_cone[users[u]] = mark;
                    cone.push_back(users[u]);
                }
        std::sort(cone.begin(), cone.end());
        // rev: the nonlinear ops of the cone and every op below them (an op whose adjoint
        // tangent is nonzero passes it on); their arguments get adjoint tangents.
        std::vector<slot>& rev = plan.rev[j];
        stack.clear();
        for (slot s : cone)
            if (s >= first_op_ && nonlinear(s)) {
                active[s] = mark;
                stack.push_back(s);
            }
        while (!stack.empty()) {
            const slot r = stack.back();
            stack.pop_back();
            rev.push_back(r);
            for (slot arg : {a_[r], b_[r]}) {
                if (got_adjt[arg] != mark) {
                    got_adjt[arg] = mark;
                    plan.adjt_set[j].push_back(arg);
                }
                if (arg >= first_op_ && active[arg] != mark) {
                    active[arg] = mark;
                    stack.push_back(arg);
                }
            }
        }
        std::sort(rev.begin(), rev.end(), std::greater<slot>());
        // fwd: the cone's tangents that a nonlinear rule reads, and what they are made of.
        for (slot r : rev)
            if (nonlinear(r)) need[r] = need[a_[r]] = need[b_[r]] = mark;
        for (std::size_t k = cone.size(); k-- > 0;) {
            const slot s = cone[k];
            if (s >= first_op_ && need[s] == mark) need[a_[s]] = need[b_[s]] = mark;
        }
        std::vector<slot>& fwd = plan.fwd[j];
        for (slot s : cone)
            if (s >= first_op_ && need[s] == mark) fwd.push_back(s);
        plan.t_set[j] = fwd;
        plan.t_set[j].push_back(j);
        entries += plan.fwd[j].size() + plan.rev[j].size() + plan.t_set[j].size() +
                   plan.adjt_set[j].size();
        if (entries > hessian_plan::max_entries) {
            hessian_plan dense;
            dense.dense = true;
            return dense;
        }
    }
    return plan;
}

// Columns j of the Hessian for one block: the gradient's reverse sweep once, then per
// column a tangent sweep and an adjoint-tangent sweep over the planned slots only.
void program::hessian_block(const batch_io& io, std::size_t p0, std::size_t L, std::size_t B,
                            block_scratch& s, const hessian_plan& plan) const {
    const lanes::kernels& k = lanes::get();
    const std::size_t n_in = n_inputs;
    double* v = s.v.data();
    double* adj = s.adj.data();
    double* t = s.t.data();     // zero outside a column's work
    double* adjt = s.adjt.data();  // likewise
    std::memset(adj, 0, sizeof(double) * B * n_slots());
    double* seed = adj + std::size_t(outputs_[io.seed_output]) * B;
    for (std::size_t l = 0; l < L; ++l) seed[l] = 1.0;
    k.reverse(view(), v, adj, B, L);
    for (slot j = 0; j < n_inputs; ++j) {
        std::fill_n(t + std::size_t(j) * B, L, 1.0);
        if (plan.dense) {
            k.tangent(view(), v, t, B, L, nullptr, 0);
            k.reverse_tangent(view(), v, t, adj, adjt, B, L, nullptr, 0);
        } else {
            k.tangent(view(), v, t, B, L, plan.fwd[j].data(), plan.fwd[j].size());
            k.reverse_tangent(view(), v, t, adj, adjt, B, L, plan.rev[j].data(),
                              plan.rev[j].size());
        }
        for (std::size_t i = 0; i < n_in; ++i) {
            const double* src = adjt + i * B;
            double* dst = io.hess_base + std::ptrdiff_t(p0) * io.hess_stride + i * n_in + j;
            for (std::size_t l = 0; l < L; ++l) dst[std::ptrdiff_t(l) * io.hess_stride] = src[l];
        }
        if (plan.dense) {  // everything but the constants' tangents, which stay 0
            std::fill_n(t + std::size_t(j) * B, L, 0.0);
            std::fill(t + std::size_t(first_op_) * B, t + std::size_t(n_slots()) * B, 0.0);
            std::fill(adjt, adjt + std::size_t(n_slots()) * B, 0.0);
            continue;
        }
        for (slot z : plan.t_set[j]) std::fill_n(t + std::size_t(z) * B, L, 0.0);
        for (slot z : plan.adjt_set[j]) std::fill_n(adjt + std::size_t(z) * B, L, 0.0);
    }
}

namespace {

void gather(const double* src, std::ptrdiff_t stride, double* dst, std::size_t L) {
    if (stride == 1) return void(std::memcpy(dst, src, sizeof(double) * L));
    for (std::size_t l = 0; l < L; ++l) dst[l] = src[std::ptrdiff_t(l) * stride];
}
void scatter(const double* src, double* dst, std::ptrdiff_t stride, std::size_t L) {
    if (stride == 1) return void(std::memcpy(dst, src, sizeof(double) * L));
    for (std::size_t l = 0; l < L; ++l) dst[std::ptrdiff_t(l) * stride] = src[l];
}

}  // namespace

void program::run_block(const batch_io& io, std::size_t p0, std::size_t L, std::size_t B,
                        block_scratch& s, const hessian_plan* plan,
                        std::vector<std::size_t>& failed) const {
    const std::ptrdiff_t q0 = std::ptrdiff_t(p0);
    double* v = s.v.data();
    for (std::uint32_t i = 0; i < n_inputs; ++i)
        gather(io.in_base[i] + q0 * io.in_stride[i], io.in_stride[i], v + std::size_t(i) * B, L);
    // One point (B == 1) runs the one-point sweeps: same rules, no per-op lane loop.
    const lanes::kernels& k = lanes::get();
    const bool one = B == 1;
    const program_view pv = view();
    if (one)
        forward_sweep_carry(pv, v);
    else
        k.forward(pv, v, B, L);

    // Guards: a point whose comparison goes the other way gets NaN outputs and is listed.
    std::size_t n_failed_before = failed.size();
    if (!guards_.empty())
        for (std::size_t l = 0; l < L; ++l)
            for (const guard& g : guards_)
                if (compare(g.c, v[g.lhs * B + l], v[g.rhs * B + l]) != g.outcome) {
                    failed.push_back(p0 + l);
                    break;
                }

    for (std::size_t o = 0; o < outputs_.size(); ++o)
        scatter(v + std::size_t(outputs_[o]) * B, io.out_base[o] + q0 * io.out_stride[o],
                io.out_stride[o], L);
    if (!io.tan_base.empty()) {
        double* t = s.t.data();
        for (std::uint32_t i = 0; i < n_inputs; ++i)
            gather(io.tan_base[i] + q0 * io.tan_stride[i], io.tan_stride[i],
                   t + std::size_t(i) * B, L);
        if (one)
            tangent(v, t);
        else
            k.tangent(pv, v, t, B, L, nullptr, 0);
        for (std::size_t o = 0; o < io.tout_base.size(); ++o)
            scatter(t + std::size_t(outputs_[o]) * B, io.tout_base[o] + q0 * io.tout_stride[o],
                    io.tout_stride[o], L);
    }
    if (plan) {
        hessian_block(io, p0, L, B, s, *plan);
    } else if (io.reverse()) {
        double* adj = s.adj.data();
        // The plain reverse sweeps store first contributions (first_code()): only the
        // slots none reaches need clearing. The dual ones add everywhere.
        if (io.hvp_base.empty())
            for (slot z : zero_) std::fill_n(adj + std::size_t(z) * B, L, 0.0);
        else
            std::memset(adj, 0, sizeof(double) * B * n_slots());
        if (io.seed_base.empty()) {
            double* seed = adj + std::size_t(outputs_[io.seed_output]) * B;
            for (std::size_t l = 0; l < L; ++l) seed[l] += 1.0;
        } else {
            for (std::size_t o = 0; o < outputs_.size(); ++o) {
                double* seed = adj + std::size_t(outputs_[o]) * B;
                const double* src = io.seed_base[o] + q0 * io.seed_stride[o];
                for (std::size_t l = 0; l < L; ++l)
                    seed[l] += src[std::ptrdiff_t(l) * io.seed_stride[o]];
            }
        }
        if (io.hvp_base.empty()) {
            if (one)
                reverse_one(v, adj);
            else
                k.reverse(pv, v, adj, B, L);
            for (std::size_t i = 0; i < std::size_t(n_inputs) * B; i += B)
                for (std::size_t l = 0; l < L; ++l) adj[i + l] += 0.0;  // no -0 (sweep.hpp)
        } else {
            double* adjt = s.adjt.data();
            std::memset(adjt, 0, sizeof(double) * B * n_slots());
            if (one)
                reverse_dual_sweep(pv, v, s.t.data(), adj, adjt);
            else
                k.reverse_dual(pv, v, s.t.data(), adj, adjt, B, L);
            for (std::uint32_t i = 0; i < n_inputs; ++i)
                scatter(adjt + std::size_t(i) * B, io.hvp_base[i] + q0 * io.hvp_stride[i],
                        io.hvp_stride[i], L);
        }
        for (std::size_t i = 0; i < io.grad_base.size(); ++i)
            scatter(adj + i * B, io.grad_base[i] + q0 * io.grad_stride[i], io.grad_stride[i], L);
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto poison = [nan](const std::vector<double*>& base,
                        const std::vector<std::ptrdiff_t>& stride, std::ptrdiff_t q) {
        for (std::size_t j = 0; j < base.size(); ++j) base[j][q * stride[j]] = nan;
    };
    for (std::size_t f = n_failed_before; f < failed.size(); ++f) {
        const std::ptrdiff_t q = std::ptrdiff_t(failed[f]);
        poison(io.out_base, io.out_stride, q);
        poison(io.grad_base, io.grad_stride, q);
        poison(io.tout_base, io.tout_stride, q);
        poison(io.hvp_base, io.hvp_stride, q);
        if (io.hess_base)
            std::fill_n(io.hess_base + q * io.hess_stride, std::size_t(n_inputs) * n_inputs, nan);
    }
}

bool program::run_batch(const batch_io& io, std::size_t n_points, int threads,
                        std::vector<std::size_t>& failed,
                        const std::function<bool()>& stop) const {
    // A batch smaller than a block runs in a block of its own size (one point: one lane).
    const std::size_t B = std::min(block_size(n_slots()), std::max<std::size_t>(n_points, 1));
    const std::size_t n_blocks = (n_points + B - 1) / B;
    // Small batches are not worth a thread start (~tens of microseconds).
    const std::size_t work = n_points * n_slots();
    // At most one thread per block, and at most 256 (a typo like threads=100000 must not
    // start a hundred thousand threads).
    std::size_t n_threads = std::clamp<std::size_t>(
        std::size_t(std::max(threads, 1)), 1,
        std::min<std::size_t>(std::max<std::size_t>(n_blocks, 1), 256));
    if (work < (std::size_t(1) << 16)) n_threads = 1;

    std::unique_ptr<hessian_plan> plan;
    if (io.hess_base) plan = std::make_unique<hessian_plan>(plan_hessian());

    std::atomic<std::size_t> next{0};
    std::atomic<bool> stopped{false};
    std::vector<std::vector<std::size_t>> fails(n_threads);
    auto worker = [&](std::size_t w, bool polls) {
        const std::size_t size = B * n_slots();
        // Kept per thread between calls: fresh pages cost more than small batches do. A
        // call made while this thread's scratch is in use (a Python signal handler run by
        // `stop` that replays again) gets its own.
        static thread_local block_scratch kept;
        static thread_local bool kept_busy = false;
        block_scratch own;
        const bool reuse = !kept_busy;
        block_scratch& s = reuse ? kept : own;
        struct release {
            bool on;
            ~release() {
                if (on) kept_busy = false;
            }
        } release_kept{reuse};
        kept_busy = true;
        s.v.resize(size);
        if (io.reverse()) s.adj.resize(size);
        const bool second = !io.tan_base.empty() || io.hess_base;
        if (second) s.t.assign(size, 0.0);  // constants' tangents stay 0
        if (!io.hvp_base.empty()) s.adjt.resize(size);
        if (io.hess_base) s.adjt.assign(size, 0.0);
        for (slot c = n_inputs; c < first_op_; ++c)
            std::fill_n(s.v.begin() + std::ptrdiff_t(c * B), B, init_[c]);
        std::size_t done = 0;
        for (std::size_t blk; !stopped.load(std::memory_order_relaxed) &&
                              (blk = next.fetch_add(1, std::memory_order_relaxed)) < n_blocks;) {
            const std::size_t p0 = blk * B;
            run_block(io, p0, std::min(B, n_points - p0), B, s, plan.get(), fails[w]);
            if (polls && ++done % 16 == 0 && stop && stop())
                stopped.store(true, std::memory_order_relaxed);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(n_threads - 1);
    try {
        for (std::size_t w = 1; w < n_threads; ++w) pool.emplace_back(worker, w, false);
    } catch (...) {
        // Could not start more threads: the ones started and this one share the work.
    }
    worker(0, true);
    for (auto& th : pool) th.join();
    for (auto& f : fails) failed.insert(failed.end(), f.begin(), f.end());
    std::sort(failed.begin(), failed.end());
    return !stopped.load();
}

}  // namespace tapegrad
