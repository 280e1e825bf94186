// Storage for one array of the tape (a "column" of its struct of arrays).
//
// Small columns live on the heap. Past map_min_bytes a column gets an anonymous mapping of
// its own, because then (where the OS allows):
// - growing it moves page tables instead of copying (mremap), so a doubling costs no
//   first touch of a second copy;
// - the pages above what the tape uses can be given back to the OS while the pointer stays
//   valid (madvise), so a dropped graph returns its memory without moving anything.
// No transparent huge pages: measured on a new tape's build they saved nothing (the cost
// of fresh memory here is the kernel zeroing it, which huge pages pay as well, plus a copy
// onto 2 MiB boundaries), and each column's frontier would hold up to 2 MB more.
// Without mremap (macOS, Windows) a mapping grows by a new one and a copy. On Windows the
// mapping is VirtualAlloc's, and pages go back by MEM_RESET and VirtualUnlock. Elsewhere the
// same calls fall back to the heap (copying on growth, keeping the pages).
#pragma once
#include <cstddef>

namespace tapegrad {

class column_memory {
public:
#if defined(__linux__)
    // With mremap a mapping grows without a copy, so a column leaves the heap at one page:
    // growing on the heap copies each doubling into freshly faulted memory, which made a
    // new tape touch about twice the pages it uses.
    static constexpr std::size_t map_min_bytes = std::size_t(1) << 12;
#else
    static constexpr std::size_t map_min_bytes = std::size_t(1) << 20;
#endif

    column_memory() = default;
    column_memory(const column_memory&) = delete;
    column_memory& operator=(const column_memory&) = delete;
    ~column_memory();

    // Room for `bytes`, keeping the first `used` bytes (used <= both sizes). May move the
    // data; throws std::bad_alloc and leaves the column as it was when memory runs out.
    void resize(std::size_t used, std::size_t bytes);
    // Give the pages wholly above byte `used` back to the OS; their contents are lost
    // (read back as zeros or garbage), the pointer and size stay. No-op on the heap.
    void discard_above(std::size_t used) noexcept;
    // Trade memory with another column: each keeps the other's pointer, size and pages.
    void swap(column_memory& other) noexcept;

    // Bytes of this column in physical memory: all of it on the heap; the resident pages
    // of a mapping (mincore; on Windows QueryWorkingSetEx), which discard_above gives back.
    std::size_t resident_bytes() const;

    void* data() const { return p_; }
    std::size_t bytes() const { return bytes_; }
    bool mapped() const { return mapped_; }

private:
    void* p_ = nullptr;
    std::size_t bytes_ = 0;
    bool mapped_ = false;
};

template <class T>
class column {
public:
    T* get() const { return static_cast<T*>(mem_.data()); }
    T& operator[](std::size_t i) const { return get()[i]; }
    void resize(std::size_t used, std::size_t n) { mem_.resize(used * sizeof(T), n * sizeof(T)); }
    void discard_above(std::size_t used) noexcept { mem_.discard_above(used * sizeof(T)); }
    bool mapped() const { return mem_.mapped(); }
    std::size_t resident_bytes() const { return mem_.resident_bytes(); }
    void swap(column& other) noexcept { mem_.swap(other.mem_); }

private:
    column_memory mem_;
};

}  // namespace tapegrad
