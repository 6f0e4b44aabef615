// xxh3_speed: how fast XXH3 hashes on this machine, through libxxhash's plain entry point (the
// baseline x86-64 build, SSE2) and through its run-time dispatch (AVX2/AVX-512), the one
// common/xxh3.h selects. Prints GB/s and ns per call for 4 KiB and 1 MiB inputs, hashing a
// buffer that is in the cache (the same one again and again) and buffers that are not (a 256 MiB
// arena walked in order, the way a payload arrives from a socket). docs/PERFORMANCE.md round 9.
//
//   cmake --build build --target xxh3_speed && build/bin/xxh3_speed
//
// Not a test: it only prints.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

namespace {
using HashFn = XXH64_hash_t (*)(const void*, size_t);
// The plain export, taken before <xxh_x86dispatch.h> #defines XXH3_64bits to the dispatcher.
constexpr HashFn kPlainXxh3 = &XXH3_64bits;
}  // namespace

#include "common/xxh3.h"  // what the agents call: XXH3_64bits is the dispatcher on x86-64

namespace {

constexpr HashFn kDispatchedXxh3 = &XXH3_64bits;

// Hashes `total` bytes in pieces of `piece`: `cached` hashes the same piece again and again,
// otherwise the pieces walk `arena` in order. Returns seconds.
double TimeHashing(HashFn fn, const std::vector<uint8_t>& arena, size_t piece, size_t total,
                   bool cached, uint64_t* sink) {
  const auto start = std::chrono::steady_clock::now();
  size_t offset = 0;
  for (size_t done = 0; done < total; done += piece) {
    *sink += fn(arena.data() + offset, piece);
    if (!cached) offset = (offset + piece + piece <= arena.size()) ? offset + piece : 0;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  std::vector<uint8_t> arena(256u << 20);
  for (size_t i = 0; i < arena.size(); ++i) arena[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  uint64_t sink = 0;
  const size_t total = 4ull << 30;
  std::printf("%-10s %-7s %-10s %10s %12s\n", "kernel", "piece", "memory", "GB/s", "ns/call");
  for (const size_t piece : {size_t{4096}, size_t{1} << 20}) {
    for (const bool cached : {true, false}) {
      for (const auto& [name, fn] : {std::pair<const char*, HashFn>{"plain", kPlainXxh3},
                                     std::pair<const char*, HashFn>{"dispatch", kDispatchedXxh3}}) {
        TimeHashing(fn, arena, piece, 64u << 20, cached, &sink);  // warm up
        const double seconds = TimeHashing(fn, arena, piece, total, cached, &sink);
        std::printf("%-10s %-7s %-10s %10.1f %12.0f\n", name, piece == 4096 ? "4 KiB" : "1 MiB",
                    cached ? "cached" : "streaming", total / seconds / 1e9,
                    seconds / (total / piece) * 1e9);
      }
    }
  }
  std::printf("(checksum of all hashes: %016llx)\n", static_cast<unsigned long long>(sink));
  return 0;
}
