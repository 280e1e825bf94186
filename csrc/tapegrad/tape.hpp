// The flat tape: a struct-of-arrays arena of nodes appended in topological order.
// Pure C++ (no Python headers), so it can be built and tested on its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>

#include "tapegrad/column.hpp"
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
    // Indices are uint32; the largest value is kept free so a count never wraps, and it
    // marks "no op below" in a node's book.
    static constexpr std::uint64_t hard_max_nodes = std::numeric_limits<index>::max();
    static constexpr index none = std::numeric_limits<index>::max();

    explicit tape(std::uint64_t max_nodes = hard_max_nodes);
    tape(const tape&) = delete;
    tape& operator=(const tape&) = delete;

    index size() const { return size_; }
    index capacity() const { return cap_; }
    std::uint64_t max_nodes() const { return max_; }
    std::size_t bytes() const { return std::size_t(cap_) * bytes_per_node; }
    // The part of bytes() in physical memory (pages given back are not).
    std::size_t resident_bytes() const {
        return op_.resident_bytes() + arg0_.resident_bytes() + arg1_.resident_bytes() +
               val_.resident_bytes() + adj_.resident_bytes() + book_.resident_bytes();
    }
    // Nodes on the tape that nothing alive reaches any more (removed by the next
    // compaction, or at once when they are on top).
    index garbage() const { return garbage_; }

    // Make room for n more nodes, so the next n appends cannot fail (nor move nodes).
    // Throws std::length_error when the tape would pass max_nodes(), std::bad_alloc when
    // memory runs out; the tape is unchanged then.
    // This is the one place where nodes move: once the garbage outweighs twice the live
    // nodes (and 4096), it is removed and the live nodes slide down in order (so the
    // order stays topological), and the relocator is told the new index of every node.
    // Read node indices only after this call.
    void reserve_more(index n) {
        if (room_ - size_ < n) make_room(n);
    }
    void set_relocator(relocator* r) { relocator_ = r; }

    // Trade arrays with another tape, when neither holds a node: a new tape can start on
    // the memory of one that is done, whose pages (at most about kept_nodes of them, see
    // drop_garbage_on_top) are faulted in already. Returns false, changing nothing, if
    // either tape has nodes or the other's capacity is above one's max_nodes.
    bool swap_memory(tape& other) noexcept;

    index push_leaf(op kind, double value) {
        reserve_more(1);
        return put(kind, 0, 0, value, none);
    }

    // Append op K over existing nodes a (and b), computing its value now.
    template <class K>
    index push(index a, index b) {
        reserve_more(1);
        ++book_[a].refs;
        ++book_[b].refs;
        const index low = book_[a].low < book_[b].low ? book_[a].low : book_[b].low;
        return put(K::code, a, b, K::forward(val_[a], val_[b]), low < size_ ? low : size_);
    }
    template <class K>
    index push(index a) {
        return push<K>(a, a);  // unary ops point arg1 at arg0: always a valid read
    }

    // Reverse sweep from root over [sweep_start(root), root]: the non-leaf adjoints there
    // are reset first, the root gets `seed`, and leaf adjoints accumulate. Zero adjoints
    // are skipped, so 0 * inf never leaks NaN into a branch whose gradient is zero.
    void backward(index root, double seed = 1.0);
    // The lowest op the sweep from root must visit: the lowest op in root's graph (none
    // for a leaf). Nodes below it are leaves or not in the graph, so garbage and older
    // graphs under a new one cost the sweep nothing.
    index sweep_start(index root) const { return book_[root].low; }

    // References per node: one per live host object (Python Var) and one per use as an
    // argument. A node whose count falls to 0 is garbage, and so, in turn, are the
    // arguments it held alone. Garbage on top of the tape is dropped at once (nodes only
    // point downwards); garbage below a live node waits for compaction. Both are
    // amortised O(1) per node.
    void retain(index i) { ++book_[i].refs; }
    void release(index i) {
        if (--book_[i].refs == 0) collect(i);
    }
    // Drop the new node on top that no host object took (after its Var failed to allocate).
    void trim();

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
    index refs(index i) const { return book_[i].refs; }
    // A number naming node i for the rest of its life: unlike the index, it survives
    // compaction, and no other node of this tape ever gets it. Assigned on first request
    // and kept in a side table, so the nodes nobody asks about cost no memory for it.
    std::uint64_t uid(index i);
    void set_adj(index i, double g) {
        adj_[i] = g;
        if (i >= dirty_) dirty_ = i + 1;
    }

    // Recounts every node's references from the arguments and the host counts given
    // (hosts[i]: live host objects of node i) and compares them, with the garbage count
    // and sweep starts: an empty string, or what is inconsistent. For tests.
    std::string check(const std::uint32_t* hosts) const;

    // Memory the tape keeps however empty it gets (2^18 nodes, about 8.7 MB): the working
    // set of a loop that builds and drops graphs of up to that size stays mapped, so it
    // pays no page faults on each rebuild; beyond it, a mostly empty tape gives pages back.
    static constexpr index kept_nodes = index(1) << 18;

    static constexpr std::size_t bytes_per_node =
        sizeof(op) + 2 * sizeof(index) + 2 * sizeof(double) + 2 * sizeof(index);

private:
    index put(op o, index a, index b, double v, index low) {
        const index i = size_++;
        op_[i] = o;
        arg0_[i] = a;
        arg1_[i] = b;
        val_[i] = v;
        adj_[i] = 0.0;
        book_[i].refs = 0;
        book_[i].low = low;
        return i;
    }
    void make_room(index n);
    void resize_columns(index cap);
    void compact();
    void collect(index i);
    void drop_garbage_on_top();
    bool compaction_due() const { return garbage_ >= 4096 && garbage_ / 2 >= size_ - garbage_; }

    index size_ = 0;
    index cap_ = 0;
    // Appends below room_ take no branch. It is cap_, or size_ when the next append must
    // stop in make_room first (garbage to compact, or memory to give back).
    index room_ = 0;
    index garbage_ = 0;
    relocator* relocator_ = nullptr;
    // Non-leaf adjoints at indices >= dirty_ are known to be zero: backward() only has to
    // reset the ones below. In a training loop each new graph starts clean, so the reset
    // covers at most the parameters.
    index dirty_ = 0;
    std::uint64_t max_;
    // Every column but the op codes may go onto huge pages (column.hpp says why).
    column<op> op_;
    column<index> arg0_{true}, arg1_{true};
    column<double> val_{true}, adj_{true};
    // A node's bookkeeping, one 8-byte column rather than two 4-byte ones: both are written
    // together, and each huge-page column holds up to 2 MiB not yet used.
    // refs: see retain(). low: the lowest op in the node's graph (the node itself for an op
    // whose arguments are leaves; none for a leaf); while garbage is collected, a free
    // node's low links it into the list of nodes still to visit.
    struct book {
        index refs;
        index low;
    };
    static_assert(sizeof(book) == 2 * sizeof(index), "bytes_per_node counts a book as two indices");
    column<book> book_{true};
    std::unordered_map<index, std::uint64_t> uids_;
    std::uint64_t next_uid_ = 0;
};

}  // namespace tapegrad
