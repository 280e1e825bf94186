// Loops in a frozen program: runs of isomorphic blocks of consecutive op slots, the
// unrolled bodies a Python loop (or numpy's elementwise ops and sums) leaves in a trace.
// Finding period and strides is loop rerolling (LLVM's former LoopRerollPass) on a
// straight-line program; what runs them as loops builds on this.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tapegrad/program_view.hpp"

namespace tapegrad {

// How an operand of a block op moves from iteration k to k + 1.
enum class operand_kind : std::uint8_t {
    same,       // an earlier op of the same iteration: block op `source`
    carried,    // block op `source` of iteration k - 1 (a recurrence); `first` at k = 0
    strided,    // slot first + k * stride, before the run (inputs, constants, earlier ops)
    invariant,  // slot `first` every iteration, before the run
};

struct block_operand {
    operand_kind kind;
    slot first;              // the operand's slot in iteration 0 (carried: the initial value)
    std::uint32_t source;    // same, carried: the block op it reads; else unused
    std::int64_t stride;     // strided: the step (never 0); else 0
};

// Iterations k in [0, count) of the block [start, start + period): op slot
// start + k * period + j runs block op j, whose operands a[j], b[j] (unary ops: b == a)
// follow the rules above in every iteration.
struct run {
    slot start, period, count;
    std::vector<block_operand> a, b;
    // In some iteration an add or mul has its operands the other way round: compile
    // orders them by slot, which can flip where a carried value starts as an input.
    // Values and derivatives are the same either way; code reading a_ and b_ per
    // iteration must allow it.
    bool swapped = false;
    slot end() const { return start + period * count; }
};

// How many consecutive iterations of the block [start, start + period) match, from
// iteration 0 (at least 1). With `out`, also the block's operands; period > 0.
slot run_count(const program_view& p, slot start, slot period, run* out = nullptr);

// Disjoint runs of at least min_count (>= 2) iterations, in slot order, found greedily:
// at each op slot, the candidate periods are the distances to the next slots with the
// same op and operand shape and to the next slots reading the same operand in the same
// position; the run covering the most slots beyond its first iteration is taken, else
// the scan moves on one slot. Two iterations of any blocks of the same ops reading
// leaves fit (each operand two slots: a stride), hence the default of 3. Linear in the
// program's size, plus the slots each candidate checks.
std::vector<run> find_runs(const program_view& p, slot min_count = 3);

class program;
// One point's forward values as program::forward computes them (val: n_slots doubles),
// but with each run of `runs` (find_runs on p) evaluated block op by block op, as a
// loop over its iterations; the block ops a recurrence holds back run iteration by
// iteration after the others. Bit for bit program::forward: the same kernels on the
// same operands.
void forward_by_runs(const program& p, const std::vector<run>& runs, const double* x, double* val);
// The same, and whether x and every op slot's value are finite (the runs' loops check
// their values as they store them): the recorded Hessian's replay.
bool forward_by_runs_finite(const program& p, const std::vector<run>& runs, const double* x,
                            double* val);

// Run r alone, as forward_by_runs evaluates it; val holds every slot before r.start.
// scratch: the caller's, reused between calls. program::forward's elementwise loops.
void forward_run(const program& p, const run& r, double* val, std::vector<char>& scratch);

// Whether reverse_run can run r: an elementwise run (period 1) whose operands are
// strided or invariant, the two never the same slot unless in every iteration.
bool reverse_runnable(const program& p, const run& r);
// reverse_sweep_first (sweep.hpp) over r's slots, bit for bit, as one loop over the
// iterations (run_reverse.cpp); adj holds what the sweep above r left there, including
// r's last slot's adjoint (no hand-over in a register).
void reverse_run(const program& p, const run& r, const double* val, double* adj);

// Whether v[0, n) are all finite (neither infinite nor NaN).
bool all_finite(const double* v, std::size_t n);

}  // namespace tapegrad
