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

#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "bindings/function.hpp"

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

// Sizes below kSmall go to numpy (malloc keeps those in its heap anyway); blocks are
// rounded up to a power of two so a batch of a slightly different size still finds one.
// At most kKeep bytes wait in the cache; the rest go back to the system at once.
constexpr std::size_t kSmall = std::size_t(64) << 10;
constexpr std::size_t kKeep = std::size_t(256) << 20;

class buffer_cache {
public:
    void* take(std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto& list = free_[log2(bytes)];
            if (!list.empty()) {
                void* p = list.back();
                list.pop_back();
                kept_ -= bytes;
                return p;
            }
        }
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        return p;
    }
    void give(void* p, std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (kept_ + bytes <= kKeep) {
                free_[log2(bytes)].push_back(p);
                kept_ += bytes;
                return;
            }
        }
        std::free(p);
    }
    static std::size_t round_up(std::size_t bytes) {
        std::size_t b = kSmall;
        while (b < bytes) b *= 2;
        return b;
    }

private:
    static int log2(std::size_t pow2) {
        int k = 0;
        while (pow2 >>= 1) ++k;
        return k;
    }
    std::mutex mu_;
    std::size_t kept_ = 0;
    std::vector<void*> free_[64];
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
