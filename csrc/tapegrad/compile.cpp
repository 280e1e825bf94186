// compile(): a tape's nodes into a program, with dead-code elimination, constant
// folding and deduplication, and common-subexpression elimination.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "tapegrad/program.hpp"

namespace tapegrad {

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
        if (2 * (busy.size() + 1) > table.size())
            rehash(std::max<std::size_t>(64, 4 * busy.size()));
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
                const std::vector<tape::index>& outputs, const std::vector<recorded_guard>& guards,
                bool cse) {
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
    auto ref_of = [&](tape::index i) { return i < lo ? bld.constant(t.val(i)) : where[i - lo]; };
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
        p.guards_.push_back(
            {guards[k].c, slot_of(l), slot_of(r), guards[k].outcome, guards[k].where});
    }
    p.finish();
    return p;
}

}  // namespace tapegrad
