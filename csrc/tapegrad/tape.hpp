// The flat tape: a struct-of-arrays arena of nodes appended in topological order.
// Pure C++ (no Python headers), so it can be built and tested on its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <unordered_map>

#include "tapegrad/ops.hpp"

namespace tapegrad {

// Told where nodes moved when the tape compacts (see tape::reserve_more).
struct relocator {
    virtual void relocate(const std::uint32_t* new_index) = 0;
    virtual ~relocator() = default;
};

class tape {
public:
    using index = std::uint32_t;
    // Indices are uint32; the largest value is kept free so a count never wraps.
    static constexpr std::uint64_t hard_max_nodes = std::numeric_limits<index>::max();

    explicit tape(std::uint64_t max_nodes = hard_max_nodes);
    tape(const tape&) = delete;
    tape& operator=(const tape&) = delete;

    index size() const { return size_; }
    index capacity() const { return cap_; }
    std::uint64_t max_nodes() const { return max_; }
    std::size_t bytes() const { return std::size_t(cap_) * bytes_per_node; }

    // Make room for n more nodes, so the next n appends cannot fail (nor move nodes).
    // Throws std::length_error when the tape would pass max_nodes(), std::bad_alloc when
    // memory runs out; the tape is unchanged then.
    // This is also where the tape compacts: once it has grown well past what was
    // reachable at the last compaction, nodes no referenced node reaches are removed and
    // the rest slide down in order (so the order stays topological), and the relocator
    // is told the new index of every node. Read node indices only after this call.
    void reserve_more(index n) {
        if (room_ - size_ < n) make_room(n);
    }
    void set_relocator(relocator* r) { relocator_ = r; }

    index push_leaf(op kind, double value) {
        reserve_more(1);
        return put(kind, 0, 0, value);
    }

    // Append op K over existing nodes a (and b), computing its value now.
    template <class K>
    index push(index a, index b) {
        reserve_more(1);
        return put(K::code, a, b, K::forward(val_[a], val_[b]));
    }
    template <class K>
    index push(index a) {
        return push<K>(a, a);  // unary ops point arg1 at arg0: always a valid read
    }

    // Reverse sweep from root: non-leaf adjoints at or below root are reset first,
    // the root gets `seed`, and leaf adjoints accumulate. Zero adjoints are skipped,
    // so 0 * inf never leaks NaN into a branch whose gradient is zero.
    void backward(index root, double seed = 1.0);

    // Host references (live Python objects) per node. When the topmost node loses its
    // last reference, every unreferenced node on top is dropped at once: nodes only point
    // downwards, so nothing left on the tape can point at them. Garbage below a
    // referenced node is left to compaction. Both are amortised O(1) per node.
    void retain(index i) { ++live_[i]; }
    void release(index i) {
        if (--live_[i] == 0 && i + 1 == size_) drop_unreferenced_top();
    }
    // Drop unreferenced nodes on top now (after an append whose host object failed).
    void trim() { drop_unreferenced_top(); }

    op op_at(index i) const { return op_[i]; }
    // The arrays themselves, for loops over many nodes (compile).
    const op* op_data() const { return op_.get(); }
    const index* arg0_data() const { return arg0_.get(); }
    const index* arg1_data() const { return arg1_.get(); }
    const double* val_data() const { return val_.get(); }
    index arg0(index i) const { return arg0_[i]; }
    index arg1(index i) const { return arg1_[i]; }
    double& val(index i) { return val_[i]; }
    double val(index i) const { return val_[i]; }
    double adj(index i) const { return adj_[i]; }
    // A number naming node i for the rest of its life: unlike the index, it survives
    // compaction, and no other node of this tape ever gets it. Assigned on first request
    // and kept in a side table, so the nodes nobody asks about cost no memory for it.
    std::uint64_t uid(index i);
    void set_adj(index i, double g) {
        adj_[i] = g;
        if (i >= dirty_) dirty_ = i + 1;
    }

    static constexpr std::size_t bytes_per_node =
        sizeof(op) + 2 * sizeof(index) + 2 * sizeof(double) + sizeof(std::uint32_t);

private:
    index put(op o, index a, index b, double v) {
        const index i = size_++;
        op_[i] = o;
        arg0_[i] = a;
        arg1_[i] = b;
        val_[i] = v;
        adj_[i] = 0.0;
        live_[i] = 0;
        return i;
    }
    void make_room(index n);
    void grow(index n);
    void compact();
    void drop_unreferenced_top();

    index size_ = 0;
    index cap_ = 0;
    index room_ = 0;         // min(cap_, next_compact_): appends below it take no branch
    index next_compact_ = 0; // size at which the next compaction is considered
    relocator* relocator_ = nullptr;
    // Non-leaf adjoints at indices >= dirty_ are known to be zero: backward() only has to
    // reset the ones below. In a training loop each new graph starts clean, so the reset
    // covers at most the parameters.
    index dirty_ = 0;
    std::uint64_t max_;
    std::unique_ptr<op[]> op_;
    std::unique_ptr<index[]> arg0_, arg1_;
    std::unique_ptr<double[]> val_, adj_;
    std::unique_ptr<std::uint32_t[]> live_;
    std::unordered_map<index, std::uint64_t> uids_;
    std::uint64_t next_uid_ = 0;
};

}  // namespace tapegrad
