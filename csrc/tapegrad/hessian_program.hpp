// A sparse Hessian recorded as a program of its own: hessian_block's arithmetic (the
// gradient's adjoints, then per seed group the tangents and adjoint tangents over the
// planned slots) run once on values that append program nodes, so replaying it per point
// is one forward sweep over just the operations the needed entries use.
//
// Recording folds what is known while recording: numbers (a rule's constants, the seeds'
// tangent 1, the structural zeros of slots a group does not reach), x * 1, x / 1, x + 0,
// x - 0 and x * 0, and negations into what uses them (x + -y is x - y, -y * c is y * -c:
// the same IEEE results); repeated (op, operands) share one node (CSE), and what no entry,
// guard or check reads is dropped. x * 0 and the zero-adjoint skips are where replaying could
// differ from hessian_block: they differ only when some value is NaN or infinite (0 * inf),
// so a replay whose op slots are not all finite is declined, and so is one where a rule's
// branch goes the other way (the rules' comparisons are recorded as guards, the
// function's own guards come along): the caller then runs hessian_block. Where it is not
// declined, every entry equals hessian_block's but for the sign of a zero.
#pragma once
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "tapegrad/hessian.hpp"
#include "tapegrad/program.hpp"
#include "tapegrad/structure.hpp"

namespace tapegrad {

struct recorded_hessian {
    program prog;  // the function's inputs; output k is entry k
    std::size_t n_ops = 0;  // op slots, the function's kept ones included
    // prog's runs (find_runs): a replay evaluates each as loops over its iterations (the
    // recording goes through the slots in order, so its nodes come in long runs).
    std::vector<run> runs;
};

// Entry k is column entries[k].second of the compressed Hessian of p's output 0 (the
// plan's seed groups) at input entries[k].first. x is the point the rules' branches are
// recorded at. nullptr if it would take more than max_ops op slots.
std::unique_ptr<recorded_hessian> record_hessian(const program& p, const hessian_plan& plan,
                                                 const std::vector<std::pair<slot, slot>>& entries,
                                                 const double* x, std::size_t max_ops);

// The entries at x into out (h.prog.outputs_.size() doubles; val: h.prog.n_slots()
// scratch): true, or false where a guard fails or a value is not finite (out is then
// unspecified and hessian_block gives the entries).
bool run_recorded_hessian(const recorded_hessian& h, const double* x, double* val, double* out);

}  // namespace tapegrad
