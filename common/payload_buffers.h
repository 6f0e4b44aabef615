// Where the bytes of a Payload live.
//
// Large buffers (64 KiB and up: the 1 MiB writes of a streaming client) come
// from anonymous mappings; page multiples below that (4-60 KiB: most
// clients' small writes) from the heap, page-aligned. A freed one of either
// kind is kept in a small cache per size class for the next write of that
// size. When the cache is full, a freed buffer evicts buffers of other
// sizes: a workload that changed its write size does not find the cache full
// of the old size and allocate every buffer anew. Other sizes come from
// malloc.
//
// Why not malloc for the large ones: a payload is allocated by the thread
// that reads the NBD request and freed by whichever thread gRPC finishes
// sending it on. glibc keeps what each arena freed (TuneAllocator keeps it
// from trimming, which page-faulted every reuse), and each NBD connection's
// reader may use either arena; so over time both arenas grew to hold a whole
// in-flight window. The primary's peak RSS at 1 MiB writes was 88 MiB in
// some runs and 146-153 MiB in others, over the 64 MiB + window bound
// (docs/PERFORMANCE.md, round 7). Here the large buffers in use are bounded by
// the window, and the cache by kCachedBytesMax.
//
// Why cache the 4-60 KiB ones: glibc serves them from its bins, not its
// per-thread caches (those stop at 1 KiB), so every 4 KiB write took the arena
// lock twice and often consolidated free chunks on the way (malloc was 9% of
// the primary at 4 KiB QD 32, a third of it these buffers; round 15).
//
// Thread-safe. Pooled buffers are page-aligned, the others as malloc's.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blockrepl::payload_buffers {

// Free buffers kept for reuse, in bytes (mapped and touched: resident).
inline constexpr size_t kCachedBytesMax = 16 << 20;
// Buffers this large and up are mapped; smaller page multiples come from the
// heap (both cached); other sizes are malloc'd.
inline constexpr size_t kMappedMin = 64 << 10;

// `size` (> 0) bytes, contents unspecified. Throws std::bad_alloc when out
// of memory, as operator new would.
char* Allocate(size_t size);
// Gives back a buffer Allocate(size) returned, with the same `size`.
void Free(char* bytes, size_t size);
// Gives back every cached buffer (unmapped or freed): called once the agent is idle
// (IdleMemoryTrimmer), so a burst's buffers do not stay resident.
void ReleaseCached();

struct Stats {
  uint64_t pooled_bytes = 0;  // pooled buffers (mapped or heap) in use and cached
  uint64_t cached_bytes = 0;
  uint64_t misses_total = 0;  // cache misses: new buffers mapped or allocated
};
Stats GetStats();

}  // namespace blockrepl::payload_buffers
