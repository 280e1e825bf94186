// What the C++ that F.compile() generates (codegen.cpp) is written in: one forward step
// and one reverse step per op slot, both the kernels of ops.hpp (so of the one op table)
// that the interpreter's sweeps run, with the same operands in the same order. Ships in
// the wheel (tapegrad/include) and is included by the generated source alone.
// V: every slot's value; A: every slot's adjoint; i: the op slot; a, b: its operands.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

#include "tapegrad/ops.hpp"

namespace tapegrad::native {

using u32 = std::uint32_t;

// What a loop's reverse passes for a value its op's rules do not read (the forward may
// not have stored it): NaN, so a rule that did read it could not go unnoticed.
inline constexpr double unread = std::numeric_limits<double>::quiet_NaN();

template <class K>
inline void fw(double* V, u32 i, u32 a, u32 b) {
    V[i] = K::forward(V[a], V[b]);
}

// FA, FB: how the contribution to a, b arrives, as the one-point reverse sweep
// (reverse_sweep_first) delivers it: 0 added, 1 stored (the first one that slot gets; a
// register hand-over is the same value), 2 dropped (a constant: nothing reads its
// adjoint). A nonlinear op with a zero adjoint skips its rule but still stores 0 where it
// would have stored first. x, y, out: the values; g: the adjoint; da, db: where the
// operands' adjoints live (the same place for x * x: dx goes first, as in the sweep).
// 3: stored into a contribution column, to be added to the operand's adjoint later
// (codegen.cpp); a skipped rule stores -0.0 there, which added changes no value
// (x + -0.0 is x, for -0.0 too).
template <class K, int FA, int FB>
inline void rvp(double x, double y, double out, double g, double* da, double* db) {
    if (K::linear || g != 0.0) {
        if constexpr (FA == 0) *da += K::dx(x, y, out, g);
        if constexpr (FA == 1 || FA == 3) *da = K::dx(x, y, out, g);
        if constexpr (K::arity == 2 && FB == 0) *db += K::dy(x, y, out, g);
        if constexpr (K::arity == 2 && (FB == 1 || FB == 3)) *db = K::dy(x, y, out, g);
    } else {
        if constexpr (FA == 1) *da = 0.0;
        if constexpr (FA == 3) *da = -0.0;
        if constexpr (K::arity == 2 && FB == 1) *db = 0.0;
        if constexpr (K::arity == 2 && FB == 3) *db = -0.0;
    }
}

template <class K, int FA, int FB>
inline void rv(const double* V, double* A, u32 i, u32 a, u32 b) {
    rvp<K, FA, FB>(V[a], V[b], V[i], A[i], A + a, A + b);
}

}  // namespace tapegrad::native

// A loop is a function of its own whose pointers to the slots before the run and to the
// run's own are __restrict (they never overlap): the compiler may then keep values in
// registers across the run's stores.
#if defined(_MSC_VER)
#define TG_NATIVE_EXPORT extern "C" __declspec(dllexport)
#define TG_NATIVE_LOOP static __declspec(noinline) void
#elif defined(_WIN32)
#define TG_NATIVE_EXPORT extern "C" __declspec(dllexport)
#define TG_NATIVE_LOOP static __attribute__((noinline)) void
#else
#define TG_NATIVE_EXPORT extern "C" __attribute__((visibility("default")))
#define TG_NATIVE_LOOP static __attribute__((noinline)) void
#endif
