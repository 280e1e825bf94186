#include "tapegrad/tape.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

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

void tape::grow(index n) {
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

tape::index tape::push(op o, index a, index b) {
    reserve_more(1);
    return put(o, a, b, forward(o, val_[a], val_[b]));
}

void tape::drop_unreferenced_top() {
    while (size_ > 0 && live_[size_ - 1] == 0) --size_;
    if (dirty_ > size_) dirty_ = size_;
}

void tape::backward(index root, double seed) {
    for (index i = 0, n = std::min(root + 1, dirty_); i < n; ++i)
        if (!is_leaf(op_[i])) adj_[i] = 0.0;
    dirty_ = std::max(dirty_, root + 1);
    adj_[root] += seed;
    for (index i = root + 1; i-- > 0;) {
        const double g = adj_[i];
        if (g == 0.0) continue;
        const index a = arg0_[i], b = arg1_[i];
        switch (op_[i]) {
#define TG_OP(name, arity, fwd_, dx_, dy_)                           \
    case op::name: {                                                 \
        const double x = val_[a], y = val_[b], out = val_[i];        \
        adj_[a] += kernel::name::dx(x, y, out, g);                   \
        if constexpr (arity == 2) adj_[b] += kernel::name::dy(x, y, out, g); \
        break;                                                       \
    }
#include "tapegrad/ops.def"
#undef TG_OP
            default:
                break;  // leaves
        }
    }
}

}  // namespace tapegrad
