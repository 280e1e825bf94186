// Where batched replay's libm calls come from: glibc's libmvec, looked up at run time
// (vector_math.cpp), or scalar libm lane by lane.
#pragma once
#include <vector>

namespace tapegrad::vector_math {

struct function {
    const char* name;   // a row of vector_math.def
    int arity;
    bool from_libmvec;  // the lanes call libmvec's SIMD form (within 4 ulp of scalar libm)
};

// Every row of vector_math.def, in its order. All false when the build has no vector
// math (TAPEGRAD_VECTOR_MATH=OFF, not GCC on x86-64 Linux), when libmvec.so.1 or the
// function is missing, or when TAPEGRAD_LIBMVEC=0 was set at load time.
const std::vector<function>& functions();

// The SIMD forms the lanes call, per row of vector_math.def in its order: the 2-lane
// (SSE2) and 4-lane (AVX2) entry, as resolved at load time (libmvec's or the lane-by-lane
// fallback). F.compile()'s batch code calls these same ones (codegen_batch.cpp). Empty
// without vector math.
struct simd_forms {
    const void* b;
    const void* d;
};
std::vector<simd_forms> simd_entries();

}  // namespace tapegrad::vector_math
