#include "common/idle_memory_trimmer.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BLOCKREPL_SANITIZED_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BLOCKREPL_SANITIZED_MALLOC 1
#endif

namespace blockrepl {
namespace {

void Spin(absl::Duration how_long) {
  const absl::Time end = absl::Now() + how_long;
  volatile uint64_t sink = 0;
  while (absl::Now() < end) sink = sink + 1;
}

bool WaitForTrims(const IdleMemoryTrimmer& trimmer, uint64_t n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (trimmer.trims() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  return trimmer.trims() >= n;
}

TEST(IdleMemoryTrimmerTest, TrimsOnceAfterEachBusySpellNeverWhileBusyOrIdleSinceStart) {
  IdleMemoryTrimmer trimmer(absl::Milliseconds(50), 0.25);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(trimmer.trims(), 0u) << "a process idle since the start has nothing to give back";

  Spin(absl::Milliseconds(400));  // this thread uses a whole core
  const uint64_t while_busy = trimmer.trims();
  ASSERT_TRUE(WaitForTrims(trimmer, 1));
  EXPECT_EQ(while_busy, 0u) << "trimmed under load";
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(trimmer.trims(), 1u) << "an idle process is trimmed once, not every period";

  Spin(absl::Milliseconds(200));
  EXPECT_TRUE(WaitForTrims(trimmer, 2)) << "the next busy spell is followed by a trim again";
}

#ifndef BLOCKREPL_SANITIZED_MALLOC
// Resident set size in bytes (statm's second field, in pages).
uint64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<uint64_t>(resident) * sysconf(_SC_PAGESIZE);
}

TEST(IdleMemoryTrimmerTest, GivesFragmentedFreeMemoryBackOnceQuiet) {
  // 128 MiB in small blocks, touched; keep one block in 64: the rest is free
  // but stays resident, in pieces between the kept blocks.
  constexpr size_t kBlock = 512, kBlocks = (128u << 20) / kBlock;
  std::vector<std::unique_ptr<char[]>> blocks(kBlocks);
  for (auto& b : blocks) {
    b.reset(new char[kBlock]);
    b[0] = b[kBlock - 1] = 1;
  }
  for (size_t i = 0; i < kBlocks; ++i) {
    if (i % 64 != 0) blocks[i].reset();
  }
  const uint64_t fragmented = ResidentBytes();

  IdleMemoryTrimmer trimmer(absl::Milliseconds(50), 0.25);
  Spin(absl::Milliseconds(100));  // a busy spell, then quiet
  ASSERT_TRUE(WaitForTrims(trimmer, 1));
  const uint64_t trimmed = ResidentBytes();
  EXPECT_LT(trimmed + (64u << 20), fragmented)
      << "resident " << (fragmented >> 20) << " MiB before the trim, " << (trimmed >> 20)
      << " MiB after";
}
#endif

}  // namespace
}  // namespace blockrepl
