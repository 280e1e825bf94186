#include "tapegrad/tape.hpp"

#include "tapegrad/sweep.hpp"

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad {

tape::tape(std::uint64_t max_nodes) : max_(std::min(max_nodes, hard_max_nodes)) {}

void tape::resize_columns(index cap) {
    const bool shrink = cap < cap_;
    try {
        op_.resize(size_, cap);
        arg0_.resize(size_, cap);
        arg1_.resize(size_, cap);
        val_.resize(size_, cap);
        adj_.resize(size_, cap);
        book_.resize(size_, cap);
    } catch (const std::bad_alloc&) {
        // Growing: the columns done so far are merely larger than cap_, and the tape is as
        // it was. Shrinking: the ones not done are larger than cap, which is harmless.
        if (!shrink) throw;
    }
    cap_ = cap;
}

bool tape::swap_memory(tape& other) noexcept {
    if (size_ != 0 || other.size_ != 0 || other.cap_ > max_ || cap_ > other.max_) return false;
    op_.swap(other.op_);
    arg0_.swap(other.arg0_);
    arg1_.swap(other.arg1_);
    val_.swap(other.val_);
    adj_.swap(other.adj_);
    book_.swap(other.book_);
    std::swap(cap_, other.cap_);
    // Appends stop in make_room first: it checks max_nodes (which stays with each tape)
    // and shrinks a capacity far above what is used.
    room_ = other.room_ = 0;
    garbage_ = other.garbage_ = 0;
    dirty_ = other.dirty_ = 0;
    return true;
}

void tape::make_room(index n) {
    if (relocator_ && compaction_due()) compact();
    const std::uint64_t need = std::uint64_t(size_) + n;
    if (need > max_)
        throw std::length_error("tapegrad: tape is full (" + std::to_string(max_) +
                                " nodes max); drop references to Vars you no longer need");
    // Double when full; when three quarters are unused, give memory back down to twice
    // what is used. Either way the copy (none for mapped columns) is paid for by as many
    // appends or drops.
    if (need > cap_)
        resize_columns(index(std::min<std::uint64_t>(
            std::max<std::uint64_t>({need, 2 * std::uint64_t(cap_), 1024}), max_)));
    else if (cap_ > kept_nodes && need < cap_ / 4)
        resize_columns(index(std::max<std::uint64_t>(2 * need, kept_nodes)));
    room_ = cap_;
}

void tape::compact() {
    std::vector<index> to(size_);
    index j = 0, dirty = 0;
    for (index i = 0; i < size_; ++i) {
        if (i == dirty_) dirty = j;
        if (book_[i].refs == 0) {
            to[i] = none;
            continue;
        }
        // A live node's arguments and its lowest op are live: they are moved already.
        to[i] = j;
        const bool leaf = is_leaf(op_[i]);
        op_[j] = op_[i];
        arg0_[j] = leaf ? 0 : to[arg0_[i]];  // leaves point at 0, a valid read
        arg1_[j] = leaf ? 0 : to[arg1_[i]];
        val_[j] = val_[i];
        adj_[j] = adj_[i];
        book_[j].refs = book_[i].refs;
        book_[j].low = book_[i].low == none ? none : to[book_[i].low];
        ++j;
    }
    dirty_ = dirty_ >= size_ ? j : dirty;
    if (!uids_.empty()) {
        std::unordered_map<index, std::uint64_t> moved;
        for (const auto& [i, u] : uids_)
            if (to[i] != none) moved.emplace(to[i], u);
        uids_.swap(moved);
    }
    garbage_ = 0;
    size_ = j;
    relocator_->relocate(to.data());
}

void tape::collect(index i) {
    // i is garbage, and so is each argument whose last reference it held. A garbage node's
    // low is free, and links the list of those whose arguments are still to be released.
    book_[i].low = none;
    for (index head = i; head != none;) {
        const index j = head;
        head = book_[j].low;
        ++garbage_;
        if (is_leaf(op_[j])) continue;
        for (const index arg : {arg0_[j], arg1_[j]})
            if (--book_[arg].refs == 0) {
                book_[arg].low = head;
                head = arg;
            }
    }
    if (i + 1 == size_)
        drop_garbage_on_top();
    else if (compaction_due())
        room_ = size_;  // compact at the next append
}

void tape::trim() {
    if (size_ > 0 && book_[size_ - 1].refs == 0) collect(size_ - 1);
}

void tape::drop_garbage_on_top() {
    while (size_ > 0 && book_[size_ - 1].refs == 0) {
        --size_;
        --garbage_;
        if (!uids_.empty()) uids_.erase(size_);
    }
    if (dirty_ > size_) dirty_ = size_;
    // Mostly empty: the pages above twice the top (and kept_nodes) go back to the OS now,
    // the pointers staying valid, and the next append shrinks the capacity.
    if (cap_ > kept_nodes && size_ < cap_ / 4) {
        const index keep = std::max(kept_nodes, 2 * size_);
        op_.discard_above(keep);
        arg0_.discard_above(keep);
        arg1_.discard_above(keep);
        val_.discard_above(keep);
        adj_.discard_above(keep);
        book_.discard_above(keep);
        room_ = size_;
    }
}

std::uint64_t tape::uid(index i) {
    const auto [it, fresh] = uids_.try_emplace(i, next_uid_);
    if (fresh) ++next_uid_;
    return it->second;
}

void tape::backward(index root, double seed) {
    const index lo = std::min(book_[root].low, root);
    for (index i = lo, n = std::min(root + 1, dirty_); i < n; ++i)
        if (!is_leaf(op_[i])) adj_[i] = 0.0;
    dirty_ = std::max(dirty_, root + 1);
    adj_[root] += seed;
    reverse_sweep<consts_by_op, /*Carry=*/true>(op_.get(), arg0_.get(), arg1_.get(), val_.get(),
                                                adj_.get(), lo, root + 1, consts_by_op{op_.get()});
}

std::string tape::check(const std::uint32_t* hosts) const {
    std::vector<std::uint64_t> want(hosts, hosts + size_);
    index garbage = 0;
    for (index i = 0; i < size_; ++i) {
        if (book_[i].refs == 0) {
            ++garbage;
            continue;
        }
        if (is_leaf(op_[i])) {
            if (book_[i].low != none) return "leaf " + std::to_string(i) + " has a sweep start";
            continue;
        }
        ++want[arg0_[i]];
        ++want[arg1_[i]];
        const index low = std::min({i, book_[arg0_[i]].low, book_[arg1_[i]].low});
        if (book_[i].low != low)
            return "node " + std::to_string(i) + ": sweep start " + std::to_string(book_[i].low) +
                   ", expected " + std::to_string(low);
    }
    for (index i = 0; i < size_; ++i)
        if (book_[i].refs != want[i])
            return "node " + std::to_string(i) + ": " + std::to_string(book_[i].refs) +
                   " references counted, " + std::to_string(want[i]) + " held";
    if (garbage != garbage_)
        return std::to_string(garbage_) + " garbage nodes counted, " + std::to_string(garbage) +
               " on the tape";
    if (size_ > 0 && book_[size_ - 1].refs == 0) return "garbage on top of the tape";
    return {};
}

}  // namespace tapegrad
