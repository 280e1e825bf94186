// A program's codes (finish) and its one-point API: each a single sweep of sweep.hpp.
#include "tapegrad/program.hpp"

#include <cstring>
#include <mutex>

#include "tapegrad/structure.hpp"
#include "tapegrad/sweep.hpp"

namespace tapegrad {

void program::finish() {
    const slot n = n_slots();
    loops_ = std::make_shared<loops_state>();
    static_assert(int(op::count_) <= 2048, "reverse codes keep an op in 11 bits");
    static_assert(int(op::count_) <= 16384, "forward codes keep an op in 14 bits");
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
    const consts_in_range is_const{n_inputs, first_op_ - n_inputs};
    std::uint16_t gc = 0;  // slot s's g is handed over by slot s + 1
    for (slot s = n; s-- > first_op_;) {
        const slot a = a_[s], b = b_[s];
        const unsigned first_a = !reached[a] || is_const(a);
        reached[a] = 1;
        const unsigned first_b = (!reached[b] || is_const(b)) && b != a;
        reached[b] = 1;
        const unsigned code = unsigned(op_[s]);
        fcode_[s] = std::uint16_t(code << 2 | (a + 1 == s) | (b + 1 == s) << 1);
        // The one-point sweep hands a first contribution to slot s - 1 over in a
        // register when s is that op slot's only user (so its last: the first).
        const bool prev_op = s > first_op_;
        const bool carry_a =
            first_a && a + 1 == s && prev_op && (a != b || op_table[code].arity == 1);
        const bool carry_b = first_b && b + 1 == s && prev_op;
        rcode_[s] =
            std::uint16_t(code << 5 | gc | (carry_b ? 2 : first_b) << 2 | (carry_a ? 2 : first_a));
        gc = carry_a || carry_b ? 16 : 0;
    }
    for (slot s = 0; s < first_op_; ++s) {
        fcode_[s] = std::uint16_t(unsigned(op_[s]) << 2);
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

// forward()'s loops: the elementwise runs, and the forward codes with a stop (a leaf
// kind) at each one's start, where the interpreter hands over to the run's loops.
// And the reverse's: those of the runs whose contributions reverse_run can deliver in
// the sweep's order, and the reverse codes with a stop at each one's last slot (where no
// contribution then reaches a run's slot, or leaves its first one, in a register).
struct program::loops {
    std::vector<run> runs;
    std::vector<std::uint16_t> fcode;
    std::vector<const run*> backward;  // into runs
    std::vector<std::uint16_t> rcode;
};

struct program::loops_state {
    std::atomic<std::uint64_t> calls{0};
    std::atomic<const loops*> ready{nullptr};  // set once, if they pay
    std::mutex building;
    bool looked = false;  // under `building`
    std::unique_ptr<loops> found;
};

namespace {

// Which runs forward() loops over, and when that pays, as measured on one-point forward
// sweeps (bench/structure_cost.py --forward, d = 10^4): elementwise runs (period 1)
// 2.5x the interpreter on numpy-form Rosenbrock; runs of longer blocks 0.40x (loop-form
// Rosenbrock, period 8) and 0.96x (the MLP loss, period 640), so those stay interpreted.
constexpr slot min_iterations = 16;
constexpr slot min_share = 4;  // the loops cover at least 1/min_share of the op slots

}  // namespace

const program::loops* program::look_for_loops() const {
    loops_state& st = *loops_;
    std::lock_guard<std::mutex> lock(st.building);
    if (st.looked) return st.ready.load(std::memory_order_relaxed);
    st.looked = true;
    // Elementwise runs are stretches of one op not reading the slot before: where too few
    // slots repeat the op before them that way, skip find_runs (a random graph of 2e5
    // slots, half of it one long sum: 0.3 ms against 22 ms).
    slot repeats = 0;
    for (slot s = first_op_ + 1; s < n_slots(); ++s)
        repeats += op_[s] == op_[s - 1] && a_[s] + 1 != s && b_[s] + 1 != s;
    if (std::uint64_t(repeats) * min_share < n_slots() - first_op_) return nullptr;
    auto l = std::make_unique<loops>();
    slot covered = 0;
    for (run& r : find_runs(view()))
        if (r.period == 1 && r.count >= min_iterations && r.a[0].kind != operand_kind::carried &&
            r.b[0].kind != operand_kind::carried) {
            covered += r.count;
            l->runs.push_back(std::move(r));
        }
    if (covered == 0 || std::uint64_t(covered) * min_share < n_slots() - first_op_) return nullptr;
    l->fcode = fcode_;
    for (const run& r : l->runs) l->fcode[r.start] = 0;
    for (const run& r : l->runs)
        if (reverse_runnable(*this, r)) l->backward.push_back(&r);
    l->rcode = rcode_;
    for (const run* rp : l->backward) {
        const run& r = *rp;
        // rcode: op << 5 | gc << 4 | (mode for b) << 2 | (mode for a), mode 2 a hand-over
        // to the slot below in a register; a store instead, where that slot is a run's
        // last (its loop reads adjoints from memory) or below a run's first (its loop
        // stores what it would have handed over: reverse_run's adds()).
        if (r.end() < n_slots()) {
            std::uint16_t& c = l->rcode[r.end()];
            if ((c & 3) == 2) c = std::uint16_t((c & ~3u) | 1u);
            if ((c >> 2 & 3) == 2) c = std::uint16_t((c & ~12u) | 4u);
        }
        if (r.start > first_op_) l->rcode[r.start - 1] &= std::uint16_t(~16u);
    }
    for (const run* r : l->backward) l->rcode[r->end() - 1] = 0;
    st.found = std::move(l);
    st.ready.store(st.found.get(), std::memory_order_release);
    return st.found.get();
}

const program::loops* program::find_loops() const {
    if (!loops_) return nullptr;
    loops_state& st = *loops_;
    if (const loops* l = st.ready.load(std::memory_order_acquire)) return l;
    // The loops_after-th call looks; calls before it, and after a look that found
    // nothing worth looping over, interpret.
    if (st.calls.load(std::memory_order_relaxed) >= loops_after ||
        st.calls.fetch_add(1, std::memory_order_relaxed) + 1 != loops_after)
        return nullptr;
    return look_for_loops();
}

std::optional<std::vector<program::loop_info>> program::point_loops(bool look) const {
    if (!loops_) return std::nullopt;
    if (!look) {
        std::lock_guard<std::mutex> lock(loops_->building);
        if (!loops_->looked) return std::nullopt;
    }
    std::vector<loop_info> out;
    if (const loops* l = look_for_loops()) {
        auto b = l->backward.begin();
        for (const run& r : l->runs) {
            const bool reverse = b != l->backward.end() && *b == &r;
            out.push_back({r.start, r.count, reverse});
            b += reverse;
        }
    }
    return out;
}

void program::forward_interpreted(const double* x, double* val) const {
    std::memcpy(val, x, sizeof(double) * n_inputs);
    std::memcpy(val + n_inputs, init_.data() + n_inputs, sizeof(double) * (first_op_ - n_inputs));
    forward_sweep_carry(view(), val);
}

void program::forward(const double* x, double* val) const {
    const loops* l = find_loops();
    if (!l) return forward_interpreted(x, val);
    std::memcpy(val, x, sizeof(double) * n_inputs);
    std::memcpy(val + n_inputs, init_.data() + n_inputs, sizeof(double) * (first_op_ - n_inputs));
    program_view v = view();
    v.fcode = l->fcode.data();
    thread_local std::vector<char> scratch;
    slot s = first_op_;
    for (const run& r : l->runs) {
        forward_sweep_carry(v, val, s);  // stops at r.start
        forward_run(*this, r, val, scratch);
        s = r.end();
    }
    forward_sweep_carry(v, val, s);
}

void program::reverse(const double* val, double* adj, const double* seed, double* grad) const {
    for (slot s : zero_) adj[s] = 0.0;
    for (std::size_t k = 0; k < outputs_.size(); ++k) adj[outputs_[k]] += seed[k];
    reverse_one(val, adj);
    for (std::uint32_t i = 0; i < n_inputs; ++i) grad[i] += adj[i];
}

void program::tangent(const double* val, double* t) const { tangent_sweep(view(), val, t); }

void program::reverse_dual(const double* val, const double* t, double* adj, double* adjt,
                           std::size_t k) const {
    std::memset(adj, 0, sizeof(double) * n_slots());
    std::memset(adjt, 0, sizeof(double) * n_slots());
    adj[outputs_[k]] += 1.0;
    reverse_dual_sweep(view(), val, t, adj, adjt);
}

// The adjoints of the inputs from the seeded outputs (zero_ cleared, seeds added).
void program::adjoints(const double* val, double* adj, std::size_t k) const {
    std::memset(adj, 0, sizeof(double) * n_slots());
    adj[outputs_[k]] = 1.0;
    reverse_sweep(op_.data(), a_.data(), b_.data(), val, adj, first_op_, n_slots(),
                  consts_in_range{n_inputs, first_op_ - n_inputs});
}

void program::reverse_one(const double* val, double* adj) const {
    const loops* l = loops_ ? loops_->ready.load(std::memory_order_acquire) : nullptr;
    if (!l || l->backward.empty()) {
        reverse_sweep_first(view(), val, adj);
        return;
    }
    program_view v = view();
    v.rcode = l->rcode.data();
    slot hi = n_slots();
    for (auto r = l->backward.rbegin(); r != l->backward.rend(); ++r) {
        reverse_sweep_first(v, val, adj, hi);  // stops at r's last slot
        reverse_run(*this, **r, val, adj);
        hi = (*r)->start;
    }
    reverse_sweep_first(v, val, adj, hi);
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
