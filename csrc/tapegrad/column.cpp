#include "tapegrad/column.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "tapegrad/os_memory.hpp"

#if defined(__unix__) || defined(__APPLE__)
#define TG_HAVE_MMAP 1
#else
#define TG_HAVE_MMAP 0
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MREMAP_MAYMOVE)
#define TG_HAVE_THP 1
#include <cstdint>
#else
#define TG_HAVE_THP 0
#endif
#ifdef _WIN32
#include <psapi.h>  // after windows.h
#define TG_HAVE_VIRTUAL_ALLOC 1
#else
#define TG_HAVE_VIRTUAL_ALLOC 0
#endif

namespace tapegrad {
namespace {

#if TG_HAVE_MMAP
std::size_t page_bytes() {
    static const std::size_t p = std::size_t(sysconf(_SC_PAGESIZE));
    return p;
}

void* map_bytes(std::size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
}
#elif TG_HAVE_VIRTUAL_ALLOC
std::size_t page_bytes() {
    static const std::size_t p = [] {
        SYSTEM_INFO s;
        GetSystemInfo(&s);
        return std::size_t(s.dwPageSize);
    }();
    return p;
}

// Reserved and committed at once (Windows charges the commit now; the pages come on first
// touch, zeroed, as with mmap).
void* map_bytes(std::size_t bytes) {
    void* p = VirtualAlloc(nullptr, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (!p) throw std::bad_alloc();
    return p;
}
#endif

#if TG_HAVE_MMAP || TG_HAVE_VIRTUAL_ALLOC
std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
#endif

void free_bytes(void* p, [[maybe_unused]] std::size_t bytes, bool mapped) {
#if TG_HAVE_MMAP
    if (mapped) {
        munmap(p, bytes);
        return;
    }
#elif TG_HAVE_VIRTUAL_ALLOC
    if (mapped) {
        VirtualFree(p, 0, MEM_RELEASE);
        return;
    }
#endif
    std::free(p);
}

}  // namespace

void* map_huge_pages([[maybe_unused]] std::size_t bytes) {
#if TG_HAVE_THP
    // Map 2 MiB more than asked, then cut the ends off at the boundaries.
    void* p = mmap(nullptr, bytes + huge_page_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t start = (at + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
    if (start > at) munmap(p, start - at);
    if (start - at < huge_page_bytes)
        munmap(reinterpret_cast<void*>(start + bytes), huge_page_bytes - (start - at));
    madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);  // a hint: may say no
    return reinterpret_cast<void*>(start);
#else
    return nullptr;
#endif
}

column_memory::~column_memory() { free_bytes(p_, bytes_, mapped_); }

void column_memory::resize(std::size_t used, std::size_t bytes) {
    void* q = nullptr;
    bool map = false, huge = false;
#if TG_HAVE_MMAP || TG_HAVE_VIRTUAL_ALLOC
    if (bytes >= map_min_bytes) {
        bytes = round_up(bytes, page_bytes());
#if TG_HAVE_THP
        huge = huge_ || (huge_ok_ && bytes >= huge_min_bytes);  // once huge, stays so
        if (huge) bytes = round_up(bytes, huge_page_bytes);
#endif
        if (bytes == bytes_ && mapped_) return;
#if defined(__linux__) && defined(MREMAP_MAYMOVE)
        if (mapped_ && huge == huge_) {  // the kernel moves the pages: no copy, no first touch
            void* to = nullptr;
            if (huge && bytes > bytes_) {  // onto 2 MiB boundaries, so huge pages move whole
                to = map_huge_pages(bytes);
                q = mremap(p_, bytes_, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, to);
            } else {
                q = mremap(p_, bytes_, bytes, MREMAP_MAYMOVE);  // (shrinking stays in place)
            }
            if (q == MAP_FAILED) {
                if (to) munmap(to, bytes);
                throw std::bad_alloc();
            }
            p_ = q;
            bytes_ = bytes;
            return;
        }
#endif
        q = huge ? map_huge_pages(bytes) : map_bytes(bytes);
        map = true;
    }
#endif
    if (!q) {
        q = std::malloc(bytes ? bytes : 1);
        if (!q) throw std::bad_alloc();
    }
    if (used) std::memcpy(q, p_, used);
    free_bytes(p_, bytes_, mapped_);
    p_ = q;
    bytes_ = bytes;
    mapped_ = map;
    huge_ = huge;
}

void column_memory::swap(column_memory& other) noexcept {
    std::swap(p_, other.p_);
    std::swap(bytes_, other.bytes_);
    std::swap(mapped_, other.mapped_);
    std::swap(huge_, other.huge_);
}

std::size_t column_memory::resident_bytes() const {
#if TG_HAVE_MMAP
    if (mapped_) {
        const std::size_t page = page_bytes(), pages = (bytes_ + page - 1) / page;
        std::vector<unsigned char> in(pages);
        if (mincore(p_, bytes_, reinterpret_cast<decltype(&in[0])>(in.data())) != 0) return bytes_;
        std::size_t n = 0;
        for (unsigned char c : in) n += c & 1;
        return n * page;
    }
#elif TG_HAVE_VIRTUAL_ALLOC
    if (mapped_) {  // the pages in this process's working set
        const std::size_t page = page_bytes(), pages = (bytes_ + page - 1) / page;
        std::vector<PSAPI_WORKING_SET_EX_INFORMATION> in(pages);
        for (std::size_t k = 0; k < pages; ++k)
            in[k].VirtualAddress = static_cast<char*>(p_) + k * page;
        if (!QueryWorkingSetEx(GetCurrentProcess(), in.data(), DWORD(pages * sizeof(in[0]))))
            return bytes_;
        std::size_t n = 0;
        for (const auto& i : in) n += i.VirtualAttributes.Valid;
        return n * page;
    }
#endif
    return bytes_;
}

void column_memory::discard_above([[maybe_unused]] std::size_t used) noexcept {
#if TG_HAVE_MMAP
    if (!mapped_) return;
    const std::size_t start = round_up(used, page_bytes());
    if (start < bytes_) madvise(static_cast<char*>(p_) + start, bytes_ - start, MADV_DONTNEED);
#elif TG_HAVE_VIRTUAL_ALLOC
    if (!mapped_) return;
    const std::size_t start = round_up(used, page_bytes());
    if (start >= bytes_) return;
    // MEM_RESET: the contents may go, never to the page file; the pages stay committed.
    // VirtualUnlock on pages that are not locked takes them out of the working set now
    // (and reports ERROR_NOT_LOCKED): MADV_DONTNEED's effect, in two documented steps.
    char* const from = static_cast<char*>(p_) + start;
    VirtualAlloc(from, bytes_ - start, MEM_RESET, PAGE_READWRITE);
    VirtualUnlock(from, bytes_ - start);
#endif
}

}  // namespace tapegrad
