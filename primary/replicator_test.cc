#include "primary/replicator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/completion_batch.h"
#include "common/xxh3.h"
#include "primary/fake_replication_channel.h"

namespace blockrepl {
namespace {

using replication::Op;

constexpr uint32_t kChunk = 64 << 10;
constexpr int kNoNagle = 1 << 20;

// Polls `done` every 10 ms for up to 5 s; the caller asserts on what it then sees.
void PollFor(const std::function<bool()>& done) {
  for (int i = 0; i < 500 && !done(); ++i) absl::SleepFor(absl::Milliseconds(10));
}

class ReplicatorTest : public ::testing::Test {
 protected:
  // The fake secondary accepts every handshake, following "gen", consistent.
  void AcceptHellos() {
    replication::HelloReply reply;
    reply.set_accepted(true);
    reply.set_followed_generation("gen");
    reply.set_consistent(true);
    channel_.SetHelloReply(reply);
  }
  static ReplicatorOptions BaseOptions() {
    ReplicatorOptions o;
    o.volume = "vol";
    o.size_bytes = 64ull << 20;
    o.generation = "gen";
    o.min_backoff = absl::Milliseconds(5);
    return o;
  }
  void Start(const ReplicatorOptions& o) {
    replicator_ = std::make_unique<Replicator>(o, &bitmap_, &channel_);
    replicator_->Start();
  }
  void StartConnected(const ReplicatorOptions& o, absl::Duration timeout = absl::Seconds(5)) {
    AcceptHellos();
    Start(o);
    ASSERT_NE(replicator_->WaitUntilConnected(timeout), 0u);
  }
  void StartWith(uint64_t max_writes, uint64_t max_bytes) {
    ReplicatorOptions o = BaseOptions();
    o.max_inflight_writes = max_writes;
    o.max_inflight_bytes = max_bytes;
    o.idle_barrier_delay = absl::Hours(1);  // tests decide when barriers go
    // These tests send without acking: no batch waits for an ack here (the
    // stream's Nagle rule has its own test).
    o.max_partial_batches_in_flight = kNoNagle;
    StartConnected(o);
  }
  // Submits a write to `chunk` the way ReplicatingVolume does.
  ReplicationTicket Write(uint64_t chunk, size_t bytes) {
    ChunkRange r{chunk, chunk + 1};
    EXPECT_TRUE(bitmap_.StartWrite(r).ok());
    return replicator_->Submit(Op::WRITE, chunk * kChunk, bytes, Payload::CopyOf(std::string(bytes, 'x')), r);
  }
  void TearDown() override {
    if (replicator_) replicator_->Stop();
  }

  WriteIntentBitmap bitmap_{64ull << 20, kChunk, std::make_unique<MemoryBitmapStore>()};
  FakeReplicationChannel channel_;
  std::unique_ptr<Replicator> replicator_;
};

TEST_F(ReplicatorTest, WindowBlocksAtMaxWritesAndReopensOnAck) {
  StartWith(/*max_writes=*/4, /*max_bytes=*/1 << 30);
  for (int i = 0; i < 4; ++i) Write(i, 4096);
  std::atomic<bool> fifth_done{false};
  std::thread fifth([&] {
    Write(4, 4096);
    fifth_done = true;
  });
  ASSERT_TRUE(channel_.WaitForOps(4, absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(fifth_done.load());
  EXPECT_EQ(replicator_->snapshot().inflight_writes, 4u);
  channel_.Ack(/*applied=*/1, /*durable=*/0);
  fifth.join();
  EXPECT_TRUE(fifth_done.load());
  EXPECT_EQ(replicator_->snapshot().peak_inflight_writes, 4u);
}

// An NBD worker's run of writes holds their replies back (CompletionBatch);
// one that finds the window full sends them before it waits.
TEST_F(ReplicatorTest, HeldRepliesGoBeforeAWaitForTheWindow) {
  StartWith(/*max_writes=*/2, /*max_bytes=*/1 << 30);
  // Chunk 2's bit already set and durable: its write does no bitmap I/O, so
  // only the window wait can send what is held.
  ASSERT_TRUE(bitmap_.StartWrite(ChunkRange{2, 3}).ok());
  bitmap_.EndWrite(ChunkRange{2, 3}, /*replicated=*/true);
  std::atomic<bool> sent{false}, third_done{false};
  std::thread worker([&] {
    CompletionBatch batch;
    Write(0, 4096);
    Write(1, 4096);
    CompletionBatch::Defer([&] { sent = true; });
    Write(2, 4096);  // the window is full: waits for an ack
    third_done = true;
  });
  ASSERT_TRUE(channel_.WaitForOps(2, absl::Seconds(5)));
  PollFor([&] { return sent.load(); });
  EXPECT_TRUE(sent.load());
  EXPECT_FALSE(third_done.load());
  channel_.Ack(/*applied=*/1, /*durable=*/0);
  worker.join();
  EXPECT_TRUE(third_done.load());
}

TEST_F(ReplicatorTest, WindowBlocksAtMaxBytesButLetsOneBigWriteAlone) {
  StartWith(/*max_writes=*/100, /*max_bytes=*/64 << 10);
  Write(0, 48 << 10);
  std::atomic<bool> second_done{false};
  std::thread second([&] {
    Write(1, 32 << 10);  // 80 KiB would exceed 64 KiB
    second_done = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(second_done.load());
  channel_.Ack(1, 0);
  second.join();
  // Alone in the window, a write larger than the byte limit still goes.
  channel_.Ack(2, 0);
  Write(2, 128 << 10);
  EXPECT_EQ(replicator_->snapshot().inflight_bytes, 128u << 10);
}

TEST_F(ReplicatorTest, BitsReleaseOnlyOnDurableAck) {
  StartWith(16, 1 << 30);
  Write(7, 4096);
  ReplicationTicket barrier = replicator_->SubmitBarrier();
  ASSERT_TRUE(channel_.WaitForOps(2, absl::Seconds(5)));
  channel_.Ack(barrier.seq, 0);
  ASSERT_TRUE(replicator_->Wait(barrier, Replicator::WaitFor::kApplied));
  EXPECT_EQ(bitmap_.counts().dirty_chunks, 1u);  // applied, not durable yet
  channel_.Ack(barrier.seq, barrier.seq);
  ASSERT_TRUE(replicator_->Wait(barrier, Replicator::WaitFor::kDurable));
  EXPECT_EQ(bitmap_.counts().dirty_chunks, 0u);
}

// Sync-mode NBD writes complete through WhenReached: each callback runs once,
// when an ack reaches its seq (applied or durable, as asked), with the
// callbacks of one ack together in one CompletionBatch.
TEST_F(ReplicatorTest, WhenReachedRunsOnceTheAckReachesTheTicket) {
  StartWith(16, 1 << 30);
  struct Outcomes {
    absl::Mutex mu;
    std::vector<std::string> log ABSL_GUARDED_BY(mu);
    void Add(std::string entry) {
      absl::MutexLock lock(&mu);
      log.push_back(std::move(entry));
    }
    std::vector<std::string> Get() {
      absl::MutexLock lock(&mu);
      return log;
    }
    // The callbacks run on the stream's thread after it published the ack.
    std::vector<std::string> WaitFor(size_t n) {
      absl::MutexLock lock(&mu);
      auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return log.size() >= n; };
      mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
      return log;
    }
  } outcomes;
  auto record = [&](std::string name) {
    return [&outcomes, name](bool reached) {
      outcomes.Add(absl::StrCat(name, reached ? "+" : "-",
                                CompletionBatch::Active() ? " batched" : ""));
    };
  };
  ReplicationTicket first = Write(1, 4096);
  ReplicationTicket second = Write(2, 4096);
  ReplicationTicket barrier = replicator_->SubmitBarrier();
  replicator_->WhenReached(second, Replicator::WaitFor::kApplied, record("second"));
  replicator_->WhenReached(first, Replicator::WaitFor::kApplied, record("first"));
  replicator_->WhenReached(barrier, Replicator::WaitFor::kDurable, record("barrier"));
  ASSERT_TRUE(channel_.WaitForOps(3, absl::Seconds(5)));
  EXPECT_TRUE(outcomes.Get().empty());

  channel_.Ack(first.seq, 0);
  EXPECT_EQ(outcomes.WaitFor(1), std::vector<std::string>{"first+ batched"});
  channel_.Ack(barrier.seq, 0);  // applied, not yet durable: the barrier waits
  EXPECT_EQ(outcomes.WaitFor(2), (std::vector<std::string>{"first+ batched", "second+ batched"}));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(outcomes.Get().size(), 2u);

  channel_.Ack(barrier.seq, barrier.seq);
  EXPECT_EQ(outcomes.WaitFor(3), (std::vector<std::string>{"first+ batched", "second+ batched",
                                                           "barrier+ batched"}));

  // Already reached: at once, on the calling thread.
  replicator_->WhenReached(first, Replicator::WaitFor::kDurable, record("late"));
  EXPECT_EQ(outcomes.Get().back(), "late+");
}

TEST_F(ReplicatorTest, WhenReachedReportsALostStreamOnce) {
  StartWith(16, 1 << 30);
  std::atomic<int> reached{0}, lost{0};
  auto count = [&](bool ok) { (ok ? reached : lost).fetch_add(1); };
  ReplicationTicket ticket = Write(1, 4096);
  replicator_->WhenReached(ticket, Replicator::WaitFor::kApplied, count);
  replicator_->WhenReached(ticket, Replicator::WaitFor::kDurable, count);
  ASSERT_TRUE(channel_.WaitForOps(1, absl::Seconds(5)));
  channel_.Break();
  PollFor([&] { return lost.load() >= 2; });
  EXPECT_EQ(lost.load(), 2);
  EXPECT_EQ(reached.load(), 0);
  // A ticket of the lost stream, asked about afterwards: at once, not reached.
  replicator_->WhenReached(ticket, Replicator::WaitFor::kApplied, count);
  EXPECT_EQ(lost.load(), 3);
  // Not replicated at all (seq 0): at once, not reached.
  replicator_->WhenReached(ReplicationTicket{}, Replicator::WaitFor::kApplied, count);
  EXPECT_EQ(lost.load(), 4);
  EXPECT_EQ(reached.load(), 0);
}

TEST_F(ReplicatorTest, BrokenStreamMarksUnackedChunksNeedsSyncAndReconnects) {
  StartWith(16, 1 << 30);
  Write(1, 4096);
  Write(2, 4096);
  ASSERT_TRUE(channel_.WaitForOps(2, absl::Seconds(5)));
  channel_.Ack(1, 1);  // chunk 1 is safe
  absl::SleepFor(absl::Milliseconds(20));
  channel_.Break();
  // Reconnects by itself; chunk 2 must be resynced.
  PollFor([&] { return channel_.streams_opened() >= 2; });
  EXPECT_GE(channel_.streams_opened(), 2);
  EXPECT_EQ(bitmap_.counts().needs_sync_chunks, 1u);
  EXPECT_EQ(bitmap_.NextNeedsSync(0), 2u);
}

// An operator's disconnect drops the transport connection, so the connect
// after it makes a new TLS handshake (a renewed certificate goes in use); a
// stream that merely broke keeps it (gRPC reconnects the transport itself).
TEST_F(ReplicatorTest, OnlyAnOperatorDisconnectDropsTheConnection) {
  StartConnected(BaseOptions());
  channel_.Break();
  PollFor([&] { return channel_.streams_opened() >= 2; });
  ASSERT_NE(replicator_->WaitUntilConnected(absl::Seconds(5)), 0u);
  ASSERT_EQ(channel_.streams_opened(), 2);
  EXPECT_EQ(channel_.connections_dropped(), 0);

  replicator_->SetOperatorDisconnected(true);
  PollFor([&] { return channel_.connections_dropped() >= 1; });
  EXPECT_EQ(channel_.connections_dropped(), 1);
  EXPECT_EQ(channel_.streams_opened(), 2);

  replicator_->SetOperatorDisconnected(false);
  PollFor([&] { return channel_.streams_opened() >= 3; });
  EXPECT_EQ(channel_.streams_opened(), 3);
  EXPECT_EQ(channel_.connections_dropped(), 1);
}

TEST_F(ReplicatorTest, SubmitWhileDisconnectedOnlyMarksTheBitmap) {
  channel_.SetReachable(false);
  Start(BaseOptions());
  ReplicationTicket t = Write(3, 4096);
  EXPECT_EQ(t.seq, 0u);
  EXPECT_FALSE(replicator_->Wait(t, Replicator::WaitFor::kApplied));
  EXPECT_EQ(bitmap_.NextNeedsSync(0), 3u);
  PollFor([&] { return !replicator_->snapshot().last_error.empty(); });
  EXPECT_NE(replicator_->snapshot().last_error.find("unreachable"), std::string::npos);
}

// Submit hashes a payload only when a peer follows (a lone primary would hash
// for nothing). A peer that connects between that look and Submit's lock must
// still get the write hashed, not sent without its checksum.
TEST_F(ReplicatorTest, AWriteRacingTheConnectionIsSentWithItsChecksum) {
  channel_.SetReachable(false);
  ReplicatorOptions o = BaseOptions();
  o.max_partial_batches_in_flight = kNoNagle;
  bool raced = false;
  o.submit_race_for_test = [&] {
    if (raced) return;
    raced = true;
    EXPECT_FALSE(replicator_->peer_following());  // so the payload was not hashed yet
    AcceptHellos();
    channel_.SetReachable(true);
    EXPECT_NE(replicator_->WaitUntilConnected(absl::Seconds(5)), 0u);
  };
  Start(o);
  const std::string data(4096, 'r');
  ChunkRange r{5, 6};
  ASSERT_TRUE(bitmap_.StartWrite(r).ok());
  ReplicationTicket t = replicator_->Submit(Op::WRITE, 5 * kChunk, data.size(),
                                            Payload::CopyOf(data), r);
  EXPECT_TRUE(raced);
  EXPECT_NE(t.seq, 0u);  // it went to the peer that came
  ASSERT_TRUE(channel_.WaitForOps(1, absl::Seconds(5)));
  std::vector<Op> ops = channel_.ReceivedOps();
  auto write = std::find_if(ops.begin(), ops.end(),
                            [](const Op& op) { return op.kind() == Op::WRITE; });
  ASSERT_NE(write, ops.end());
  EXPECT_EQ(write->data(), data);
  EXPECT_EQ(write->data_checksum(), XXH3_64bits(data.data(), data.size()));
}

TEST_F(ReplicatorTest, EpochClosesAfterMaxEpochWrites) {
  ReplicatorOptions o = BaseOptions();
  o.max_epoch_writes = 3;
  o.idle_barrier_delay = absl::Hours(1);
  o.max_partial_batches_in_flight = kNoNagle;
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));
  for (int i = 0; i < 3; ++i) Write(i, 512);
  ASSERT_TRUE(channel_.WaitForOps(4, absl::Seconds(5)));
  std::vector<Op> ops = channel_.ReceivedOps();
  EXPECT_EQ(ops[3].kind(), Op::BARRIER);
  for (size_t i = 1; i < ops.size(); ++i) EXPECT_GT(ops[i].seq(), ops[i - 1].seq());
}

TEST_F(ReplicatorTest, RefusedHandshakeIsReportedAndRetried) {
  replication::HelloReply reply;
  reply.set_accepted(false);
  reply.set_error("volume mismatch: 'a' vs 'b'");
  channel_.SetHelloReply(reply);
  Start(BaseOptions());
  PollFor([&] { return channel_.streams_opened() >= 2; });
  EXPECT_GE(channel_.streams_opened(), 2);
  EXPECT_NE(replicator_->snapshot().last_error.find("volume mismatch"), std::string::npos);
  EXPECT_EQ(replicator_->live_connection(), 0u);
}

// A client write that finds no peer following while a handshake is under
// way moves the primary to a new generation; the secondary must end up
// following that one, not the name the first hello carried (else, after a
// promotion, the old primary's failback is misjudged). Seen as a flaky
// e2e_failover under TSan before the handshake re-checked the history.
TEST_F(ReplicatorTest, AHistoryThatMovesDuringTheHandshakeIsHandshakenAgain) {
  HistoryKeeper history(DataHistory{"gen", "", {}}, nullptr);
  std::atomic<bool> wrote{false};
  channel_.OnHello([&](const replication::Hello&) {
    if (wrote.exchange(true)) return;
    // As ReplicatingVolume::Modify does for a write arriving now.
    EXPECT_TRUE(history.BeforeLocalWrite([this] { return replicator_->peer_following(); }).ok());
  });
  ReplicatorOptions o = BaseOptions();
  o.history = &history;
  o.min_backoff = absl::Seconds(30);  // the retry must not wait for the backoff
  ASSERT_NO_FATAL_FAILURE(StartConnected(o, absl::Seconds(10)));

  const DataHistory now = history.Get();
  ASSERT_NE(now.current, "gen");
  EXPECT_EQ(now.diverged_from, "gen");
  const std::vector<replication::Hello> hellos = channel_.hellos();
  ASSERT_EQ(hellos.size(), 2u);
  EXPECT_EQ(hellos[0].generation(), "gen");
  EXPECT_EQ(hellos[1].generation(), now.current);
  EXPECT_EQ(hellos[1].diverged_from(), "gen");
  EXPECT_TRUE(replicator_->peer_following());
}

// Once the peer follows, writes do not diverge: the same history stays named.
TEST_F(ReplicatorTest, WritesWhileThePeerFollowsKeepTheGeneration) {
  HistoryKeeper history(DataHistory{"gen", "", {}}, nullptr);
  bool following = true;
  EXPECT_TRUE(history.BeforeLocalWrite([&] { return following; }).ok());
  EXPECT_EQ(history.Get(), (DataHistory{"gen", "", {}}));
  following = false;
  EXPECT_TRUE(history.BeforeLocalWrite([&] { return following; }).ok());
  EXPECT_EQ(history.Get().diverged_from, "gen");
}

// Nagle's rule for the stream: with two batches unacknowledged, small
// writes wait and then go together when an ack comes; a full batch does not
// wait.
TEST_F(ReplicatorTest, SmallBatchesWaitForAnAckWhileTwoAreUnacknowledged) {
  ReplicatorOptions o = BaseOptions();
  o.idle_barrier_delay = absl::Hours(1);
  o.max_epoch_age = absl::Hours(1);
  o.max_batch_bytes = 256 << 10;
  o.max_partial_batches_in_flight = 2;
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));

  Write(0, 4096);
  ASSERT_TRUE(channel_.WaitForOps(1, absl::Seconds(5)));
  Write(1, 4096);
  ASSERT_TRUE(channel_.WaitForOps(2, absl::Seconds(5)));
  EXPECT_EQ(channel_.batches_received(), 2);
  for (int chunk = 2; chunk < 5; ++chunk) Write(chunk, 4096);
  EXPECT_FALSE(channel_.WaitForOps(3, absl::Milliseconds(200)));  // two unacked: they wait

  channel_.Ack(/*applied=*/1, /*durable=*/0);  // one batch left unacked: the three go as one
  ASSERT_TRUE(channel_.WaitForOps(5, absl::Seconds(5)));
  EXPECT_EQ(channel_.batches_received(), 3);

  channel_.Ack(/*applied=*/4, /*durable=*/0);  // batch 2 acked, not batch 3 (seqs 3-5)
  Write(5, 4096);
  ASSERT_TRUE(channel_.WaitForOps(6, absl::Seconds(5)));  // one unacked: sent at once
  Write(6, 4096);
  EXPECT_FALSE(channel_.WaitForOps(7, absl::Milliseconds(200)));
  // A full batch's worth of bytes queued: both go without an ack, the small
  // one first (a batch holds at most max_batch_bytes), then the big one.
  Write(7, 256 << 10);
  ASSERT_TRUE(channel_.WaitForOps(8, absl::Seconds(5)));
  EXPECT_EQ(channel_.batches_received(), 6);
}

// batch_linger: a partial batch of client writes waits for more until the
// first has lingered that long, once clients have had overlapping writes; a
// full batch, a batch with a barrier in it, and a batch queued while the
// window is half full go at once.
TEST_F(ReplicatorTest, PartialBatchesOfWritesLingerForMore) {
  ReplicatorOptions o = BaseOptions();
  o.idle_barrier_delay = absl::Hours(1);
  o.max_epoch_age = absl::Hours(1);
  o.max_partial_batches_in_flight = kNoNagle;
  o.max_batch_ops = 4;
  o.max_inflight_bytes = 64 << 10;  // half: 32 KiB
  o.batch_linger = absl::Seconds(1);
  o.linger_overlap_memory = absl::Hours(1);
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));

  Write(0, 4096);  // no overlapping writes yet: a client waiting for each
  ASSERT_TRUE(channel_.WaitForOps(1, absl::Milliseconds(500)));
  channel_.Ack(/*applied=*/1, /*durable=*/0);

  replicator_->NoteOverlappingClientWrites();
  const absl::Time start = absl::Now();
  for (int chunk = 1; chunk < 4; ++chunk) Write(chunk, 4096);
  EXPECT_FALSE(channel_.WaitForOps(2, absl::Milliseconds(300)));  // lingering
  ASSERT_TRUE(channel_.WaitForOps(4, absl::Seconds(5)));
  EXPECT_GE(absl::Now() - start, o.batch_linger);
  EXPECT_EQ(channel_.batches_received(), 2);  // the three in one
  channel_.Ack(/*applied=*/4, /*durable=*/0);

  for (int chunk = 4; chunk < 8; ++chunk) Write(chunk, 4096);  // a full batch (4 ops)
  ASSERT_TRUE(channel_.WaitForOps(8, absl::Milliseconds(500)));
  EXPECT_EQ(channel_.batches_received(), 3);
  channel_.Ack(/*applied=*/8, /*durable=*/0);

  Write(8, 4096);
  replicator_->SubmitBarrier();  // may have a waiter: the write goes with it at once
  ASSERT_TRUE(channel_.WaitForOps(10, absl::Milliseconds(500)));
  EXPECT_EQ(channel_.batches_received(), 4);
  channel_.Ack(/*applied=*/10, /*durable=*/0);

  Write(9, 40 << 10);  // more than half the byte window
  ASSERT_TRUE(channel_.WaitForOps(11, absl::Milliseconds(500)));
  EXPECT_EQ(channel_.batches_received(), 5);
}

// A partial batch that reaches linger_batch_bytes is worth a message: it
// goes without waiting out the linger.
TEST_F(ReplicatorTest, ALingeringBatchGoesOnceItHoldsLingerBatchBytes) {
  ReplicatorOptions o = BaseOptions();
  o.idle_barrier_delay = absl::Hours(1);
  o.max_epoch_age = absl::Hours(1);
  o.max_partial_batches_in_flight = kNoNagle;
  o.batch_linger = absl::Seconds(5);
  o.linger_overlap_memory = absl::Hours(1);
  o.linger_batch_bytes = 16 << 10;
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));
  replicator_->NoteOverlappingClientWrites();

  for (int chunk = 0; chunk < 3; ++chunk) Write(chunk, 4096);  // 12 KiB: lingers
  EXPECT_FALSE(channel_.WaitForOps(1, absl::Milliseconds(300)));
  Write(3, 4096);  // 16 KiB: goes
  ASSERT_TRUE(channel_.WaitForOps(4, absl::Seconds(2)));
  EXPECT_EQ(channel_.batches_received(), 1);
}

// Resync chunks go in batches of up to max_resync_batch_bytes (one undo-log
// fdatasync each on the secondary); a client write never rides in one larger
// than max_batch_bytes.
TEST_F(ReplicatorTest, ResyncChunksGoInLargerBatchesThanClientWrites) {
  ReplicatorOptions o = BaseOptions();
  o.idle_barrier_delay = absl::Hours(1);
  o.max_epoch_age = absl::Hours(1);
  o.max_batch_bytes = 128 << 10;
  o.max_resync_batch_bytes = 512 << 10;
  o.max_partial_batches_in_flight = kNoNagle;
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));
  channel_.HoldSending(true);
  for (uint64_t chunk = 0; chunk < 16; ++chunk) {  // 1 MiB of resync: two batches
    ChunkRange r{chunk, chunk + 1};
    ASSERT_TRUE(bitmap_.StartWrite(r).ok());
    replicator_->Submit(Op::RESYNC, chunk * kChunk, kChunk,
                        Payload::CopyOf(std::string(kChunk, 'r')), r);
  }
  for (uint64_t chunk = 16; chunk < 20; ++chunk) Write(chunk, kChunk);  // 256 KiB: two
  channel_.HoldSending(false);
  ASSERT_TRUE(channel_.WaitForOps(20, absl::Seconds(5)));
  EXPECT_EQ(channel_.batches_received(), 4);
  const std::vector<replication::Op> ops = channel_.ReceivedOps();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(ops[i].kind(), i < 16 ? Op::RESYNC : Op::WRITE) << i;
}

// The transport may hold a message to coalesce it with the next only when
// the next can go at once: held while Nagle's rule keeps the rest back, it
// would wait for an ack that cannot come (the secondary never saw it).
TEST_F(ReplicatorTest, AMessageIsHeldForCoalescingOnlyWhenTheNextCanGoAtOnce) {
  ReplicatorOptions o = BaseOptions();
  o.idle_barrier_delay = absl::Hours(1);
  o.max_epoch_age = absl::Hours(1);
  o.max_batch_ops = 4;
  o.max_partial_batches_in_flight = 1;
  ASSERT_NO_FATAL_FAILURE(StartConnected(o));

  Write(0, 4096);
  ASSERT_TRUE(channel_.WaitForOps(1, absl::Seconds(5)));  // one batch unacked now
  channel_.HoldSending(true);
  for (int chunk = 1; chunk <= 5; ++chunk) Write(chunk, 4096);
  channel_.HoldSending(false);
  // A full batch goes; the one op left is partial and waits for an ack.
  ASSERT_TRUE(channel_.WaitForOps(5, absl::Seconds(5)));
  EXPECT_FALSE(channel_.WaitForOps(6, absl::Milliseconds(100)));
  channel_.Ack(/*applied=*/5, /*durable=*/0);
  ASSERT_TRUE(channel_.WaitForOps(6, absl::Seconds(5)));

  channel_.Ack(/*applied=*/6, /*durable=*/0);  // taken before the held ops (acks go first)
  channel_.HoldSending(true);
  for (int chunk = 6; chunk < 14; ++chunk) Write(chunk, 4096);
  channel_.HoldSending(false);
  // Two full batches: the first may be held for the second.
  ASSERT_TRUE(channel_.WaitForOps(14, absl::Seconds(5)));
  EXPECT_EQ(channel_.more_coming_flags(),
            (std::vector<bool>{false, false, false, true, false}));
}

}  // namespace
}  // namespace blockrepl
