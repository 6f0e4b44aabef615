#include "common/payload_buffers.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace blockrepl::payload_buffers {
namespace {

constexpr size_t kPageBytes = 4096;
size_t MappedBytesFor(size_t size) { return (size + kPageBytes - 1) / kPageBytes * kPageBytes; }

// Which buffers the cache keeps: the mapped ones, and the page multiples
// below them (the 4-60 KiB writes of most clients), which come from the heap
// page-aligned. Others go straight to malloc and free.
bool Pooled(size_t size) {
  return size >= kMappedMin || (size >= kPageBytes && size % kPageBytes == 0);
}
// The cache's size class of a pooled buffer: what was mapped or allocated.
size_t PoolKey(size_t size) { return size >= kMappedMin ? MappedBytesFor(size) : size; }
void ReleaseBuffer(char* buffer, size_t key) {
  if (key >= kMappedMin) {
    munmap(buffer, key);
  } else {
    std::free(buffer);
  }
}

// Free pooled buffers by size class (a client's writes mostly share one).
class Cache {
 public:
  char* Take(size_t key) {
    absl::MutexLock lock(&mu_);
    auto it = free_.find(key);
    if (it == free_.end() || it->second.empty()) {
      stats_.misses_total++;
      stats_.pooled_bytes += key;
      return nullptr;
    }
    char* buffer = it->second.back();
    it->second.pop_back();
    stats_.cached_bytes -= key;
    return buffer;
  }
  // A buffer Take counted as a miss could not be allocated.
  void NotAllocated(size_t key) {
    absl::MutexLock lock(&mu_);
    stats_.pooled_bytes -= key;
  }
  // Caches `buffer`, making room by evicting buffers of other sizes (the
  // workload moved on from them); the evicted ones go to `release`. False
  // when it cannot fit: the caller releases it.
  bool Keep(char* buffer, size_t key, std::vector<std::pair<char*, size_t>>* release) {
    absl::MutexLock lock(&mu_);
    while (stats_.cached_bytes + key > kCachedBytesMax) {
      auto other = std::find_if(free_.begin(), free_.end(), [&](const auto& entry) {
        return entry.first != key && !entry.second.empty();
      });
      if (other == free_.end()) {
        stats_.pooled_bytes -= key;
        return false;
      }
      release->emplace_back(other->second.back(), other->first);
      other->second.pop_back();
      stats_.cached_bytes -= other->first;
      stats_.pooled_bytes -= other->first;
    }
    free_[key].push_back(buffer);
    stats_.cached_bytes += key;
    return true;
  }
  std::vector<std::pair<char*, size_t>> TakeAll() {
    std::vector<std::pair<char*, size_t>> all;
    absl::MutexLock lock(&mu_);
    for (auto& [key, buffers] : free_) {
      for (char* buffer : buffers) all.emplace_back(buffer, key);
    }
    free_.clear();
    stats_.pooled_bytes -= stats_.cached_bytes;
    stats_.cached_bytes = 0;
    return all;
  }
  Stats stats() {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<size_t, std::vector<char*>> free_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

Cache& TheCache() {
  static Cache* cache = new Cache();  // never destroyed: buffers may outlive main
  return *cache;
}

}  // namespace

char* Allocate(size_t size) {
  if (!Pooled(size)) {
    void* bytes = std::malloc(size);
    if (bytes == nullptr) throw std::bad_alloc();
    return static_cast<char*>(bytes);
  }
  const size_t key = PoolKey(size);
  if (char* cached = TheCache().Take(key)) return cached;
  if (key < kMappedMin) {
    void* bytes = std::aligned_alloc(kPageBytes, key);
    if (bytes == nullptr) {
      TheCache().NotAllocated(key);
      throw std::bad_alloc();
    }
    return static_cast<char*>(bytes);
  }
  // Populated at once: one call instead of a page fault per 4 KiB.
  void* mapping = mmap(nullptr, key, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mapping == MAP_FAILED) {
    TheCache().NotAllocated(key);
    throw std::bad_alloc();
  }
  return static_cast<char*>(mapping);
}

void Free(char* bytes, size_t size) {
  if (bytes == nullptr) return;
  if (!Pooled(size)) return std::free(bytes);
  const size_t key = PoolKey(size);
  std::vector<std::pair<char*, size_t>> evicted;  // released outside the cache's lock
  if (!TheCache().Keep(bytes, key, &evicted)) ReleaseBuffer(bytes, key);
  for (auto [buffer, buffer_key] : evicted) ReleaseBuffer(buffer, buffer_key);
}

void ReleaseCached() {
  for (auto [buffer, key] : TheCache().TakeAll()) ReleaseBuffer(buffer, key);
}

Stats GetStats() { return TheCache().stats(); }

}  // namespace blockrepl::payload_buffers
