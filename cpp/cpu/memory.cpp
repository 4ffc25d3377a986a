// Heap memory for the kernels' scratch and for the arrays the bindings return (compiled once,
// baseline flags).
//
// Large blocks are recycled. Memory fresh from the system costs a page fault and a zeroed page
// per 4 KiB on first touch, and the kernels touch each byte of their outputs once: MSE value +
// gradient of 10^7 float64 took 24 ms into a fresh NumPy array against 8 ms into the caller's
// (float32: 6.9 against 3.8 ms; CoxPH at 10^6: 21 against 13 ms), and glibc returns blocks above
// 32 MiB to the system at every free. A freed block therefore waits in a small cache (most
// recent first, up to a byte limit) for the next request it fits, which is what a loop of calls
// of one size asks for: boosting rounds, training steps, benchmarks.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>  // madvise
#endif
#if !defined(_WIN32)
#include <pthread.h>  // pthread_atfork
#endif

#include "fastloss/alloc.hpp"

namespace fastloss {

namespace {
// std::bad_alloc whose message names the request (pybind11 raises it as MemoryError).
struct AllocError : std::bad_alloc {
  std::string message;
  explicit AllocError(std::string m) : message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

[[noreturn]] void refuse(std::size_t bytes) {
  throw AllocError("fastloss could not allocate " + std::to_string(bytes) + " bytes of memory");
}

constexpr std::size_t kHuge = std::size_t(1) << 21;  // a transparent huge page
constexpr std::size_t kHeader = 64;                   // before each block: its Header, padded
constexpr int kSlots = 32;                            // cached blocks at most

// Sanitizer builds recycle nothing: a cached block would hide a use after free. A module may set
// its own default (the CUDA module keeps none: fl.set_buffer_cache governs the main module's).
#if defined(FASTLOSS_BLOCK_CACHE_LIMIT)
constexpr std::size_t kDefaultLimit = FASTLOSS_BLOCK_CACHE_LIMIT;
#elif defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kDefaultLimit = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr std::size_t kDefaultLimit = 0;
#else
constexpr std::size_t kDefaultLimit = std::size_t(512) << 20;
#endif
#else
constexpr std::size_t kDefaultLimit = std::size_t(512) << 20;
#endif

struct Header {
  std::size_t capacity;  // usable bytes from the block's start
  void* raw;             // what std::malloc returned
};

Header header_of(const void* block) {
  Header h;
  std::memcpy(&h, static_cast<const char*>(block) - kHeader, sizeof h);
  return h;
}

// From the system: 64-byte aligned, and 2 MiB aligned (transparent huge pages asked for on
// Linux) from 2 MiB on.
void* fresh_block(std::size_t capacity) {
  const std::size_t align = capacity >= kHuge ? kHuge : 64;
  if (capacity > static_cast<std::size_t>(-1) - align - kHeader) refuse(capacity);
  char* raw = static_cast<char*>(std::malloc(capacity + align + kHeader));
  if (!raw) refuse(capacity);
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(raw) + kHeader;
  char* block = raw + kHeader + (align - first % align) % align;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHuge) madvise(block, capacity, MADV_HUGEPAGE);
#endif
  const Header h{capacity, raw};
  std::memcpy(block - kHeader, &h, sizeof h);
  return block;
}

void release(void* block) noexcept {
  if (block) std::free(header_of(block).raw);
}

// The cache: slots[0..count) with the most recently freed first. A spin lock (held for a scan of
// at most kSlots entries, never across a system call), taken around fork() so that a child never
// inherits it held.
struct Cache {
  struct Entry {
    void* block;
    std::size_t capacity;
  };
  Entry slot[kSlots];
  int count = 0;
  std::size_t held = 0;
  std::size_t limit = kDefaultLimit;
  std::atomic_flag busy = ATOMIC_FLAG_INIT;
  void lock() noexcept {
    while (busy.test_and_set(std::memory_order_acquire)) {
    }
  }
  void unlock() noexcept { busy.clear(std::memory_order_release); }
  // Drops the least recently freed blocks until `held` is within `limit`; they are returned
  // in `out` (freed by the caller, outside the lock). Returns how many.
  int trim(void** out) noexcept {
    int k = 0;
    while (count > 0 && held > limit) {
      --count;
      held -= slot[count].capacity;
      out[k++] = slot[count].block;
    }
    return k;
  }
};

Cache& cache() {
  static Cache c;
#if !defined(_WIN32)  // Windows has no fork
  static const bool registered = pthread_atfork([] { cache().lock(); }, [] { cache().unlock(); },
                                                [] { cache().unlock(); }) == 0;
  (void)registered;
#endif
  return c;
}
}  // namespace

void* checked_malloc(index_t count, std::size_t size) {
  const std::size_t n = count > 0 ? static_cast<std::size_t>(count) : 1;
  void* p = nullptr;
  if (size == 0 || n <= static_cast<std::size_t>(-1) / size) p = std::malloc(n * (size ? size : 1));
  if (!p)
    throw AllocError("fastloss could not allocate working memory for " + std::to_string(n) +
                     " elements of " + std::to_string(size) + " bytes");
  return p;
}

void* take_block(std::size_t bytes) {
  const std::size_t want = bytes ? bytes : 1;
  if (want >= kCachedBlockMin) {
    // The smallest cached block that holds `want`, and not more than twice it (a large block
    // stays for a large request).
    Cache& c = cache();
    c.lock();
    int best = -1;
    for (int i = 0; i < c.count; ++i) {
      const std::size_t cap = c.slot[i].capacity;
      if (cap >= want && cap / 2 <= want && (best < 0 || cap < c.slot[best].capacity)) best = i;
    }
    void* block = nullptr;
    if (best >= 0) {
      block = c.slot[best].block;
      c.held -= c.slot[best].capacity;
      --c.count;
      for (int i = best; i < c.count; ++i) c.slot[i] = c.slot[i + 1];
    }
    c.unlock();
    if (block) return block;
  }
  // Whole 4 KiB pages, or whole huge pages from 2 MiB on, so that a later request of a slightly
  // different size still fits.
  const std::size_t page = want >= kHuge ? kHuge : 4096;
  if (want > static_cast<std::size_t>(-1) - page) refuse(want);
  return fresh_block((want + page - 1) / page * page);
}

void give_block(void* block) noexcept {
  if (!block) return;
  const std::size_t capacity = header_of(block).capacity;
  Cache& c = cache();
  void* drop[kSlots + 1];
  int dropped = 0;
  c.lock();
  if (capacity >= kCachedBlockMin && capacity <= c.limit) {
    if (c.count == kSlots) {  // full: the least recently freed goes
      --c.count;
      c.held -= c.slot[c.count].capacity;
      drop[dropped++] = c.slot[c.count].block;
    }
    for (int i = c.count; i > 0; --i) c.slot[i] = c.slot[i - 1];
    c.slot[0] = {block, capacity};
    ++c.count;
    c.held += capacity;
    dropped += c.trim(drop + dropped);
  } else {
    drop[dropped++] = block;
  }
  c.unlock();
  for (int i = 0; i < dropped; ++i) release(drop[i]);
}

std::size_t swap_block_cache_limit(std::size_t bytes) {
  Cache& c = cache();
  void* drop[kSlots];
  c.lock();
  const std::size_t previous = c.limit;
  c.limit = bytes;
  const int dropped = c.trim(drop);
  c.unlock();
  for (int i = 0; i < dropped; ++i) release(drop[i]);
  return previous;
}

BlockCacheInfo block_cache_info() {
  Cache& c = cache();
  c.lock();
  const BlockCacheInfo info{c.limit, c.held, c.count};
  c.unlock();
  return info;
}

}  // namespace fastloss
