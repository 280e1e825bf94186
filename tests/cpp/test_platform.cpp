// What differs between systems: a tape column's own mapping (mmap on Linux and macOS,
// VirtualAlloc on Windows) and the AVX2 check that picks the batched kernels.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>

#include "tapegrad/column.hpp"
#include "tapegrad/platform.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <cpuid.h>
#endif

using namespace tapegrad;

namespace {

#if defined(__unix__) || defined(__APPLE__) || defined(_WIN32)
constexpr bool kMaps = true;
#else
constexpr bool kMaps = false;
#endif

double at(std::size_t i) { return double(i) * 0.5 + 1.0; }

bool holds(const column<double>& c, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i)
        if (c[i] != at(i)) return false;
    return true;
}

void fill(column<double>& c, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) c[i] = at(i);
}

}  // namespace

TEST_CASE("column: a mapping keeps what is used through growth, discard_above and shrinking") {
    const std::size_t small = column_memory::map_min_bytes / sizeof(double) / 4,
                      big = column_memory::map_min_bytes / sizeof(double) * 2;
    column<double> c;
    c.resize(0, small);
    CHECK_FALSE(c.mapped());
    fill(c, 0, small);
    c.resize(small, big);
    CHECK(c.mapped() == kMaps);
    CHECK(holds(c, 0, small));
    fill(c, small, big);
    c.resize(big, 4 * big);
    CHECK(holds(c, 0, big));
    fill(c, big, 4 * big);
    const std::size_t all = c.resident_bytes();

    // The pages above `keep` go back; the pointer, the size and what is below stay.
    const std::size_t keep = big + big / 3 + 5;  // not on a page boundary
    const double* p = c.get();
    c.discard_above(keep);
    CHECK(c.get() == p);
    CHECK(holds(c, 0, keep));
    const std::size_t left = c.resident_bytes();
    INFO("resident before " << all << " B, after " << left << " B");
#if defined(__linux__) || defined(_WIN32)  // (macOS may keep MADV_DONTNEED pages resident)
    CHECK(all >= 4 * big * sizeof(double));
    CHECK(left <= keep * sizeof(double) + (std::size_t(64) << 10));
#endif
    // ... and are still there to write to (committed, on Windows).
    fill(c, keep, 4 * big);
    CHECK(holds(c, 0, 4 * big));

    c.resize(2 * big, 2 * big);  // a smaller mapping
    CHECK(c.mapped() == kMaps);
    CHECK(holds(c, 0, 2 * big));
    c.resize(small, 2 * small);  // back on the heap
    CHECK_FALSE(c.mapped());
    CHECK(holds(c, 0, small));
}

TEST_CASE("column: one on huge pages keeps what is used through growth, discard and shrinking") {
    column<double> c(true);
#ifdef __linux__
    const std::size_t big = column_memory::huge_min_bytes / sizeof(double) * 2;
#else
    const std::size_t big = column_memory::map_min_bytes / sizeof(double) * 2;
#endif
    const std::size_t below = big / 8;  // a mapping of 4 KiB pages on Linux
    c.resize(0, below);
    fill(c, 0, below);
    c.resize(below, big);  // onto huge pages: a copy
    CHECK(c.mapped() == kMaps);
    CHECK(holds(c, 0, below));
#ifdef __linux__
    const auto on_2mib = [&] {
        return reinterpret_cast<std::uintptr_t>(c.get()) % huge_page_bytes == 0;
    };
    CHECK(on_2mib());
#endif
    fill(c, below, big);
    for (std::size_t n = big; n < 16 * big; n *= 2) {  // mremap onto new boundaries
        c.resize(n, 2 * n);
        CHECK(holds(c, 0, n));
        fill(c, n, 2 * n);
#ifdef __linux__
        CHECK(on_2mib());
#endif
    }
    const std::size_t keep = 3 * big + 1001;
    c.discard_above(keep);
    CHECK(holds(c, 0, keep));
    fill(c, keep, 16 * big);
    c.resize(big, big);  // smaller, still mapped
    CHECK(holds(c, 0, big));
    c.resize(big, 4 * big);
    CHECK(holds(c, 0, big));
    c.resize(16, 32);  // back on the heap
    CHECK_FALSE(c.mapped());
    CHECK(holds(c, 0, 16));
}

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
