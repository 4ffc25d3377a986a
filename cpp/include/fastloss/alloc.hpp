// Checked heap memory for kernel scratch: a failed or overflowing request throws std::bad_alloc
// naming the size (the binding turns it into MemoryError), never a null pointer that a kernel
// would write through.
#pragma once

#include <cstddef>
#include <cstdlib>

#include "fastloss/config.hpp"

namespace fastloss {
// Defined once, in cpp/cpu/parallel.cpp: std::malloc(count * size) (at least one byte), or throws
// std::bad_alloc when the product overflows or the system refuses. Free with std::free.
void* checked_malloc(index_t count, std::size_t size);
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
