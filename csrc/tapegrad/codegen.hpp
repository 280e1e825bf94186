// Native code for a frozen program (F.compile()): C++ source for its one-point forward
// and reverse sweeps, and the shared library built from it, loaded.
//
// The source defines, with C linkage,
//   tg_forward(x, val)                 what program::forward does,
//   tg_forward_gradient(x, val)        the same for the values the gradient needs alone:
//                                      those tg_reverse's rules and the guards read, and
//                                      what they are computed from (not the outputs'),
//   tg_reverse_gradient(...)           tg_reverse after tg_forward_gradient, storing into
//                                      grad what tg_reverse adds to it (zeros): a loop
//                                      whose values only its own rules read computes them
//                                      again in its reverse, and tg_forward_gradient skips it,
//   tg_reverse(val, adj, seed, grad)   what program::reverse does,
//   tg_digest                          program_digest() of the program it was made from,
// each op slot one call of native_rules.hpp on the kernels of ops.hpp, in slot order
// (reverse: newest first), with every run of find_runs that keeps its shape emitted as a
// `for` loop over its iterations. Each adjoint therefore gets the same contributions in
// the same order as in the interpreter, and values and gradients are bit for bit its
// own (compiled without FMA contraction or reassociation). A loop stores only the values
// read later from memory: by an op's reverse rule (what its d/dx and d/dy in ops.def
// name), a guard, an output, or an op outside the iteration. A value read by its own
// loop's rules alone goes to a column (one iteration's after another's) in the loop's
// stretch of V, which nothing else then reads; tg_forward leaves the other slots of a
// loop unwritten.
#pragma once
#include <cstdint>
#include <string>

#include "tapegrad/program.hpp"

namespace tapegrad {

struct codegen_stats {
    std::size_t loops = 0;       // for loops emitted (per sweep)
    std::size_t looped_ops = 0;  // op slots run inside them
    std::size_t straight_ops = 0;
    std::size_t sums_reassociated = 0;  // loops whose sum runs in partial sums
};

// FNV-1a over everything the sweeps read: inputs, ops, operands, constants' bits, outputs.
std::uint64_t program_digest(const program& p);

// reassociate: a loop's sum recurrence (an add, or a sub's x, reading its own last value,
// whose running values nobody reads) is added in partial sums (codegen.cpp); every other
// value and every adjoint's order stay as above.
std::string native_source(const program& p, codegen_stats* stats = nullptr,
                          bool reassociate = false);

// A library built from native_source(p), loaded; unloaded with the last reference.
class native_code {
public:
    using forward_fn = void (*)(const double* x, double* val);
    using reverse_fn = void (*)(const double* val, double* adj, const double* seed, double* grad);
    // Throws std::runtime_error if the library does not load or lacks a symbol, and
    // std::invalid_argument if it was made from another program than p.
    native_code(const std::string& path, const program& p);
    ~native_code();
    native_code(const native_code&) = delete;
    native_code& operator=(const native_code&) = delete;

    forward_fn forward = nullptr;
    forward_fn forward_gradient = nullptr;  // val good for reverse_gradient and the guards alone
    reverse_fn reverse = nullptr;
    reverse_fn reverse_gradient = nullptr;
    const std::string& path() const { return path_; }

private:
    void* handle_ = nullptr;
    std::string path_;
};

}  // namespace tapegrad
