// _core.empty(shape): float64 arrays for batched results, from a small cache of buffers.
//
// A batched call returns fresh arrays of the same sizes every time. glibc hands the
// memory of large blocks back to the system when they are freed (munmap, or trimming the
// top of its heap once more than twice its mmap threshold is free there), so each call
// page-faulted its outputs in again: measured here, F.grad of a 17-op function at 10^5
// points (four 800 kB results) took 35 ns/point, half of it in the kernel (1600 faults per
// call), and 19 ns/point in a process where importing casadi had raised glibc's dynamic
// thresholds. Buffers freed by numpy come back here and are handed out again, already
// mapped (as PyTorch's and XLA's caching allocators do).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "bindings/function.hpp"
#include "tapegrad/column.hpp"  // map_huge_pages
#include "tapegrad/os_memory.hpp"
#ifdef _WIN32
#include <malloc.h>
#endif

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

// Sizes below kSmall go to numpy (malloc keeps those in its heap anyway). Blocks are
// rounded up to an eighth of the next power of two (at most 12.5% unused), so a batch of a
// slightly different size still finds one, and one of 10^7 points (80 MB) does not take a
// 128 MB block. At most keep_bytes() wait in the cache; the rest go back to the system.
//
// Blocks of 2 MiB and more are mappings on 2 MiB boundaries with transparent huge pages
// asked for (Linux, where THP is "madvise" or "always"): measured here, a first touch then
// costs 0.13-0.15 ms per MB instead of 0.37-0.44 with 4 KiB pages. Elsewhere, or if the
// kernel says no, they are ordinary pages.
constexpr std::size_t kSmall = std::size_t(64) << 10;
constexpr std::size_t kHuge = huge_page_bytes;

// A quarter of physical memory's sixteenth: 1 GiB on a 16 GiB machine, between 256 MiB
// and 4 GiB anywhere (enough for a batch of 10^7 points' four results to come back).
std::size_t keep_bytes() {
    static const std::size_t keep = [] {
        std::size_t ram = std::size_t(4) << 30;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
        const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) ram = std::size_t(pages) * std::size_t(page);
#elif defined(_WIN32)
        MEMORYSTATUSEX m{};
        m.dwLength = sizeof(m);
        if (GlobalMemoryStatusEx(&m)) ram = std::size_t(m.ullTotalPhys);
#endif
        return std::clamp(ram / 16, std::size_t(256) << 20, std::size_t(4) << 30);
    }();
    return keep;
}

void* allocate(std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHuge) return map_huge_pages(bytes);
#endif
#ifdef _WIN32  // no aligned_alloc in Microsoft's C library; no huge pages without a privilege
    void* p = _aligned_malloc(bytes, 64);
#else
    void* p = std::aligned_alloc(64, bytes);
#endif
    if (!p) throw std::bad_alloc();
    return p;
}

void deallocate(void* p, [[maybe_unused]] std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHuge) return void(munmap(p, bytes));
#endif
#ifdef _WIN32
    _aligned_free(p);
#else
    std::free(p);
#endif
}

class buffer_cache {
public:
    void* take(std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = free_.find(bytes);
            if (it != free_.end() && !it->second.empty()) {
                void* p = it->second.back();
                it->second.pop_back();
                kept_ -= bytes;
                return p;
            }
        }
        return allocate(bytes);
    }
    void give(void* p, std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (kept_ + bytes <= keep_bytes()) {
                free_[bytes].push_back(p);
                kept_ += bytes;
                return;
            }
        }
        deallocate(p, bytes);
    }
    static std::size_t round_up(std::size_t bytes) {
        std::size_t b = kSmall;
        while (b < bytes) b *= 2;
        const std::size_t step = std::max(b / 8, b >= kHuge * 8 ? kHuge : std::size_t(64));
        return (bytes + step - 1) / step * step;
    }

private:
    std::mutex mu_;
    std::size_t kept_ = 0;
    std::map<std::size_t, std::vector<void*>> free_;  // by block size
};

// Never destroyed: arrays may outlive module teardown and give their block back late.
buffer_cache& cache() {
    static buffer_cache* c = new buffer_cache;
    return *c;
}

struct block {
    void* p;
    std::size_t bytes;
};

}  // namespace

py::array_t<double> empty(const std::vector<py_ssize>& shape) {
    std::size_t n = 1;
    for (py_ssize d : shape) {
        if (d < 0) throw py::value_error("empty: negative dimension");
        if (d && n > (std::size_t(1) << 60) / 8 / std::size_t(d))
            throw py::value_error("empty: array too large");
        n *= std::size_t(d);
    }
    if (n * sizeof(double) < kSmall) return py::array_t<double>(shape);
    const std::size_t bytes = buffer_cache::round_up(n * sizeof(double));
    std::unique_ptr<block> b(new block{cache().take(bytes), bytes});
    auto release = [](void* q) {
        auto* blk = static_cast<block*>(q);
        cache().give(blk->p, blk->bytes);
        delete blk;
    };
    py::capsule owner;
    try {
        owner = py::capsule(b.get(), release);
    } catch (...) {
        cache().give(b->p, b->bytes);
        throw;
    }
    double* data = static_cast<double*>(b.release()->p);  // the capsule owns it now
    return py::array_t<double>(shape, data, owner);
}

void register_buffers(py::module_& m) {
    m.def("empty", &empty, py::arg("shape"),
          "An uninitialised float64 array like numpy.empty, whose memory (when large) "
          "comes from and returns to a cache of already-mapped buffers.");
}

}  // namespace tapegrad::bind
