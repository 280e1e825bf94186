// Storage for one array of the tape (a "column" of its struct of arrays).
//
// Small columns live on the heap. Past map_min_bytes a column gets an anonymous mapping of
// its own, because then (where the OS allows):
// - growing it moves page tables instead of copying (mremap), so a doubling costs no
//   first touch of a second copy;
// - the pages above what the tape uses can be given back to the OS while the pointer stays
//   valid (madvise), so a dropped graph returns its memory without moving anything.
// On Linux a column made with huge_pages, once it reaches huge_min_bytes, sits on 2 MiB
// boundaries with transparent huge pages asked for, so the kernel faults it in 2 MiB at a
// time. The price is RSS: the huge page a column is filling holds up to 2 MiB not yet
// used. The tape asks for them on every column but the op codes, and keeps its two
// 4-byte bookkeeping fields in one 8-byte column, so that five columns rather than six
// hold a partly filled huge page. Measured (RSS holding W1's 1.17e6 nodes; the eager chain
// of bench/compare_calls.py on the first tape of a process against a tape with room, CPU
// time, medians):
//   no huge pages                                 33.0 B/node   1.25-1.27x
//   the two 8-byte columns                        35.0 B/node   1.19-1.26x
//   all but the op codes, bookkeeping separate    40.5 B/node   1.17x (W1's target is 40)
//   all but the op codes, bookkeeping merged      38.7 B/node   1.17x (1.35x before it;
//                                                               interleaved, 11 processes)
// Up to 10 MiB more per tape (2 MiB a column).
// Without mremap (macOS, Windows) a mapping grows by a new one and a copy. On Windows the
// mapping is VirtualAlloc's, and pages go back by MEM_RESET and VirtualUnlock. Elsewhere the
// same calls fall back to the heap (copying on growth, keeping the pages).
#pragma once
#include <cstddef>

namespace tapegrad {

// A mapping of `bytes` starting on a huge_page_bytes boundary, with transparent huge
// pages asked for (only whole 2 MiB regions can get them): Linux only, nullptr elsewhere.
// Where THP is "never" the pages are ordinary ones. Throws std::bad_alloc; free with
// munmap.
constexpr std::size_t huge_page_bytes = std::size_t(2) << 20;
void* map_huge_pages(std::size_t bytes);

class column_memory {
public:
#if defined(__linux__)
    // With mremap a mapping grows without a copy, so a column leaves the heap at one page:
    // growing on the heap copies each doubling into freshly faulted memory, which made a
    // new tape touch about twice the pages it uses.
    static constexpr std::size_t map_min_bytes = std::size_t(1) << 12;
    // From here on a column is on huge pages, its size a multiple of 2 MiB; the bytes used
    // so far are copied once into the new mapping (where they were, as 4 KiB pages, they
    // could not become huge). Measured: from 64 KiB to 256 KiB a new tape builds equally
    // fast; from 512 KiB or 2 MiB slower (more 4 KiB faults before the switch).
    static constexpr std::size_t huge_min_bytes = std::size_t(256) << 10;
#else
    static constexpr std::size_t map_min_bytes = std::size_t(1) << 20;
#endif

    // huge_pages: whether the column may go onto huge pages (past huge_min_bytes).
    explicit column_memory(bool huge_pages = false) : huge_ok_(huge_pages) {}
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
    bool huge_ = false;
    bool huge_ok_;
};

template <class T>
class column {
public:
    explicit column(bool huge_pages = false) : mem_(huge_pages) {}
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
