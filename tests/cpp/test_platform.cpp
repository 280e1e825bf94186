// What differs between compilers: the AVX2 check that picks the batched kernels.
#include <doctest/doctest.h>

#include "tapegrad/platform.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <cpuid.h>
#endif

using namespace tapegrad;

TEST_CASE("platform: avx2_usable reads CPUID and XCR0 as the SDM says") {
    struct cpu {
        unsigned max_leaf, leaf1_ecx, leaf7_ebx;
        unsigned long long xcr0;
    };
    const unsigned osxsave = 1u << 27, avx = 1u << 28, avx2 = 1u << 5;
    const auto usable = [](const cpu& c, bool* read_xcr0 = nullptr) {
        return platform::avx2_usable(
            [&](unsigned leaf, unsigned, unsigned* r) {
                r[0] = leaf == 0 ? c.max_leaf : 0;
                r[1] = leaf == 7 ? c.leaf7_ebx : 0;
                r[2] = leaf == 1 ? c.leaf1_ecx : 0;
                r[3] = 0;
            },
            [&] {
                if (read_xcr0) *read_xcr0 = true;
                return c.xcr0;
            });
    };
    CHECK(usable({7, osxsave | avx, avx2, 0x7}));
    CHECK(usable({13, osxsave | avx, avx2 | 1u, 0xe7}));  // AVX-512 state too
    CHECK_FALSE(usable({6, osxsave | avx, avx2, 0x7}));   // no leaf 7
    CHECK_FALSE(usable({7, osxsave | avx, 0, 0x7}));      // no AVX2
    CHECK_FALSE(usable({7, osxsave, avx2, 0x7}));         // no AVX
    CHECK_FALSE(usable({7, osxsave | avx, avx2, 0x3}));   // the OS does not save ymm
    bool read_xcr0 = false;
    CHECK_FALSE(usable({7, avx, avx2, 0x7}, &read_xcr0));  // no OSXSAVE: xgetbv would fault
    CHECK_FALSE(read_xcr0);

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    // This CPU, read the way MSVC's branch reads it, against the compiler's own check.
    const bool from_cpuid =
        platform::avx2_usable([](unsigned leaf, unsigned sub,
                                 unsigned* r) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); },
                              [] {
                                  unsigned lo, hi;
                                  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
                                  return static_cast<unsigned long long>(hi) << 32 | lo;
                              });
    CHECK(from_cpuid == bool(__builtin_cpu_supports("avx2")));
    CHECK(from_cpuid == platform::cpu_has_avx2());
#endif
}
