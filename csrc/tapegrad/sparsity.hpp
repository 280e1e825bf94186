// Sparse derivatives of a program: the exact sparsity patterns of its Jacobian and
// Hessian, read off its structure without evaluating it, and the colorings that compress
// them into a few tangent or adjoint sweeps (each color one seed vector).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tapegrad/program_view.hpp"

namespace tapegrad {

// A boolean sparse matrix in CSR: row r's columns are indices[indptr[r], indptr[r + 1]),
// ascending.
struct pattern {
    std::size_t rows = 0, cols = 0;
    std::vector<std::int64_t> indptr{0};
    std::vector<std::int32_t> indices;
    std::size_t nnz() const { return indices.size(); }
};

// What the op table says about second order, per op: which of an op's local derivatives
// are structurally zero (the table writes 0.0), and which second derivatives are not
// (d2[0] = d²/dx², d2[1] = d²/dxdy, d2[2] = d²/dy²). The second derivatives are found by
// running each row's own rules on dual numbers at generic points (ops.hpp), so there is
// no second list of ops to keep in step with ops.def.
struct op_structure {
    bool dzero[2];
    bool d2[3];
};
const op_structure& structure_of(op o);

// Rows: the program's outputs; columns: its inputs. Entry (k, i) is set when output k
// depends on input i through ops whose derivative in that argument is not structurally
// zero (so floor(x), comparisons, where's condition and detach add nothing).
// Cost: one pass over the ops that the outputs reach, each merging its arguments' sorted
// index sets; a set is moved, not copied, into its last user, so an accumulation chain
// (a sum over inputs in order) costs its length, not its square.
pattern jacobian_pattern(const program_view& p, const slot* outputs, std::size_t n_outputs);

// The Hessian of the output at slot `root`, symmetric, diagonal included where set: for
// each op the root's adjoint reaches whose rule is not linear in some pair of arguments
// (op_structure::d2), the pairs of inputs those arguments depend on (Walther's nonlinear
// interaction domains). Cost: the index-set pass of jacobian_pattern over the ancestors of
// those arguments, plus the pairs each nonlinear op adds (the product of its arguments'
// set sizes).
pattern hessian_pattern(const program_view& p, slot root);

// Greedy distance-2 coloring of the columns of J (m x n): two columns that share a row get
// different colors, in column order (Curtis, Powell and Reid; scipy's group_columns).
// Then J times the color's 0/1 seed vector holds, in row i, entry J[i, j] of the one
// column j of that color in row i. Returns the colors 0 .. k-1 per column.
std::vector<std::int32_t> color_columns(const pattern& J);

// Greedy star coloring of a symmetric pattern's adjacency graph (the diagonal ignored), in
// largest-degree-first order (Gebremedhin, Manne and Pothen 2005, Algorithm 4.1): a
// distance-1 coloring in which every path on four vertices uses at least three colors,
// so each off-diagonal H[i, j] can be read directly from H times one color's seed vector.
// Cost: per vertex, its neighbours' neighbours' neighbours (fine for bounded degree; a
// dense row makes it quadratic).
std::vector<std::int32_t> star_color(const pattern& H);

// Where each nonzero of the star-colored H sits in the compressed product B = H S (S the
// colors' 0/1 seed matrix), stored color-major (B[c * n + i] = row i of H s_c): for
// H[i, j], B[color(j)] at row i if j is the only column of its color in row i, else
// B[color(i)] at row j. Throws std::logic_error if `colors` is not a star coloring.
std::vector<std::int64_t> star_recovery(const pattern& H, const std::vector<std::int32_t>& colors);

}  // namespace tapegrad
