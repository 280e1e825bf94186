// The SIMD forms of libm functions that GCC calls from lanes.cpp's vectorised loops, in the
// x86-64 vector function ABI: _ZGVbN2v_exp takes and returns 2 doubles in xmm0 (SSE2),
// _ZGVdN4v_exp 4 in ymm0 (AVX2); a second argument (vv) comes in xmm1/ymm1. They are
// defined here, not linked from libmvec, so that the extension needs no particular glibc
// (libmvec has most of them only since 2.35, which would be every wheel's floor). At load
// time each one is pointed at libmvec's own function when dlopen("libmvec.so.1") finds it,
// the same code linking to it ran, and otherwise at scalar libm lane by lane, which is what
// one-point replay computes, bit for bit.
#include "tapegrad/vector_math.hpp"

#ifdef TG_VECTOR_MATH
#ifndef __x86_64__
#error "TG_VECTOR_MATH: the SIMD forms here are x86-64's"
#endif
#include <dlfcn.h>
#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#define TG_AVX2 __attribute__((target("avx2")))

namespace {

using b1 = __m128d (*)(__m128d);
using b2 = __m128d (*)(__m128d, __m128d);
using d1 = __m256d (*)(__m256d);
using d2 = __m256d (*)(__m256d, __m256d);

template <class F>
__m128d each2(F f, __m128d x, __m128d y) {
    alignas(16) double a[2], b[2];
    _mm_store_pd(a, x);
    _mm_store_pd(b, y);
    for (int l = 0; l < 2; ++l) a[l] = f(a[l], b[l]);
    return _mm_load_pd(a);
}

template <class F>
TG_AVX2 __m256d each4(F f, __m256d x, __m256d y) {
    alignas(32) double a[4], b[4];
    _mm256_store_pd(a, x);
    _mm256_store_pd(b, y);
    for (int l = 0; l < 4; ++l) a[l] = f(a[l], b[l]);
    return _mm256_load_pd(a);
}

// Per row: the lane-by-lane fallbacks and the pointers the entry points call through.
#define TG_SCALAR_1(name) [](double a, double) { return std::name(a); }
#define TG_SCALAR_2(name) [](double a, double b) { return std::name(a, b); }
#define TG_ARGS_1(T) T x
#define TG_ARGS_2(T) T x, T y
#define TG_PASS_1 x
#define TG_PASS_2 x, y
#define TG_PAIR_1 x, x  // unary: the second operand is ignored
#define TG_PAIR_2 x, y
#define TG_VECTOR_MATH_FN(name, arity)                          \
    __m128d scalar_b_##name(TG_ARGS_##arity(__m128d)) {         \
        return each2(TG_SCALAR_##arity(name), TG_PAIR_##arity); \
    }                                                           \
    TG_AVX2 __m256d scalar_d_##name(TG_ARGS_##arity(__m256d)) { \
        return each4(TG_SCALAR_##arity(name), TG_PAIR_##arity); \
    }                                                           \
    b##arity b_##name = scalar_b_##name;                        \
    d##arity d_##name = scalar_d_##name;
#include "tapegrad/vector_math.def"
#undef TG_VECTOR_MATH_FN

}  // namespace

// The entry points GCC's vectorised calls name: one indirect jump each.
#define TG_ENTRY(b_name, d_name, name, arity)                                                 \
    extern "C" __m128d b_name(TG_ARGS_##arity(__m128d)) { return b_##name(TG_PASS_##arity); } \
    extern "C" TG_AVX2 __m256d d_name(TG_ARGS_##arity(__m256d)) {                             \
        return d_##name(TG_PASS_##arity);                                                     \
    }
#define TG_ENTRY_1(name) TG_ENTRY(_ZGVbN2v_##name, _ZGVdN4v_##name, name, 1)
#define TG_ENTRY_2(name) TG_ENTRY(_ZGVbN2vv_##name, _ZGVdN4vv_##name, name, 2)
#define TG_VECTOR_MATH_FN(name, arity) TG_ENTRY_##arity(name)
#include "tapegrad/vector_math.def"
#undef TG_VECTOR_MATH_FN
#endif

namespace tapegrad::vector_math {

namespace {

std::vector<function> resolve() {
    std::vector<function> r;
#ifdef TG_VECTOR_MATH
    // Read once: TAPEGRAD_LIBMVEC=0 keeps every function on scalar libm.
    const char* env = std::getenv("TAPEGRAD_LIBMVEC");
    void* lib = env && std::strcmp(env, "0") == 0 ? nullptr : dlopen("libmvec.so.1", RTLD_NOW);
    // Both forms or neither, so that a function's lanes agree with each other.
#define TG_VECTOR_MATH_FN(name, arity)                                                \
    {                                                                                 \
        void* b = lib ? dlsym(lib, "_ZGVbN2" TG_ABI_STR_##arity "_" #name) : nullptr; \
        void* d = lib ? dlsym(lib, "_ZGVdN4" TG_ABI_STR_##arity "_" #name) : nullptr; \
        if (b && d) {                                                                 \
            b_##name = reinterpret_cast<b##arity>(b);                                 \
            d_##name = reinterpret_cast<d##arity>(d);                                 \
        }                                                                             \
        r.push_back({#name, arity, b && d});                                          \
    }
#define TG_ABI_STR_1 "v"
#define TG_ABI_STR_2 "vv"
#else
#define TG_VECTOR_MATH_FN(name, arity) r.push_back({#name, arity, false});
#endif
#include "tapegrad/vector_math.def"
#undef TG_VECTOR_MATH_FN
    return r;
}

// At load time, before any batch can run.
[[maybe_unused]] const bool resolved_at_load = !functions().empty();

}  // namespace

const std::vector<function>& functions() {
    static const std::vector<function> table = resolve();
    return table;
}

std::vector<simd_forms> simd_entries() {
    std::vector<simd_forms> r;
#ifdef TG_VECTOR_MATH
    (void)functions();  // resolved first
#define TG_VECTOR_MATH_FN(name, arity) \
    r.push_back({reinterpret_cast<const void*>(b_##name), reinterpret_cast<const void*>(d_##name)});
#include "tapegrad/vector_math.def"
#undef TG_VECTOR_MATH_FN
#endif
    return r;
}

}  // namespace tapegrad::vector_math
