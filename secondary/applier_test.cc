#include "secondary/applier.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/file_block_device.h"
#include "common/mem_block_device.h"
#include "common/test_file_size_limit.h"
#include "common/test_temp_dir.h"
#include "common/xxh3.h"
#include "secondary/direct_write_queue.h"

namespace blockrepl {
namespace {

using replication::Op;

Op MakeOp(uint64_t seq, Op::Kind kind, uint64_t offset, uint64_t length, std::string data = "") {
  Op op;
  op.set_seq(seq);
  op.set_kind(kind);
  op.set_offset(offset);
  op.set_length(length);
  op.set_data(std::move(data));
  return op;
}

class ApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    meta_path_ = dir_.File("meta");
    ReplicaMeta meta;
    meta.volume = "vol";
    meta.size_bytes = kSize;
    applier_ = std::make_unique<Applier>("vol", &store_, meta_path_, meta);
  }
  replication::Hello Hello(const std::string& volume, uint64_t size) {
    replication::Hello h;
    h.set_volume(volume);
    h.set_size_bytes(size);
    h.set_generation("gen-a");
    return h;
  }

  static constexpr uint64_t kSize = 1 << 20;
  MemBlockDevice store_{kSize};
  TempDir dir_;
  std::string meta_path_;
  std::unique_ptr<Applier> applier_;
};

TEST_F(ApplierTest, RefusesOtherVolumeAndSizeNamingBoth) {
  replication::HelloReply r = applier_->HandleHello(Hello("other", kSize), "peer");
  EXPECT_FALSE(r.accepted());
  EXPECT_NE(r.error().find("'other'"), std::string::npos);
  EXPECT_NE(r.error().find("'vol'"), std::string::npos);
  r = applier_->HandleHello(Hello("vol", kSize * 2), "peer");
  EXPECT_FALSE(r.accepted());
  EXPECT_NE(r.error().find(std::to_string(kSize * 2)), std::string::npos);
  EXPECT_NE(r.error().find(std::to_string(kSize)), std::string::npos);
  EXPECT_EQ(store_.Contents(), std::string(kSize, 0));
}

TEST_F(ApplierTest, NewHistoryMakesImageInconsistentUntilResyncDone) {
  replication::HelloReply r = applier_->HandleHello(Hello("vol", kSize), "peer");
  ASSERT_TRUE(r.accepted());
  EXPECT_EQ(r.followed_generation(), "");
  EXPECT_FALSE(applier_->snapshot().consistent);
  EXPECT_FALSE(ReplicaMeta::Load(meta_path_)->consistent);
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::RESYNC, 0, 4, "abcd");
  *batch.add_ops() = MakeOp(2, Op::RESYNC_DONE, 0, 0);
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  EXPECT_EQ(ack.applied_seq(), 2u);
  EXPECT_EQ(ack.durable_seq(), 2u);
  EXPECT_TRUE(applier_->snapshot().consistent);
  auto meta = ReplicaMeta::Load(meta_path_);
  EXPECT_TRUE(meta->consistent);
  EXPECT_EQ(meta->followed_generation, "gen-a");
}

TEST_F(ApplierTest, AppliesInOrderAndAcksDurableAtBarriers) {
  ASSERT_TRUE(applier_->HandleHello(Hello("vol", kSize), "peer").accepted());
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::WRITE, 0, 8, "AAAAAAAA");
  *batch.add_ops() = MakeOp(2, Op::WRITE, 4, 4, "BBBB");
  *batch.add_ops() = MakeOp(3, Op::BARRIER, 0, 0);
  *batch.add_ops() = MakeOp(4, Op::TRIM, 0, 2);
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  EXPECT_EQ(ack.applied_seq(), 4u);
  EXPECT_EQ(ack.durable_seq(), 3u);
  EXPECT_EQ(store_.Contents().substr(0, 8), std::string("\0\0AABBBB", 8));
}

TEST_F(ApplierTest, RejectsMalformedOpsWithoutApplyingThem) {
  ASSERT_TRUE(applier_->HandleHello(Hello("vol", kSize), "peer").accepted());
  replication::Ack ack;
  auto apply_one = [&](Op op) {
    replication::Batch batch;
    *batch.add_ops() = std::move(op);
    return applier_->ApplyBatch(batch, &ack);
  };
  EXPECT_EQ(apply_one(MakeOp(1, Op::WRITE, kSize - 2, 4, "XXXX")).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(apply_one(MakeOp(1, Op::WRITE, ~0ull - 1, 4, "XXXX")).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(apply_one(MakeOp(1, Op::WRITE, 0, 5, "XXXX")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(apply_one(MakeOp(1, Op::TRIM, 0, 5, "XXXX")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(apply_one(MakeOp(1, static_cast<Op::Kind>(99), 0, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  Op corrupted = MakeOp(1, Op::WRITE, 0, 4, "XXXX");
  corrupted.set_data_checksum(XXH3_64bits("XXXY", 4));
  EXPECT_EQ(apply_one(corrupted).code(), absl::StatusCode::kDataLoss);
  Op intact = MakeOp(2, Op::WRITE, 8, 4, "WXYZ");
  intact.set_data_checksum(XXH3_64bits("WXYZ", 4));
  ASSERT_TRUE(apply_one(intact).ok());
  ASSERT_TRUE(apply_one(MakeOp(5, Op::WRITE, 0, 1, "Z")).ok());
  EXPECT_EQ(apply_one(MakeOp(5, Op::WRITE, 0, 1, "Y")).code(),
            absl::StatusCode::kInvalidArgument);  // replayed seq
  EXPECT_EQ(ack.applied_seq(), 5u);
  EXPECT_EQ(store_.Contents(),
            std::string("Z") + std::string(7, 0) + "WXYZ" + std::string(kSize - 12, 0));
}

TEST_F(ApplierTest, AssumeCleanOnFreshReplicaKeepsItConsistent) {
  replication::Hello h = Hello("vol", kSize);
  h.set_assume_clean(true);
  ASSERT_TRUE(applier_->HandleHello(h, "peer").accepted());
  EXPECT_TRUE(applier_->snapshot().consistent);
  EXPECT_EQ(ReplicaMeta::Load(meta_path_)->followed_generation, "gen-a");
}

TEST_F(ApplierTest, BitmapResyncKeepsUndoAndRollsBack) {
  // A replica that already follows gen-a: the primary's resync is a bitmap
  // resync, so the old image is kept in the undo log.
  ReplicaMeta meta;
  meta.volume = "vol";
  meta.size_bytes = kSize;
  meta.followed_generation = "gen-a";
  ASSERT_TRUE(store_.Write(0, std::string(8, 'O'), false).ok());
  auto undo = UndoLog::Open(dir_.File("undo"), kSize);
  ASSERT_TRUE(undo.ok());
  applier_ = std::make_unique<Applier>("vol", &store_, meta_path_, meta, std::move(undo).value());
  ASSERT_TRUE(applier_->HandleHello(Hello("vol", kSize), "peer").accepted());
  EXPECT_TRUE(applier_->snapshot().consistent);
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::RESYNC, 0, 8, "NNNNNNNN");
  *batch.add_ops() = MakeOp(2, Op::WRITE, 70000, 3, "abc");
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  EXPECT_FALSE(applier_->snapshot().consistent);
  EXPECT_TRUE(applier_->snapshot().undo_available);
  // The primary is lost here.
  ASSERT_TRUE(applier_->RollBackInterruptedResync().ok());
  EXPECT_EQ(store_.Contents(), std::string(8, 'O') + std::string(kSize - 8, 0));
  auto saved = ReplicaMeta::Load(meta_path_);
  EXPECT_TRUE(saved->consistent);
  EXPECT_NE(saved->followed_generation, "gen-a");  // any primary must full-sync it
}

TEST_F(ApplierTest, FullSyncHasNoUndoAndRefusesRollback) {
  ASSERT_TRUE(applier_->HandleHello(Hello("vol", kSize), "peer").accepted());
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::RESYNC, 0, 4, "abcd");
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  absl::Status s = applier_->RollBackInterruptedResync();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("full sync"), std::string::npos);
}

// What the applier's flusher tells the primary between batches.
class ListenerMessages {
 public:
  Applier::Listener Listener() {
    return [this](const replication::SecondaryMessage& m) {
      absl::MutexLock lock(&mu_);
      messages_.push_back(m);
    };
  }
  // Waits up to 10 s for a message `pred` accepts.
  std::optional<replication::SecondaryMessage> WaitFor(
      std::function<bool(const replication::SecondaryMessage&)> pred) {
    absl::MutexLock lock(&mu_);
    std::optional<replication::SecondaryMessage> found;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& m : messages_) {
        if (pred(m)) found = m;
      }
      return found.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(10));
    return found;
  }

 private:
  absl::Mutex mu_;
  std::vector<replication::SecondaryMessage> messages_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ApplierTest, DurabilityOnlyBarrierIsSyncedInTheBackgroundAndReported) {
  ListenerMessages heard;
  applier_->SetListener(heard.Listener());
  ASSERT_TRUE(applier_->HandleHello(Hello("vol", kSize), "peer").accepted());
  const uint64_t flushes_before = store_.flush_count();
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::WRITE, 0, 4, "AAAA");
  Op epoch = MakeOp(2, Op::BARRIER, 0, 0);
  epoch.set_durability_only(true);
  *batch.add_ops() = epoch;
  *batch.add_ops() = MakeOp(3, Op::WRITE, 4, 4, "BBBB");
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  // Applied without waiting for the sync: the batch's ack does not claim it.
  EXPECT_EQ(ack.applied_seq(), 3u);
  EXPECT_EQ(ack.durable_seq(), 0u);
  auto durable = heard.WaitFor([](const replication::SecondaryMessage& m) {
    return m.has_ack() && m.ack().durable_seq() == 2;
  });
  ASSERT_TRUE(durable.has_value());
  EXPECT_EQ(durable->ack().applied_seq(), 3u);
  EXPECT_GT(store_.flush_count(), flushes_before);
  EXPECT_EQ(applier_->snapshot().durable_seq, 2u);
  EXPECT_EQ(store_.Contents().substr(0, 8), "AAAABBBB");
  applier_->SetListener(nullptr);
}

// A store whose flushes fail on command (fsync's EIO).
class FlakyFlushDevice : public MemBlockDevice {
 public:
  using MemBlockDevice::MemBlockDevice;
  absl::Status Flush() override {
    if (fail.load()) return absl::DataLossError("fdatasync: Input/output error");
    return MemBlockDevice::Flush();
  }
  std::atomic<bool> fail{false};
};

TEST(ApplierFlushTest, FailedBackgroundFlushEndsTheStreamAndRefusesLaterBatches) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  constexpr uint64_t kSize = 1 << 20;
  FlakyFlushDevice store(kSize);
  ReplicaMeta meta;
  meta.volume = "vol";
  meta.size_bytes = kSize;
  Applier applier("vol", &store, dir.File("meta"), meta);
  ListenerMessages heard;
  applier.SetListener(heard.Listener());
  replication::Hello hello;
  hello.set_volume("vol");
  hello.set_size_bytes(kSize);
  hello.set_generation("gen-a");
  ASSERT_TRUE(applier.HandleHello(hello, "peer").accepted());

  store.fail = true;
  replication::Batch batch;
  Op write;
  write.set_seq(1);
  write.set_kind(Op::WRITE);
  write.set_length(4);
  write.set_data("AAAA");
  *batch.add_ops() = write;
  Op epoch;
  epoch.set_seq(2);
  epoch.set_kind(Op::BARRIER);
  epoch.set_durability_only(true);
  *batch.add_ops() = epoch;
  replication::Ack ack;
  ASSERT_TRUE(applier.ApplyBatch(batch, &ack).ok());
  auto error = heard.WaitFor(
      [](const replication::SecondaryMessage& m) { return m.has_error(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->error().message().find("background flush up to seq 2"), std::string::npos);
  EXPECT_EQ(applier.snapshot().durable_seq, 0u);
  EXPECT_EQ(applier.snapshot().store_errors_total, 1u);

  // Nothing more lands on this stream: what the flush covered is unknown.
  replication::Batch later;
  write.set_seq(3);
  write.set_data("BBBB");
  *later.add_ops() = write;
  absl::Status refused = applier.ApplyBatch(later, &ack);
  EXPECT_EQ(refused.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store.Contents().substr(0, 4), "AAAA");

  // The next stream starts clean.
  store.fail = false;
  applier.StreamEnded("flush failed");
  ASSERT_TRUE(applier.HandleHello(hello, "peer").accepted());
  EXPECT_TRUE(applier.ApplyBatch(later, &ack).ok());
  EXPECT_EQ(store.Contents().substr(0, 4), "BBBB");
  applier.SetListener(nullptr);
}

TEST(ReplicaMetaTest, CorruptFileIsDataLossNamingTheFile) {
  char path[] = "/tmp/blockrepl-meta-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "garbage\n", 8), 8);
  close(fd);
  auto meta = ReplicaMeta::Load(path);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(meta.status().message()).find(path), std::string::npos);
  unlink(path);
}

// ---- data history (disaster recovery) -------------------------------------------------------

class ApplierHistoryTest : public ApplierTest {
 protected:
  // A replica that followed "g1", then (promoted) wrote on its own: g2 diverged from g1, with
  // chunk 3 of 64 KiB flagged in its own bitmap file.
  void MakeDivergedReplica() {
    BitmapHeader header;
    header.volume_uuid = std::string(32, 'a');
    header.generation = std::string(32, '2');
    header.diverged_from = std::string(32, '1');
    header.volume_size = kSize;
    header.chunk_size = 65536;
    auto file = BitmapFile::Create(dir_.File("own.bm"), header);
    ASSERT_TRUE(file.ok()) << file.status();
    ASSERT_TRUE((*file)->WritePages({BitmapPage{0, [] {
                                                  std::vector<uint64_t> w(kWordsPerPage, 0);
                                                  w[0] = 1u << 3;
                                                  return w;
                                                }()}})
                    .ok());
    file->reset();
    ReplicaMeta meta;
    meta.volume = "vol";
    meta.size_bytes = kSize;
    meta.volume_uuid = header.volume_uuid;
    meta.set_history(header.history());
    auto reopened = BitmapFile::Open(dir_.File("own.bm"));
    ASSERT_TRUE(reopened.ok());
    applier_ = std::make_unique<Applier>("vol", &store_, meta_path_, meta, nullptr,
                                         std::move(reopened).value());
  }
  replication::Hello PrimaryHello(const std::string& current, const std::string& diverged) {
    replication::Hello h = Hello("vol", kSize);
    h.set_generation(current);
    h.set_diverged_from(diverged);
    h.set_volume_uuid(std::string(32, 'a'));
    return h;
  }
};

TEST_F(ApplierHistoryTest, SplitBrainIsRefusedWithoutTouchingAnything) {
  MakeDivergedReplica();
  const std::string before = store_.Contents();
  replication::HelloReply r =
      applier_->HandleHello(PrimaryHello(std::string(32, '3'), std::string(32, '1')), "peer");
  EXPECT_FALSE(r.accepted());
  EXPECT_TRUE(r.split_brain());
  EXPECT_NE(r.error().find("split brain"), std::string::npos);
  EXPECT_TRUE(applier_->snapshot().split_brain);
  EXPECT_EQ(ReplicaMeta::Load(meta_path_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Contents(), before);
}

TEST_F(ApplierHistoryTest, DiscardLocalAcceptsAndReportsOwnWrites) {
  MakeDivergedReplica();
  applier_->SetResolution(DiscardChoice::kSecondary);  // `replctl resolve --discard=local`
  replication::HelloReply r =
      applier_->HandleHello(PrimaryHello(std::string(32, '3'), std::string(32, '1')), "peer");
  ASSERT_TRUE(r.accepted()) << r.error();
  EXPECT_EQ(r.diverged_from(), std::string(32, '1'));
  ASSERT_EQ(r.own_writes_size(), 1);
  EXPECT_EQ(r.own_writes(0).offset(), 3u * 65536);
  EXPECT_EQ(r.own_writes(0).length(), 65536u);
  // It follows the primary now, but is not a state of it until the resync ends.
  auto meta = ReplicaMeta::Load(meta_path_);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->followed_generation, std::string(32, '3'));
  EXPECT_EQ(meta->diverged_from, "");
  EXPECT_FALSE(meta->consistent);
  replication::Batch batch;
  *batch.add_ops() = MakeOp(1, Op::RESYNC, 3 * 65536, 4, "abcd");
  *batch.add_ops() = MakeOp(2, Op::RESYNC_DONE, 0, 0);
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
  EXPECT_TRUE(applier_->snapshot().consistent);
  EXPECT_EQ(applier_->snapshot().own_write_chunks, 0u);
  auto own = BitmapFile::Open(dir_.File("own.bm"), /*read_only=*/true);
  ASSERT_TRUE(own.ok());
  for (uint64_t w : (*own)->loaded_bits()) EXPECT_EQ(w, 0u);
}

TEST_F(ApplierHistoryTest, PromotedReplicaRefusesEveryPrimary) {
  MakeDivergedReplica();
  bool rolled_back = true;
  auto meta = applier_->Promote(false, "127.0.0.1:1", "", &rolled_back);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_FALSE(rolled_back);
  EXPECT_TRUE(meta->promoted);
  replication::HelloReply r =
      applier_->HandleHello(PrimaryHello(std::string(32, '2'), ""), "peer");
  EXPECT_FALSE(r.accepted());
  EXPECT_NE(r.error().find("promoted"), std::string::npos);
}

TEST_F(ApplierHistoryTest, HandoverPromotesWhenTheStreamEnds) {
  MakeDivergedReplica();
  applier_->SetResolution(DiscardChoice::kSecondary);
  ASSERT_TRUE(
      applier_->HandleHello(PrimaryHello(std::string(32, '3'), std::string(32, '1')), "peer")
          .accepted());
  replication::Batch resync;
  *resync.add_ops() = MakeOp(1, Op::RESYNC_DONE, 0, 0);
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(resync, &ack).ok());
  replication::Batch handover;
  *handover.add_ops() = MakeOp(2, Op::HANDOVER, 0, 0);
  // Without an NBD address to serve on, a HANDOVER is refused.
  EXPECT_FALSE(applier_->ApplyBatch(handover, &ack).ok());
  int promotions = 0;
  applier_->SetPromotion("127.0.0.1:10809", "127.0.0.1:10810", [&] { ++promotions; });
  ASSERT_TRUE(applier_->ApplyBatch(handover, &ack).ok());
  EXPECT_EQ(ack.durable_seq(), 2u);
  EXPECT_TRUE(ReplicaMeta::Load(meta_path_)->promoted);
  replication::Batch after;
  *after.add_ops() = MakeOp(3, Op::BARRIER, 0, 0);
  EXPECT_FALSE(applier_->ApplyBatch(after, &ack).ok());  // nothing may follow a HANDOVER
  EXPECT_EQ(promotions, 0);
  applier_->StreamEnded("done");
  EXPECT_EQ(promotions, 1);
}

// An applier on a file store whose aligned writes go through a
// DirectWriteQueue; skipped where the file system or kernel has none.
class ApplierDirectWritesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    auto store = FileBlockDevice::Open(dir_.File("store"), kSize);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    auto direct = DirectWriteQueue::Open(dir_.File("store"),
                                         DirectWriteQueue::Options{.slot_bytes = 64 << 10, .slots = 8});
    if (absl::IsUnimplemented(direct.status())) GTEST_SKIP() << direct.status();
    ASSERT_TRUE(direct.ok()) << direct.status();
    ReplicaMeta meta;
    meta.volume = "vol";
    meta.size_bytes = kSize;
    meta.consistent = true;
    meta.followed_generation = "gen-a";
    applier_ = std::make_unique<Applier>("vol", store_.get(), dir_.File("meta"), meta);
    direct_ = direct->get();
    applier_->UseDirectWrites(std::move(direct).value());
    replication::Hello hello;
    hello.set_volume("vol");
    hello.set_size_bytes(kSize);
    hello.set_generation("gen-a");
    ASSERT_TRUE(applier_->HandleHello(hello, "peer").accepted());
    model_.assign(kSize, '\0');
  }
  // Adds a write (aligned or not) to `batch` and to the model.
  void AddWrite(replication::Batch* batch, uint64_t offset, std::string data) {
    model_.replace(offset, data.size(), data);
    *batch->add_ops() = MakeOp(++seq_, Op::WRITE, offset, data.size(), data);
  }
  void AddOp(replication::Batch* batch, Op::Kind kind, uint64_t offset, uint64_t length) {
    if (kind == Op::TRIM || kind == Op::WRITE_ZEROES) model_.replace(offset, length, length, '\0');
    *batch->add_ops() = MakeOp(++seq_, kind, offset, length, "");
  }
  std::string StoreContents() {
    std::string contents(kSize, '\0');
    EXPECT_TRUE(store_->Read(0, absl::MakeSpan(contents)).ok());
    return contents;
  }

  static constexpr uint64_t kSize = 2 << 20;
  TempDir dir_;
  std::unique_ptr<FileBlockDevice> store_;
  std::unique_ptr<Applier> applier_;
  DirectWriteQueue* direct_ = nullptr;  // owned by applier_; read on this (the applying) thread
  std::string model_;
  uint64_t seq_ = 0;
};

TEST_F(ApplierDirectWritesTest, MixedBatchesLandInOrder) {
  std::mt19937_64 random(11);
  for (int round = 0; round < 20; ++round) {
    replication::Batch batch;
    for (int i = 0; i < 40; ++i) {
      const uint64_t block = random() % (kSize / 4096 - 64);
      const char fill = static_cast<char>('a' + random() % 26);
      switch (random() % 6) {
        case 0:  // unaligned: through the page cache, after the direct ones before it
          AddWrite(&batch, block * 4096 + 512, std::string(5000, fill));
          break;
        case 1:
          AddOp(&batch, random() % 2 ? Op::TRIM : Op::WRITE_ZEROES, block * 4096, 8192);
          break;
        case 2:  // larger than a slot
          AddWrite(&batch, block * 4096, std::string(200 << 10, fill));
          break;
        default:
          AddWrite(&batch, block * 4096, std::string(4096 * (1 + random() % 3), fill));
      }
    }
    if (round % 5 == 4) AddOp(&batch, Op::BARRIER, 0, 0);
    replication::Ack ack;
    ASSERT_TRUE(applier_->ApplyBatch(batch, &ack).ok());
    EXPECT_EQ(ack.applied_seq(), seq_);
    EXPECT_TRUE(direct_->idle()) << "acked 'applied' with writes in flight";
  }
  // Every batch drained before its ack, so the store reads back the model.
  EXPECT_TRUE(StoreContents() == model_);
  Applier::Snapshot snapshot = applier_->snapshot();
  EXPECT_TRUE(snapshot.direct_writes);
  EXPECT_GT(snapshot.direct_writes_total, 400u);
}

TEST_F(ApplierDirectWritesTest, AFailedDirectWriteFailsTheBatchAndAppliesNothingPastTheLastDrain) {
  replication::Batch first;
  AddWrite(&first, 0, std::string(4096, 'a'));
  replication::Ack ack;
  ASSERT_TRUE(applier_->ApplyBatch(first, &ack).ok());
  ASSERT_EQ(ack.applied_seq(), 1u);
  replication::Batch second;
  AddWrite(&second, 4096, std::string(4096, 'b'));
  AddWrite(&second, 1 << 20, std::string(4096, 'c'));  // fails
  AddWrite(&second, 8192, std::string(4096, 'd'));
  absl::Status status;
  {
    FileSizeLimit limit(1 << 20);  // the kernel refuses writes at and past 1 MiB (EFBIG)
    status = applier_->ApplyBatch(second, &ack);
  }
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("the writes after op seq 1"), std::string::npos) << status;
  EXPECT_NE(status.message().find("at 1048576"), std::string::npos) << status;
  EXPECT_EQ(ack.applied_seq(), 1u) << "writes of the failed batch are not claimed";
  EXPECT_EQ(applier_->snapshot().store_errors_total, 1u);
}

}  // namespace
}  // namespace blockrepl
