// What the C++ that F.compile() generates (codegen.cpp) is written in: one forward step
// and one reverse step per op slot, both the kernels of ops.hpp (so of the one op table)
// that the interpreter's sweeps run, with the same operands in the same order. Ships in
// the wheel (tapegrad/include) and is included by the generated source alone.
// V: every slot's value; A: every slot's adjoint; i: the op slot; a, b: its operands.
#pragma once
#include <cstdint>
#include <cstring>

#include "tapegrad/ops.hpp"

namespace tapegrad::native {

using u32 = std::uint32_t;

template <class K>
inline void fw(double* V, u32 i, u32 a, u32 b) {
    V[i] = K::forward(V[a], V[b]);
}

// FA, FB: how the contribution to a, b arrives, as the one-point reverse sweep
// (reverse_sweep_first) delivers it: 0 added, 1 stored (the first one that slot gets; a
// register hand-over is the same value), 2 dropped (a constant: nothing reads its
// adjoint). A nonlinear op with a zero adjoint skips its rule but still stores 0 where it
// would have stored first.
template <class K, int FA, int FB>
inline void rv(const double* V, double* A, u32 i, u32 a, u32 b) {
    const double g = A[i];
    if (K::linear || g != 0.0) {
        const double x = V[a], y = V[b], out = V[i];
        if constexpr (FA == 0) A[a] += K::dx(x, y, out, g);
        if constexpr (FA == 1) A[a] = K::dx(x, y, out, g);
        if constexpr (K::arity == 2 && FB == 0) A[b] += K::dy(x, y, out, g);
        if constexpr (K::arity == 2 && FB == 1) A[b] = K::dy(x, y, out, g);
    } else {
        if constexpr (FA == 1) A[a] = 0.0;
        if constexpr (K::arity == 2 && FB == 1) A[b] = 0.0;
    }
}

}  // namespace tapegrad::native

#if defined(_WIN32)
#define TG_NATIVE_EXPORT extern "C" __declspec(dllexport)
#else
#define TG_NATIVE_EXPORT extern "C" __attribute__((visibility("default")))
#endif
