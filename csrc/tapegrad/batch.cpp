// program::run_batch: blocks of points on a pool of threads, each block lane by lane
// (lanes.hpp), or by the one-point sweeps for a single point.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>

#include "tapegrad/hessian.hpp"
#include "tapegrad/lanes.hpp"
#include "tapegrad/program.hpp"
#include "tapegrad/sweep.hpp"

namespace tapegrad {
namespace {

std::size_t block_size(slot n_slots) {
    // A block's values and adjoints take 16 bytes per slot and lane. Each op costs a
    // dispatch per block, so wide blocks pay off even past L2: measured here, a 984-slot
    // program (MLP step per point, 100 points) ran 2.2x faster with one 100-lane block
    // than with 8-lane blocks, and a 21-slot one did not care (36-38 ns/point for budgets
    // of 64 KiB to 1 MiB). The budget caps the scratch of huge programs (8 lanes).
    static const std::size_t budget = [] {
        const char* e = std::getenv("TAPEGRAD_BLOCK_BYTES");
        return e ? std::size_t(std::atol(e)) : (std::size_t(2) << 20);
    }();
    const std::size_t b = budget / (16 * std::max<std::size_t>(n_slots, 1));
    return std::clamp<std::size_t>(b & ~std::size_t(7), 8, 512);
}

// The lane kernels run a block's lanes in whole vectors of 8 (block sizes are multiples of
// 8): the lanes past the block's points compute on stale values that nothing reads. So
// every point goes through the same SIMD form of each vector-math function wherever it
// sits in the batch; a loop's remainder would take another (libmvec's 2- and 4-lane forms
// can differ in the last bit).
std::size_t whole_vectors(std::size_t lanes) { return (lanes + 7) & ~std::size_t(7); }

void gather(const double* src, std::ptrdiff_t stride, double* dst, std::size_t L) {
    if (stride == 1) return void(std::memcpy(dst, src, sizeof(double) * L));
    for (std::size_t l = 0; l < L; ++l) dst[l] = src[std::ptrdiff_t(l) * stride];
}
void scatter(const double* src, double* dst, std::ptrdiff_t stride, std::size_t L) {
    if (stride == 1) return void(std::memcpy(dst, src, sizeof(double) * L));
    for (std::size_t l = 0; l < L; ++l) dst[std::ptrdiff_t(l) * stride] = src[l];
}

}  // namespace

// Outputs and gradients of the points listed in failed[from, ...) set to NaN.
void poison(const program::batch_io& io, const std::vector<std::size_t>& failed, std::size_t from,
            std::size_t n_inputs) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto each = [nan](const std::vector<double*>& base, const std::vector<std::ptrdiff_t>& stride,
                      std::ptrdiff_t q) {
        for (std::size_t j = 0; j < base.size(); ++j) base[j][q * stride[j]] = nan;
    };
    for (std::size_t f = from; f < failed.size(); ++f) {
        const std::ptrdiff_t q = std::ptrdiff_t(failed[f]);
        each(io.out_base, io.out_stride, q);
        each(io.grad_base, io.grad_stride, q);
        each(io.tout_base, io.tout_stride, q);
        each(io.hvp_base, io.hvp_stride, q);
        if (io.hess_base) std::fill_n(io.hess_base + q * io.hess_stride, n_inputs * n_inputs, nan);
    }
}

struct program::block_scratch {
    std::vector<double> v, adj, t, adjt;  // lane-major: slot s of lane l at [s * B + l]
};

void program::run_block(const batch_io& io, std::size_t p0, std::size_t L, std::size_t B,
                        block_scratch& s, const hessian_plan* plan,
                        std::vector<std::size_t>& failed) const {
    // F.compile()'s batch code runs plain values and gradients (a single point runs the
    // one-point sweeps, as below).
    if (io.native && B > 1 && io.seed_base.empty() && io.tan_base.empty() && !plan &&
        io.out_base.size() == outputs_.size() &&
        (io.grad_base.empty() ? io.hvp_base.empty() && io.native->value
                              : io.grad_base.size() == n_inputs && io.native->grad))
        return run_native_block(io, p0, L, B, s, failed);
    const std::ptrdiff_t q0 = std::ptrdiff_t(p0);
    double* v = s.v.data();
    for (std::uint32_t i = 0; i < n_inputs; ++i)
        gather(io.in_base[i] + q0 * io.in_stride[i], io.in_stride[i], v + std::size_t(i) * B, L);
    // One point (B == 1) runs the one-point sweeps: same rules, no per-op lane loop.
    const lanes::kernels& k = lanes::get();
    const bool one = B == 1;
    const std::size_t LK = one ? L : std::min(B, whole_vectors(L));  // the kernels' lanes
    const program_view pv = view();
    if (one)
        forward_sweep_carry(pv, v);
    else
        k.forward(pv, v, B, LK);

    // Guards: a point whose comparison goes the other way gets NaN outputs and is listed.
    const std::size_t n_failed_before = failed.size();
    if (!guards_.empty())
        for (std::size_t l = 0; l < L; ++l)
            for (const guard& g : guards_)
                if (compare(g.c, v[g.lhs * B + l], v[g.rhs * B + l]) != g.outcome) {
                    failed.push_back(p0 + l);
                    break;
                }

    for (std::size_t o = 0; o < outputs_.size(); ++o)
        scatter(v + std::size_t(outputs_[o]) * B, io.out_base[o] + q0 * io.out_stride[o],
                io.out_stride[o], L);
    if (!io.tan_base.empty()) {
        double* t = s.t.data();
        for (std::uint32_t i = 0; i < n_inputs; ++i)
            gather(io.tan_base[i] + q0 * io.tan_stride[i], io.tan_stride[i], t + std::size_t(i) * B,
                   L);
        if (one)
            tangent(v, t);
        else
            k.tangent(pv, v, t, B, LK, nullptr, 0);
        for (std::size_t o = 0; o < io.tout_base.size(); ++o)
            scatter(t + std::size_t(outputs_[o]) * B, io.tout_base[o] + q0 * io.tout_stride[o],
                    io.tout_stride[o], L);
    }
    if (plan) {
        hessian_block(pv, *plan, outputs_[io.seed_output], v, s.adj.data(), s.t.data(),
                      s.adjt.data(), B, L, io.hess_base + q0 * io.hess_stride, io.hess_stride);
    } else if (io.reverse()) {
        double* adj = s.adj.data();
        // The plain reverse sweeps store first contributions (first_code()): only the
        // slots none reaches need clearing. The dual ones add everywhere.
        if (io.hvp_base.empty())
            for (slot z : zero_) std::fill_n(adj + std::size_t(z) * B, L, 0.0);
        else
            std::memset(adj, 0, sizeof(double) * B * n_slots());
        if (io.seed_base.empty()) {
            double* seed = adj + std::size_t(outputs_[io.seed_output]) * B;
            for (std::size_t l = 0; l < L; ++l) seed[l] += 1.0;
        } else {
            for (std::size_t o = 0; o < outputs_.size(); ++o) {
                double* seed = adj + std::size_t(outputs_[o]) * B;
                const double* src = io.seed_base[o] + q0 * io.seed_stride[o];
                for (std::size_t l = 0; l < L; ++l)
                    seed[l] += src[std::ptrdiff_t(l) * io.seed_stride[o]];
            }
        }
        if (io.hvp_base.empty()) {
            if (one)
                reverse_one(v, adj);
            else
                k.reverse(pv, v, adj, B, LK);
            for (std::size_t i = 0; i < std::size_t(n_inputs) * B; i += B)
                for (std::size_t l = 0; l < L; ++l) adj[i + l] += 0.0;  // no -0 (sweep.hpp)
        } else {
            double* adjt = s.adjt.data();
            std::memset(adjt, 0, sizeof(double) * B * n_slots());
            if (one)
                reverse_dual_sweep(pv, v, s.t.data(), adj, adjt);
            else
                k.reverse_dual(pv, v, s.t.data(), adj, adjt, B, LK);
            for (std::uint32_t i = 0; i < n_inputs; ++i)
                scatter(adjt + std::size_t(i) * B, io.hvp_base[i] + q0 * io.hvp_stride[i],
                        io.hvp_stride[i], L);
        }
        for (std::size_t i = 0; i < io.grad_base.size(); ++i)
            scatter(adj + i * B, io.grad_base[i] + q0 * io.grad_stride[i], io.grad_stride[i], L);
    }
    poison(io, failed, n_failed_before, n_inputs);
}

// A block through F.compile()'s batch code: inputs read, and outputs and gradients
// written, in place where they are contiguous and the block is whole vectors (the code
// runs whole vectors of 8 as the lanes do), else through rows of scratch.
void program::run_native_block(const batch_io& io, std::size_t p0, std::size_t L, std::size_t B,
                               block_scratch& s, std::vector<std::size_t>& failed) const {
    const std::ptrdiff_t q0 = std::ptrdiff_t(p0);
    const std::size_t LK = std::min(B, whole_vectors(L));
    const std::size_t n_out = outputs_.size();
    const bool grad = !io.grad_base.empty();
    const std::size_t rows = n_out + (grad ? n_inputs : 0) + 1;
    if (s.t.size() < rows * B) s.t.resize(rows * B);
    double* row = s.t.data();
    thread_local std::vector<const double*> x;
    thread_local std::vector<double*> y, g;
    x.resize(n_inputs);
    y.resize(n_out);
    g.resize(grad ? n_inputs : 0);
    for (std::uint32_t i = 0; i < n_inputs; ++i) {
        const double* src = io.in_base[i] + q0 * io.in_stride[i];
        if (io.in_stride[i] == 1 && L == LK) {
            x[i] = src;
        } else {
            gather(src, io.in_stride[i], s.v.data() + std::size_t(i) * B, L);
            x[i] = s.v.data() + std::size_t(i) * B;
        }
    }
    auto place = [&](double* dst, std::ptrdiff_t stride) {
        if (stride == 1 && L == LK) return dst;
        double* r = row;
        row += B;
        return r;
    };
    for (std::size_t o = 0; o < n_out; ++o)
        y[o] = place(io.out_base[o] + q0 * io.out_stride[o], io.out_stride[o]);
    for (std::size_t i = 0; i < g.size(); ++i)
        g[i] = place(io.grad_base[i] + q0 * io.grad_stride[i], io.grad_stride[i]);
    double* bad = guards_.empty() ? nullptr : row;
    if (grad)
        io.native->grad(x.data(), y.data(), g.data(), bad, LK, io.seed_output);
    else
        io.native->value(x.data(), y.data(), bad, LK);
    const std::size_t n_failed_before = failed.size();
    if (bad)
        for (std::size_t l = 0; l < L; ++l)
            if (bad[l] != 0.0) failed.push_back(p0 + l);
    for (std::size_t o = 0; o < n_out; ++o) {
        double* dst = io.out_base[o] + q0 * io.out_stride[o];
        if (y[o] != dst) scatter(y[o], dst, io.out_stride[o], L);
    }
    for (std::size_t i = 0; i < g.size(); ++i) {
        double* dst = io.grad_base[i] + q0 * io.grad_stride[i];
        if (g[i] != dst) scatter(g[i], dst, io.grad_stride[i], L);
    }
    poison(io, failed, n_failed_before, n_inputs);
}

bool program::run_batch(const batch_io& io, std::size_t n_points, int threads,
                        std::vector<std::size_t>& failed, const std::function<bool()>& stop) const {
    // A batch smaller than a block runs in a block of its own size, rounded up to whole
    // vectors (one point: one lane, the one-point sweeps).
    const std::size_t B =
        n_points <= 1 ? 1 : std::min(block_size(n_slots()), whole_vectors(n_points));
    const std::size_t n_blocks = (n_points + B - 1) / B;
    // Small batches are not worth a thread start (~tens of microseconds).
    const std::size_t work = n_points * n_slots();
    // At most one thread per block, and at most 256 (a typo like threads=100000 must not
    // start a hundred thousand threads).
    std::size_t n_threads =
        std::clamp<std::size_t>(std::size_t(std::max(threads, 1)), 1,
                                std::min<std::size_t>(std::max<std::size_t>(n_blocks, 1), 256));
    if (work < (std::size_t(1) << 16)) n_threads = 1;

    std::unique_ptr<hessian_plan> plan;
    if (io.hess_base) plan = std::make_unique<hessian_plan>(plan_hessian(view()));

    std::atomic<std::size_t> next{0};
    std::atomic<bool> stopped{false};
    std::vector<std::vector<std::size_t>> fails(n_threads);
    auto worker = [&](std::size_t w, bool polls) {
        const std::size_t size = B * n_slots();
        // Kept per thread between calls: fresh pages cost more than small batches do. A
        // call made while this thread's scratch is in use (a Python signal handler run by
        // `stop` that replays again) gets its own.
        static thread_local block_scratch kept;
        static thread_local bool kept_busy = false;
        block_scratch own;
        const bool reuse = !kept_busy;
        block_scratch& s = reuse ? kept : own;
        struct release {
            bool on;
            ~release() {
                if (on) kept_busy = false;
            }
        } release_kept{reuse};
        kept_busy = true;
        s.v.resize(size);
        if (io.reverse()) s.adj.resize(size);
        const bool second = !io.tan_base.empty() || io.hess_base;
        if (second) s.t.assign(size, 0.0);  // constants' tangents stay 0
        if (!io.hvp_base.empty()) s.adjt.resize(size);
        if (io.hess_base) s.adjt.assign(size, 0.0);
        for (slot c = n_inputs; c < first_op_; ++c)
            std::fill_n(s.v.begin() + std::ptrdiff_t(c * B), B, init_[c]);
        std::size_t done = 0;
        for (std::size_t blk; !stopped.load(std::memory_order_relaxed) &&
                              (blk = next.fetch_add(1, std::memory_order_relaxed)) < n_blocks;) {
            const std::size_t p0 = blk * B;
            run_block(io, p0, std::min(B, n_points - p0), B, s, plan.get(), fails[w]);
            if (polls && ++done % 16 == 0 && stop && stop())
                stopped.store(true, std::memory_order_relaxed);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(n_threads - 1);
    try {
        for (std::size_t w = 1; w < n_threads; ++w) pool.emplace_back(worker, w, false);
    } catch (...) {
        // Could not start more threads: the ones started and this one share the work.
    }
    worker(0, true);
    for (auto& th : pool) th.join();
    for (auto& f : fails) failed.insert(failed.end(), f.begin(), f.end());
    std::sort(failed.begin(), failed.end());
    return !stopped.load();
}

}  // namespace tapegrad
