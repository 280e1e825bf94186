// Native code for a frozen program's batches (F.compile()): C++ source that runs a block
// of points in one `omp simd` loop, each point's whole forward and reverse sweep as
// straight-line scalar code, and the library built from it, loaded.
//
// The source defines, with C linkage,
//   tg_batch_value(x, y, bad, n)             what the lanes' forward does,
//   tg_batch_grad(x, y, g, bad, n, seed)     the lanes' forward and reverse,
//   tg_batch_digest, tg_batch_isa            the program and the lane set it matches,
//   tg_batch_init(table, n)                  where its SIMD math calls go,
// for the block layout of program::native_block. Every op is the lanes' own expression
// of the op table's kernels (ops.hpp), the reverse the lanes' selects in the same order,
// so that a point's results are bit for bit the interpreted batch's when the loop is
// vectorised as the lanes' are: compiled with the lanes' flags for the same instruction
// set, its libm calls go to the SIMD entry points the lanes call (vector_math.hpp),
// through a table the loader fills. native.py checks the compiler's report that the loop
// was vectorised and keeps no library where it was not.
#pragma once
#include <cstdint>
#include <string>

#include "tapegrad/program.hpp"

namespace tapegrad {

// Programs with more ops than this get no batch code: one function of straight-line code
// per point takes the compiler long: about 10 ms per op with GCC 12 here (1054 ops:
// 11 s), where the one-point code of the same program takes a fraction of that.
inline constexpr std::size_t native_batch_max_ops = 1000;

// The source for lane set `isa` ("avx2" or "baseline"), or "" with the reason in `why`
// when the program gets none.
std::string native_batch_source(const program& p, const std::string& isa, std::string* why);

// A library built from native_batch_source(p, isa), loaded; unloaded with the last
// reference. Throws std::runtime_error if it does not load, lacks a symbol, or was made
// for another lane set than the one running, and std::invalid_argument if it was made
// from another program than p.
class native_batch {
public:
    native_batch(const std::string& path, const program& p);
    ~native_batch();
    native_batch(const native_batch&) = delete;
    native_batch& operator=(const native_batch&) = delete;

    program::native_block fns;
    const std::string& path() const { return path_; }

private:
    void* handle_ = nullptr;
    std::string path_;
};

}  // namespace tapegrad
