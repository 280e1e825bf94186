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

}  // namespace tapegrad::vector_math
