// Hessians of a program over blocks of points, column by column: forward-over-reverse
// in lanes (lanes.hpp), over only the slots each column can touch.
#pragma once
#include <cstddef>
#include <vector>

#include "tapegrad/program_view.hpp"

namespace tapegrad {

// Which slots the j-th Hessian column touches. Its tangent is e_j, so only slots that
// depend on input j can have a nonzero tangent (tz). An op adds a nonzero adjoint tangent
// to its arguments only if its own adjoint tangent is nonzero (az) or, for an op whose
// rule is not linear (ops.hpp), one of its operands or its value moves (rev[j],
// descending); and only the tangents those ops read are computed (fwd[j], ascending).
// Every other contribution is an exact zero (or 0 * inf: a zero tangent contributes
// nothing, as a zero adjoint does in reverse mode).
// With seed groups (a sparse Hessian's colors), column c seeds every input of group c
// at once, and the plan covers the union of their cones.
struct hessian_plan {
    std::vector<std::vector<slot>> groups;  // empty: column j seeds input j alone
    std::vector<std::vector<slot>> fwd, rev;
    std::vector<std::vector<slot>> t_set, adjt_set;  // slots to reset after column j
    // Lists past this many slots in all would cost more memory than they save time: the
    // columns then run every slot (a dense Hessian's columns touch most slots anyway).
    static constexpr std::size_t max_entries = std::size_t(1) << 24;
    bool dense = false;
};

hessian_plan plan_hessian(const program_view& p, std::vector<std::vector<slot>> groups = {});

// Columns j of the Hessian of the output at slot `root` for one block of L lanes (slot s
// of lane l at [s * B + l]): the gradient's reverse sweep once, then per column a tangent
// sweep and an adjoint-tangent sweep over the planned slots only. v holds the forward
// values; adj is scratch; t and adjt are zero but at the constants' tangents (0 too) and
// are left so. H[l][i][j] goes to hess[l * hess_stride + i * n_columns + j], where
// n_columns is n_inputs, or the number of seed groups (then column j is H times group
// j's 0/1 seed vector).
// With adj_ready, adj already holds the root's adjoints (program::adjoints, one lane).
void hessian_block(const program_view& p, const hessian_plan& plan, slot root, const double* v,
                   double* adj, double* t, double* adjt, std::size_t B, std::size_t L, double* hess,
                   std::ptrdiff_t hess_stride, bool adj_ready = false);

}  // namespace tapegrad
