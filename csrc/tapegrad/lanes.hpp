// Batched (lane-by-lane) sweeps of a program over one block of points. lanes.cpp is
// compiled once per instruction set (baseline, AVX2) and the best one the CPU runs is
// picked at run time; with vector math on, transcendental ops call glibc's libmvec.
#pragma once
#include <cstddef>

namespace tapegrad {

class program;

namespace lanes {

struct kernels {
    const char* name;  // "avx2" or "baseline"
    // Slot s of lane l lives at v[s * B + l]; L <= B lanes are in use.
    void (*forward)(const program& p, double* v, std::size_t B, std::size_t L);
    void (*reverse)(const program& p, const double* v, double* adj, std::size_t B,
                    std::size_t L);
};

const kernels& get();  // the best set for this CPU (TAPEGRAD_LANES=baseline forces it)

}  // namespace lanes
}  // namespace tapegrad
