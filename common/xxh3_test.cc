#include "common/xxh3.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace blockrepl {
namespace {

// Checksums cross the wire and live on disk (bitmap pages), so the run-time
// kernel common/xxh3.h selects must give the portable kernel's values: a
// primary on an AVX-512 host and a secondary on an SSE2 one must agree.
#if defined(__x86_64__)
uint64_t PortableXxh3(const void* data, size_t length) {
#undef XXH3_64bits
  return XXH3_64bits(data, length);  // the library's baseline (SSE2) entry point
}

TEST(Xxh3Test, DispatchedKernelMatchesThePortableOne) {
  std::vector<uint8_t> bytes((1 << 20) + 7);
  std::mt19937_64 random(42);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(random());
  // Lengths on both sides of XXH3's internal thresholds (16, 128, 240 bytes,
  // a 1 KiB stripe block) and the payload sizes the agents hash.
  for (size_t length : {size_t{0}, size_t{1}, size_t{16}, size_t{17}, size_t{128}, size_t{129},
                        size_t{240}, size_t{241}, size_t{1024}, size_t{4096}, size_t{65536},
                        size_t{1} << 20, bytes.size()}) {
    EXPECT_EQ(XXH3_64bits_dispatch(bytes.data(), length), PortableXxh3(bytes.data(), length))
        << length << " bytes";
  }
}

TEST(Xxh3Test, DispatchedStreamingMatchesOneShot) {
  std::vector<uint8_t> bytes(3 * 4096 + 5, 0x5a);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update_dispatch(&state, bytes.data(), 4096);
  XXH3_64bits_update_dispatch(&state, bytes.data() + 4096, bytes.size() - 4096);
  EXPECT_EQ(XXH3_64bits_digest(&state), PortableXxh3(bytes.data(), bytes.size()));
}
#endif

}  // namespace
}  // namespace blockrepl
