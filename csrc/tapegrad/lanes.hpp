// Batched (lane-by-lane) sweeps of a program over one block of points. lanes.cpp is
// compiled once per instruction set (baseline, AVX2) and the best one the CPU runs is
// picked at run time; with vector math on, transcendental ops call glibc's libmvec.
#pragma once
#include <cstddef>

#include "tapegrad/program_view.hpp"

namespace tapegrad::lanes {

struct kernels {
    const char* name;  // "avx2" or "baseline"
    // Slot s of lane l lives at v[s * B + l]; L <= B lanes are in use.
    void (*forward)(const program_view& p, double* v, std::size_t B, std::size_t L);
    void (*reverse)(const program_view& p, const double* v, double* adj, std::size_t B,
                    std::size_t L);
    // Forward mode: the tangents t of every op slot from those of the inputs (t holds 0
    // at constants); with a list, of just those slots (ascending).
    void (*tangent)(const program_view& p, const double* v, double* t, std::size_t B, std::size_t L,
                    const slot* list, std::size_t n);
    // Forward-over-reverse: reverse() on dual numbers (value v + tangent t), so adj gets
    // the gradient and adjt its directional derivative, the Hessian-vector product.
    void (*reverse_dual)(const program_view& p, const double* v, const double* t, double* adj,
                         double* adjt, std::size_t B, std::size_t L);
    // reverse_dual with the adjoints known: only adjt changes, over the listed slots
    // (descending), or all of them for a null list.
    void (*reverse_tangent)(const program_view& p, const double* v, const double* t,
                            const double* adj, double* adjt, std::size_t B, std::size_t L,
                            const slot* list, std::size_t n);
};

const kernels& get();  // the best set for this CPU (TAPEGRAD_LANES=baseline forces it)

// The sets themselves, one per instruction set lanes.cpp is compiled for.
namespace baseline {
extern const kernels set;
}
#ifdef TG_HAVE_AVX2
namespace avx2 {
extern const kernels set;
}
#endif

}  // namespace tapegrad::lanes
