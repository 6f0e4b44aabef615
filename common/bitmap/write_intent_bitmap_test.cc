#include "common/bitmap/write_intent_bitmap.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

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

// A store whose page writes wait until the test lets them through.
class GatedStore : public BitmapStore {
 public:
  absl::Status WritePages(const std::vector<BitmapPage>&) override {
    absl::MutexLock lock(&mu_);
    ++entered_;
    mu_.Await(absl::Condition(+[](bool* open) { return *open; }, &open_));
    return absl::OkStatus();
  }
  std::string Description() const override { return "gated"; }
  void Open(bool open) {
    absl::MutexLock lock(&mu_);
    open_ = open;
  }
  bool AwaitEntered(int n) {
    absl::MutexLock lock(&mu_);
    auto entered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&entered), absl::Seconds(5));
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

// A StartWrite on a thread of its own, so a test can see whether it returns
// while a flush hangs (polled: a regression fails the test, not hangs it).
class BackgroundWrite {
 public:
  BackgroundWrite(WriteIntentBitmap& bitmap, ChunkRange range)
      : thread_([this, &bitmap, range] {
          EXPECT_TRUE(bitmap.StartWrite(range).ok());
          done_ = true;
        }) {}
  ~BackgroundWrite() { thread_.join(); }
  bool done() const { return done_; }
  // Waits up to 2 s for StartWrite to return.
  bool DoneSoon() const {
    for (int i = 0; i < 200 && !done_; ++i) absl::SleepFor(absl::Milliseconds(10));
    return done_;
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Chunks 0 and 1 share a bitmap page. While the page is being flushed for
// chunk 1's new bit, a write to chunk 0 (bit durable) goes on at once; a
// second write to chunk 1 waits for the flush.
TEST(WriteIntentBitmapTest, AWriteToADurableBitDoesNotWaitForAnotherBitsFlush) {
  auto owned = std::make_unique<GatedStore>();
  GatedStore* store = owned.get();
  WriteIntentBitmap bitmap(64ull << 20, kChunk, std::move(owned));
  ASSERT_TRUE(bitmap.StartWrite(ChunkRange{0, 1}).ok());  // chunk 0's bit durable
  store->Open(false);
  {
    BackgroundWrite first(bitmap, ChunkRange{1, 2});
    ASSERT_TRUE(store->AwaitEntered(2));  // chunk 1's flush is under way
    BackgroundWrite second(bitmap, ChunkRange{1, 2});
    BackgroundWrite zero(bitmap, ChunkRange{0, 1});
    EXPECT_TRUE(zero.DoneSoon());  // returns while the flush hangs
    EXPECT_FALSE(first.done());
    EXPECT_FALSE(second.done());  // chunk 1's bit is not durable yet
    store->Open(true);
  }  // all three return once the flush is through
  // After the flush chunk 1 is durable too: no wait even while the page
  // is flushed again for chunk 2.
  store->Open(false);
  {
    BackgroundWrite third(bitmap, ChunkRange{2, 3});
    ASSERT_TRUE(store->AwaitEntered(3));
    BackgroundWrite one(bitmap, ChunkRange{1, 2});
    EXPECT_TRUE(one.DoneSoon());
    store->Open(true);
  }
  // Writes started: chunk 0 twice, chunk 1 three times, chunk 2 once.
  for (auto [chunk, writes] : {std::pair<uint64_t, int>{0, 2}, {1, 3}, {2, 1}}) {
    for (int i = 0; i < writes; ++i) bitmap.EndWrite(ChunkRange{chunk, chunk + 1}, true);
  }
  EXPECT_EQ(bitmap.counts().dirty_chunks, 0u);
}

// After a failed flush the bit stays set in memory only; the clearing
// passes leave it until a flush has written it, so that flush cannot end up
// vouching for a later setting of the same bit.
TEST(WriteIntentBitmapTest, ABitWhoseFlushFailedIsNotClearedUntilWritten) {
  Fixture f;
  f.store->fail = true;
  ChunkRange r{4, 5};
  EXPECT_FALSE(f.bitmap->StartWrite(r).ok());
  f.bitmap->EndWrite(r, true);
  EXPECT_FALSE(f.bitmap->ClearingPass().ok());  // its flush fails too
  f.store->fail = false;
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());  // writes the page: now durable
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);  // not cleared on the way
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 0u);  // then lazily, as any other
}

// Set-ahead of 4 chunks: the first write to chunk 5 sets chunks 4-7 in its
// one flush; a write to chunk 6 then needs none. Only chunk 5 is dirty, and
// the neighbours' bits clear lazily as any clean chunk's.
TEST(WriteIntentBitmapTest, SetAheadSetsTheWholeGroupInOneFlush) {
  Fixture f;
  f.bitmap->SetSetAhead(4 * kChunk);
  ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{5, 6}).ok());
  EXPECT_EQ(f.store->writes, 1);
  EXPECT_EQ(f.bitmap->counts().bits_set, 4u);
  EXPECT_EQ(f.bitmap->counts().dirty_chunks, 1u);
  ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{6, 7}).ok());
  EXPECT_EQ(f.store->writes, 1);  // its bit was set ahead and is durable
  f.bitmap->EndWrite(ChunkRange{5, 6}, true);
  f.bitmap->EndWrite(ChunkRange{6, 7}, false);  // chunk 6 missed the secondary
  EXPECT_EQ(f.bitmap->counts().needs_sync_chunks, 1u);  // only it: resync stays per chunk
  EXPECT_EQ(f.bitmap->NextNeedsSync(0), 6u);
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);  // chunk 6's, until it is resynced
}

// No set-ahead past the volume's end, and none for a write whose bits were
// durable already (it flushes nothing).
TEST(WriteIntentBitmapTest, SetAheadStopsAtTheEndAndOnlyRidesAFlush) {
  Fixture small(5 * kChunk);
  small.bitmap->SetSetAhead(4 * kChunk);
  ASSERT_TRUE(small.bitmap->StartWrite(ChunkRange{4, 5}).ok());
  EXPECT_EQ(small.bitmap->counts().bits_set, 1u);  // the group 4-7 holds only chunk 4
  small.bitmap->EndWrite(ChunkRange{4, 5}, true);

  Fixture f;
  f.bitmap->SetSetAhead(4 * kChunk);
  ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{1, 2}).ok());  // sets 0-3, stays in flight
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  ASSERT_TRUE(f.bitmap->ClearingPass().ok());
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);  // the idle neighbours went
  const int writes = f.store->writes;
  ASSERT_TRUE(f.bitmap->StartWrite(ChunkRange{1, 2}).ok());  // durable: no flush
  EXPECT_EQ(f.store->writes, writes);
  EXPECT_EQ(f.bitmap->counts().bits_set, 1u);  // and no neighbours set again
  f.bitmap->EndWrite(ChunkRange{1, 2}, true);
  f.bitmap->EndWrite(ChunkRange{1, 2}, true);
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
