// A tape per thread: where Var(x) records its leaf, created on first use and freed once
// its thread has exited and its last Var is gone.
#include <atomic>
#include <mutex>
#include <vector>

#include "bindings/var_internal.hpp"

namespace tapegrad::bind {
namespace {

std::uint64_t default_max_nodes = tape::hard_max_nodes;
std::uint64_t next_serial = 1;

// A thread's tape reference is dropped at thread exit, where the GIL may not be held,
// so the exiting thread only queues it; the next Var() on any thread releases it.
std::mutex orphans_mutex;
std::vector<shared_tape*>* orphans = new std::vector<shared_tape*>;  // never destroyed
std::atomic<bool> have_orphans{false};

struct thread_tape {
    shared_tape* t = nullptr;
    ~thread_tape() {
        if (!t) return;
        std::lock_guard<std::mutex> lock(orphans_mutex);
        orphans->push_back(t);
        have_orphans.store(true, std::memory_order_release);
    }
};
thread_local thread_tape this_thread;

// The memory of a freed tape, for the next thread's new tape: a program that starts
// threads (a pool, Dask's workers, a server) then builds on pages already faulted in,
// as the thread before it did, instead of paying the kernel to zero fresh ones. A tape
// with no nodes left keeps at most about tape::kept_nodes of its pages (8.7 MB), so that
// is all the spare holds. The larger of two freed tapes' memories is kept.
tape* const spare = new tape;  // never destroyed

void release_orphans() {
    std::vector<shared_tape*> done;
    {
        std::lock_guard<std::mutex> lock(orphans_mutex);
        done.swap(*orphans);
        have_orphans.store(false, std::memory_order_relaxed);
    }
    for (shared_tape* t : done) unref(t);
}

}  // namespace

void unref(shared_tape* t) {
    if (--t->refs != 0) return;
    if (t->nodes.capacity() > spare->capacity()) spare->swap_memory(t->nodes);
    delete t;
}

shared_tape::shared_tape(std::uint64_t max_nodes) : nodes(max_nodes), serial(next_serial++) {
    nodes.set_relocator(this);
}

void shared_tape::relocate(const std::uint32_t* new_index) {
    for (VarObject* v : vars) v->idx = new_index[v->idx];
}

shared_tape& current_tape() {
    if (have_orphans.load(std::memory_order_acquire)) release_orphans();
    if (!this_thread.t) {
        this_thread.t = new shared_tape(default_max_nodes);
        this_thread.t->refs = 1;  // the thread's own reference
        this_thread.t->nodes.swap_memory(*spare);
    }
    return *this_thread.t;
}

std::uint64_t set_default_max_nodes(std::uint64_t n) {
    const std::uint64_t old = default_max_nodes;
    default_max_nodes = n;
    return old;
}

}  // namespace tapegrad::bind
