// What differs between compilers: branch hints, and the CPU check that picks the batched
// kernels. GCC and Clang keep their builtins; MSVC gets the portable forms.
#pragma once

#if defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
#include <immintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TG_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define TG_LIKELY(x) (x)
#endif

namespace tapegrad::platform {

// Whether AVX2 code may run, from CPUID and XCR0 (Intel SDM vol. 1, 14.3 and 14.7.1):
// the CPU has AVX2 (leaf 7, EBX bit 5) and AVX (leaf 1, ECX bit 28), and the OS saves the
// ymm registers on a context switch (OSXSAVE, leaf 1 ECX bit 27, then XCR0 bits 1 and 2).
// cpuid(leaf, subleaf, regs) fills EAX..EDX; xgetbv() reads XCR0, and is not called
// without OSXSAVE, where the instruction faults.
template <class Cpuid, class Xgetbv>
bool avx2_usable(Cpuid cpuid, Xgetbv xgetbv) {
    unsigned r[4];
    cpuid(0u, 0u, r);
    if (r[0] < 7) return false;
    cpuid(1u, 0u, r);
    const unsigned osxsave = 1u << 27, avx = 1u << 28;
    if ((r[2] & (osxsave | avx)) != (osxsave | avx)) return false;
    if ((xgetbv() & 6u) != 6u) return false;
    cpuid(7u, 0u, r);
    return (r[1] & (1u << 5)) != 0;
}

// (clang-cl takes MSVC's branch too: __builtin_cpu_supports reads compiler-rt's __cpu_model,
// which an MSVC link does not bring in.)
inline bool cpu_has_avx2() {
#if defined(_MSC_VER) && defined(_M_X64)
    return avx2_usable(
        [](unsigned leaf, unsigned sub, unsigned* r) {
            int v[4];
            __cpuidex(v, int(leaf), int(sub));
            for (int k = 0; k < 4; ++k) r[k] = unsigned(v[k]);
        },
        [] { return static_cast<unsigned long long>(_xgetbv(0)); });
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

}  // namespace tapegrad::platform
