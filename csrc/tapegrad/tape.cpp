#include "tapegrad/tape.hpp"

#include "tapegrad/sweep.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace tapegrad {

tape::tape(std::uint64_t max_nodes) : max_(std::min(max_nodes, hard_max_nodes)) {}

namespace {
// A copy of the first `used` entries of p in a new array of `cap` entries.
template <class T>
std::unique_ptr<T[]> resized(const std::unique_ptr<T[]>& p, std::size_t used, std::size_t cap) {
    std::unique_ptr<T[]> q(new T[cap]);
    if (used) std::memcpy(q.get(), p.get(), used * sizeof(T));
    return q;
}
}  // namespace

void tape::grow(index n) {  // cap_ - size_ < n
    const std::uint64_t need = std::uint64_t(size_) + n;
    if (need > max_)
        throw std::length_error("tapegrad: tape is full (" + std::to_string(max_) +
                                " nodes max); drop references to Vars you no longer need");
    const std::uint64_t cap =
        std::min(std::max<std::uint64_t>({need, 2 * std::uint64_t(cap_), 1024}), max_);
    // Allocate all arrays before swapping any in, so bad_alloc leaves the tape unchanged.
    auto o = resized(op_, size_, cap);
    auto a0 = resized(arg0_, size_, cap), a1 = resized(arg1_, size_, cap);
    auto v = resized(val_, size_, cap), d = resized(adj_, size_, cap);
    auto l = resized(live_, size_, cap);
    op_ = std::move(o), arg0_ = std::move(a0), arg1_ = std::move(a1);
    val_ = std::move(v), adj_ = std::move(d), live_ = std::move(l);
    cap_ = index(cap);
}

void tape::make_room(index n) {
    if (std::uint64_t(size_) + n > next_compact_) {
        if (relocator_) compact();
        // Next time after the tape has grown by twice what survived (at least 4096
        // nodes): each compaction's O(size) cost is paid for by as many appends.
        const std::uint64_t next = std::max<std::uint64_t>(3 * std::uint64_t(size_),
                                                           std::uint64_t(size_) + 4096);
        next_compact_ = index(std::min<std::uint64_t>(next, hard_max_nodes));
    }
    if (cap_ - size_ < n) grow(n);
    room_ = std::min(cap_, next_compact_);
}

void tape::compact() {
    // Keep what a referenced node reaches: one downward pass, since args precede users.
    std::vector<std::uint8_t> keep(size_);
    for (index i = 0; i < size_; ++i) keep[i] = live_[i] > 0;
    for (index i = size_; i-- > 0;)
        if (keep[i] && !is_leaf(op_[i])) keep[arg0_[i]] = keep[arg1_[i]] = 1;
    std::vector<index> to(size_);
    index j = 0, dirty = 0;
    for (index i = 0; i < size_; ++i) {
        if (i == dirty_) dirty = j;
        if (!keep[i]) continue;
        to[i] = j;
        op_[j] = op_[i];
        arg0_[j] = to[arg0_[i]];  // leaves point at 0: harmless, never read
        arg1_[j] = to[arg1_[i]];
        val_[j] = val_[i];
        adj_[j] = adj_[i];
        live_[j] = live_[i];
        ++j;
    }
    dirty_ = dirty_ >= size_ ? j : dirty;
    if (j == size_) return;
    if (!uids_.empty()) {
        std::unordered_map<index, std::uint64_t> moved;
        for (const auto& [i, u] : uids_)
            if (keep[i]) moved.emplace(to[i], u);
        uids_.swap(moved);
    }
    size_ = j;
    relocator_->relocate(to.data());
}

std::uint64_t tape::uid(index i) {
    const auto [it, fresh] = uids_.try_emplace(i, next_uid_);
    if (fresh) ++next_uid_;
    return it->second;
}

void tape::drop_unreferenced_top() {
    while (size_ > 0 && live_[size_ - 1] == 0) {
        --size_;
        if (!uids_.empty()) uids_.erase(size_);
    }
    if (dirty_ > size_) dirty_ = size_;
}

void tape::backward(index root, double seed) {
    for (index i = 0, n = std::min(root + 1, dirty_); i < n; ++i)
        if (!is_leaf(op_[i])) adj_[i] = 0.0;
    dirty_ = std::max(dirty_, root + 1);
    adj_[root] += seed;
    reverse_sweep<consts_by_op, /*Carry=*/true>(op_.get(), arg0_.get(), arg1_.get(),
                                                val_.get(), adj_.get(), 0, root + 1,
                                                consts_by_op{op_.get()});
}

}  // namespace tapegrad
