// A frozen program: the part of a tape that maps a traced function's inputs to its
// outputs, compacted and optimised once, then replayed at new inputs (one point, or
// blocks of points lane by lane). Immutable after compile(), so any number of threads
// may replay it at once; each call brings its own scratch.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tapegrad/ops.hpp"
#include "tapegrad/program_view.hpp"
#include "tapegrad/tape.hpp"

namespace tapegrad {

struct hessian_plan;

// The comparison a guard re-checks on replay.
// `same` is equality in which NaN matches NaN: for values that escaped into Python.
enum class cmp : std::uint8_t { lt, le, gt, ge, eq, ne, same };

inline bool compare(cmp c, double x, double y) {
    switch (c) {
        case cmp::lt: return x < y;
        case cmp::le: return x <= y;
        case cmp::gt: return x > y;
        case cmp::ge: return x >= y;
        case cmp::eq: return x == y;
        case cmp::ne: return x != y;
        case cmp::same: return x == y || (x != x && y != y);
    }
    return false;
}

// One side of a recorded comparison: a tape node, or a plain number.
struct operand {
    bool is_node;
    tape::index node;
    double value;
};

// A comparison made while tracing; its outcome steered Python control flow.
struct recorded_guard {
    cmp c;
    operand lhs, rhs;
    bool outcome;
    std::string where;  // "file:line" of the comparison
};

struct guard {
    cmp c;
    slot lhs, rhs;
    bool outcome;
    std::string where;
};

class program {
public:
    // Slots: [0, n_inputs) inputs, then constants, then one slot per instruction.
    std::uint32_t n_inputs = 0;
    std::vector<op> op_;
    std::vector<slot> a_, b_;
    std::vector<double> init_;  // slots below first_op(): inputs 0, constants their value
    std::vector<slot> outputs_;
    std::vector<guard> guards_;

    slot n_slots() const { return slot(op_.size()); }
    slot first_op() const { return first_op_; }
    void set_first_op(slot s) { first_op_ = s; }
    // Derives the one-point sweeps' op codes from the fields above; call once they are
    // final (compile and unpickling do).
    void finish();
    // What the sweeps read (valid after finish(), while the program lives).
    program_view view() const {
        return {op_.data(),    a_.data(), b_.data(), fcode_.data(),
                rcode_.data(), n_inputs,  first_op_, n_slots()};
    }

    // --- one point; val and adj hold n_slots() doubles each (caller-owned scratch)
    // The forward sweep. From the program's loops_after-th call on, it runs the
    // program's elementwise runs (find_runs, period 1: what numpy's elementwise ops and
    // sums leave in a trace) as loops over their iterations, if they cover enough of it
    // to pay, and interprets the rest; either way bit for bit forward_interpreted's.
    void forward(const double* x, double* val) const;
    void forward_interpreted(const double* x, double* val) const;
    static constexpr std::uint64_t loops_after = 32;
    // The runs forward() loops over (empty: too few to pay), and whether reverse() does
    // too, looked for now if no call has yet; without `look`, nothing if no call has.
    struct loop_info {
        slot start, count;
        bool reverse;
    };
    std::optional<std::vector<loop_info>> point_loops(bool look) const;
    // Reverse sweep seeded with seed[k] at output k; adds d/dinputs into grad[n_inputs].
    // Once forward() has found its loops, it runs those it can (reverse_runnable) as
    // loops too (reverse_run), bit for bit the sweep's adjoints.
    void reverse(const double* val, double* adj, const double* seed, double* grad) const;
    // Forward mode: t holds the inputs' tangents and the constants' 0s (n_slots()
    // doubles); fills in every op slot's tangent.
    void tangent(const double* val, double* t) const;
    // Forward-over-reverse: adj and adjt (n_slots() each) are cleared, output k is seeded
    // with 1, and the tangent of the gradient ends in adjt[0, n_inputs).
    void reverse_dual(const double* val, const double* t, double* adj, double* adjt,
                      std::size_t k) const;
    // Every slot's adjoint of output k, each stored in adj (n_slots() doubles; no
    // hand-over in registers), for sweeps that read them all afterwards (hessian_block).
    void adjoints(const double* val, double* adj, std::size_t k) const;
    // Index of the first guard whose outcome differs at these values, or -1.
    long failing_guard(const double* val) const;

    // --- many points, lane by lane. Flat input i of point p is
    // in_base[i][p * in_stride[i]]; output k goes to out_base[k][p * out_stride[k]];
    // with grad set, the gradient of output seed_output goes to
    // grad_base[i][p * grad_stride[i]]. Points whose guards fail are listed in `failed`
    // (their outputs are NaN). `stop` is polled between blocks; true aborts the call.
    // F.compile()'s code for a block of n points (n a multiple of 8, codegen_batch.hpp):
    // point l of input i at x[i][l], of output k at y[k][l], of the gradient of output
    // `seed` by input i at g[i][l]; bad[l] = 1 where a guard fails (null without guards).
    struct native_block {
        void (*value)(const double* const* x, double* const* y, double* bad, std::size_t n);
        void (*grad)(const double* const* x, double* const* y, double* const* g, double* bad,
                     std::size_t n, std::size_t seed);
    };
    struct batch_io {
        // Plain values and gradients run this instead of the lanes, where set.
        const native_block* native = nullptr;
        std::vector<const double*> in_base;
        std::vector<std::ptrdiff_t> in_stride;
        std::vector<double*> out_base;
        std::vector<std::ptrdiff_t> out_stride;
        std::vector<double*> grad_base;  // empty: values only
        std::vector<std::ptrdiff_t> grad_stride;
        std::size_t seed_output = 0;  // the output whose gradient goes to grad_base
        // Instead of output seed_output with 1: output k seeded with seed_base[k][p * ..]
        // (a vector-Jacobian product).
        std::vector<const double*> seed_base;
        std::vector<std::ptrdiff_t> seed_stride;
        // Forward mode: input i moves by tan_base[i][p * tan_stride[i]]; output k's
        // tangent goes to tout_base[k] (a Jacobian-vector product) and, with hvp_base
        // set, the tangent of the gradient to hvp_base[i] (a Hessian-vector product).
        std::vector<const double*> tan_base;
        std::vector<std::ptrdiff_t> tan_stride;
        std::vector<double*> tout_base;
        std::vector<std::ptrdiff_t> tout_stride;
        std::vector<double*> hvp_base;
        std::vector<std::ptrdiff_t> hvp_stride;
        // The Hessian of output seed_output: H[p][i][j] at hess_base + p * hess_stride
        // + i * n_inputs + j.
        double* hess_base = nullptr;
        std::ptrdiff_t hess_stride = 0;
        bool reverse() const {
            return !grad_base.empty() || !hvp_base.empty() || hess_base != nullptr;
        }
    };
    // Returns false if stopped.
    bool run_batch(const batch_io& io, std::size_t n_points, int threads,
                   std::vector<std::size_t>& failed, const std::function<bool()>& stop) const;

    // The slots a reverse clears (no contribution reaches them), for code that runs the
    // same reverse sweep (codegen.cpp).
    const std::vector<slot>& zero_slots() const { return zero_; }

    // Instruction count per op name, for insight.
    std::vector<std::pair<std::string, std::size_t>> histogram() const;

private:
    slot first_op_ = 0;
    // For forward_sweep_carry (sweep.hpp): per slot op << 2 | operand-is-previous bits,
    // and one more entry (0) where the sweep stops.
    std::vector<std::uint16_t> fcode_;
    // The one-point reverse's codes (reverse_sweep_first in sweep.hpp: how each
    // contribution is delivered; the lanes read first_code() off them), and the slots
    // no contribution reaches (outputs and slots without users), which a reverse clears
    // instead of clearing every adjoint.
    std::vector<std::uint16_t> rcode_;
    std::vector<slot> zero_;
    // forward()'s loops: found once, by the call that reaches loops_after, shared by
    // copies of the program (finish() starts a new one).
    struct loops;
    struct loops_state;
    std::shared_ptr<loops_state> loops_;
    const loops* find_loops() const;
    const loops* look_for_loops() const;
    void reverse_one(const double* val, double* adj) const;
    struct block_scratch;
    void run_block(const batch_io& io, std::size_t p0, std::size_t n, std::size_t B,
                   block_scratch& s, const hessian_plan* plan,
                   std::vector<std::size_t>& failed) const;
    void run_native_block(const batch_io& io, std::size_t p0, std::size_t n, std::size_t B,
                          block_scratch& s, std::vector<std::size_t>& failed) const;
};

// Compile the nodes of `t` that the outputs (and guards) depend on into a program whose
// inputs are the given leaves. Other leaves, constants and anything computed only from
// them become constants (folded with the values the tape already holds, so results are
// bit-for-bit those of the eager graph). With cse, repeated (op, args) share one slot.
// Throws std::invalid_argument for an output or input that is not on the tape.
program compile(const tape& t, const std::vector<tape::index>& inputs,
                const std::vector<tape::index>& outputs, const std::vector<recorded_guard>& guards,
                bool cse);

}  // namespace tapegrad
