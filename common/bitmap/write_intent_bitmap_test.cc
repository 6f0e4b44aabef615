#include "common/bitmap/write_intent_bitmap.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/completion_batch.h"

namespace blockrepl {
namespace {

constexpr uint32_t kChunk = 64 << 10;

// Counts page writes; can be told to fail.
class CountingStore : public BitmapStore {
 public:
  absl::Status WritePages(const std::vector<BitmapPage>& pages) override {
    ++writes;
    pages_written += pages.size();
    if (fail) return absl::ResourceExhaustedError("bitmap: no space");
    last_pages = pages;
    return absl::OkStatus();
  }
  std::string Description() const override { return "counting"; }
  int writes = 0;
  size_t pages_written = 0;
  bool fail = false;
  std::vector<BitmapPage> last_pages;
};

struct Fixture {
  explicit Fixture(uint64_t size = 64ull << 20) {
    auto s = std::make_unique<CountingStore>();
    store = s.get();
    bitmap = std::make_unique<WriteIntentBitmap>(size, kChunk, std::move(s));
  }
  CountingStore* store;
  std::unique_ptr<WriteIntentBitmap> bitmap;
};

TEST(WriteIntentBitmapTest, ChunksForCoversPartialChunks) {
  Fixture f;
  ChunkRange r = f.bitmap->ChunksFor(kChunk - 1, 2);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.end, 2u);
  EXPECT_TRUE(f.bitmap->ChunksFor(100, 0).empty());
  EXPECT_EQ(f.bitmap->ChunksFor(3 * kChunk, kChunk).count(), 1u);
}

TEST(WriteIntentBitmapTest, LastChunkMayBeShort) {
  Fixture f(kChunk * 3 + 4096);
  EXPECT_EQ(f.bitmap->chunk_count(), 4u);
  EXPECT_EQ(f.bitmap->ChunkLength(3), 4096u);
  EXPECT_EQ(f.bitmap->ChunkLength(2), kChunk);
}

TEST(WriteIntentBitmapTest, StartWritePersistsNewBitsOnceOnly) {
  Fixture f;
  ChunkRange r{5, 7};
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  EXPECT_EQ(f.store->writes, 1);
  // Bit already set and durable: no bitmap I/O for the second writer.
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  EXPECT_EQ(f.store->writes, 1);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 2u);
  EXPECT_EQ(f.bitmap->counts().bits_set, 2u);
  ASSERT_EQ(f.store->last_pages.size(), 1u);
  EXPECT_EQ(f.store->last_pages[0].words[0], (uint64_t{1} << 5) | (uint64_t{1} << 6));
}

TEST(WriteIntentBitmapTest, ReplicatedEndWriteLeavesBitForLazyClearing) {
  Fixture f;
  ChunkRange r{1, 2};
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  f.bitmap->EndWrite(r, /*replicated=*/true);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 0u);
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);
  // First pass only notes the chunk as idle; the second clears it.
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 0u);
}

TEST(WriteIntentBitmapTest, WriteBetweenPassesKeepsTheBit) {
  Fixture f;
  ChunkRange r{1, 2};
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  f.bitmap->EndWrite(r, true);
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  f.bitmap->EndWrite(r, true);
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);
}

TEST(WriteIntentBitmapTest, UnreplicatedWriteNeedsSyncAndIsNeverCleared) {
  Fixture f;
  ChunkRange r{9, 10};
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  f.bitmap->EndWrite(r, /*replicated=*/false);
  EXPECT_EQ(f.bitmap->counts().needs_sync_chunks, 1u);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 1u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);
  EXPECT_EQ(f.bitmap->NextNeedsSync(0), 9u);
}

TEST(WriteIntentBitmapTest, ResyncTakesChunkUntilDurable) {
  Fixture f;
  ASSERT_TRUE(f.bitmap->MarkNeedsSync(ChunkRange{3, 5}).ok());
  EXPECT_EQ(f.bitmap->NextNeedsSync(0), 3u);
  EXPECT_EQ(f.bitmap->NextNeedsSync(4), 4u);
  ASSERT_TRUE(f.bitmap->TakeForResync(3));
  EXPECT_FALSE(f.bitmap->TakeForResync(3));  // already taken
  EXPECT_EQ(f.bitmap->counts().needs_sync_chunks, 1u);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 2u);  // 3 in flight, 4 needs sync
  f.bitmap->EndWrite(ChunkRange{3, 4}, true);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 1u);
  // A resync lost with the connection goes back to needs-sync.
  ASSERT_TRUE(f.bitmap->TakeForResync(4));
  f.bitmap->EndWrite(ChunkRange{4, 5}, false);
  EXPECT_EQ(f.bitmap->NextNeedsSync(0), 4u);
}

TEST(WriteIntentBitmapTest, NextNeedsSyncSkipsCleanWordsAcrossPages) {
  Fixture f(8ull << 30);  // 131072 chunks: 5 pages of 32640
  ASSERT_TRUE(f.bitmap->MarkNeedsSync(ChunkRange{100000, 100001}).ok());
  EXPECT_EQ(f.bitmap->NextNeedsSync(0), 100000u);
  EXPECT_FALSE(f.bitmap->NextNeedsSync(100001).has_value());
  EXPECT_EQ(f.bitmap->counts().dirty_pages, 1u);
  EXPECT_EQ(f.bitmap->counts().total_pages, 5u);
}

TEST(WriteIntentBitmapTest, FailedBitmapWriteFailsTheWriterAndIsRetried) {
  Fixture f;
  f.store->fail = true;
  ChunkRange r{2, 3};
  EXPECT_EQ(f.bitmap->StartWrite(r).code(), absl::StatusCode::kResourceExhausted);
  f.bitmap->EndWrite(r, true);
  // The bit is set in memory but not durable: the next writer must not
  // take the no-I/O fast path.
  f.store->fail = false;
  int before = f.store->writes;
  ASSERT_TRUE(f.bitmap->StartWrite(r).ok());
  EXPECT_EQ(f.store->writes, before + 1);
}

TEST(WriteIntentBitmapTest, ConcurrentWritersShareFlushes) {
  Fixture f(1ull << 30);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t c = t; c < 4096; c += 8) {
        ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{c, c + 1}).ok());
        f.bitmap->EndWrite(ChunkRange{c, c + 1}, true);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(f.bitmap->counts().bits_set, 4096u);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 0u);
  EXPECT_LE(f.store->writes, 4096);
}

// A worker's held replies go before it writes bitmap pages (the write may
// wait for the disk), and not at all when the bits are already durable.
TEST(WriteIntentBitmapTest, HeldRepliesGoBeforeBitmapIO) {
  Fixture f;
  int writes_when_sent = -1;
  {
    CompletionBatch batch;
    CompletionBatch::Defer([&] { writes_when_sent = f.store->writes; });
    ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{3, 4}).ok());
    EXPECT_EQ(writes_when_sent, 0);  // sent, before the page write
    EXPECT_EQ(f.store->writes, 1);
    CompletionBatch::Defer([&] { writes_when_sent = 100; });
    ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{3, 4}).ok());  // durable already: no I/O
    EXPECT_EQ(writes_when_sent, 0);  // still held
  }
  EXPECT_EQ(writes_when_sent, 100);
}

TEST(WriteIntentBitmapTest, ClearAllClearableLeavesOnlyDirtyBits) {
  Fixture f;
  ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{0, 4}).ok());
  f.bitmap->EndWrite(ChunkRange{0, 2}, true);
  ASSERT_TRUE(f.bitmap->ClearAllClearable().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 2u);
}

}  // namespace
}  // namespace blockrepl
