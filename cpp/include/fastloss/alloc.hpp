// Checked heap memory for kernel scratch: a failed or overflowing request throws std::bad_alloc
// naming the size (the binding turns it into MemoryError), never a null pointer that a kernel
// would write through.
#pragma once

#include <cstddef>
#include <cstdlib>

#include "fastloss/config.hpp"

namespace fastloss {
// Defined once, in cpp/cpu/memory.cpp: std::malloc(count * size) (at least one byte), or throws
// std::bad_alloc when the product overflows or the system refuses. Free with std::free.
void* checked_malloc(index_t count, std::size_t size);

// Recycled blocks (cpp/cpu/memory.cpp), for what a call touches once per element: its scratch
// and the arrays it returns. take_block gives at least `bytes` bytes, 64-byte aligned (2 MiB
// aligned from 2 MiB on), or throws std::bad_alloc; give_block takes it back (null: nothing) and
// keeps it for a later request when it has at least kCachedBlockMin bytes and the cache's limit
// allows (the least recently freed blocks go first). Both are thread-safe.
inline constexpr std::size_t kCachedBlockMin = std::size_t(1) << 20;
void* take_block(std::size_t bytes);
void give_block(void* block) noexcept;
// Sets the most bytes the cache keeps (0: none; blocks beyond it are freed at once) and returns
// the previous limit.
std::size_t swap_block_cache_limit(std::size_t bytes);
struct BlockCacheInfo {
  std::size_t limit, held;  // bytes
  int blocks;
};
BlockCacheInfo block_cache_info();
}  // namespace fastloss

FL_NAMESPACE_BEGIN

// n elements of T from checked_malloc (free with std::free).
template <class T>
T* alloc_array(index_t n) {
  return static_cast<T*>(checked_malloc(n, sizeof(T)));
}

// A heap buffer of n elements, freed on scope exit (also when a kernel is interrupted).
template <class T>
struct Buffer {
  T* p;
  explicit Buffer(index_t n) : p(alloc_array<T>(n)) {}
  ~Buffer() { std::free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

FL_NAMESPACE_END
