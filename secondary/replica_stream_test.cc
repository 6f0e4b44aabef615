#include "secondary/replica_stream.h"

#include "gtest/gtest.h"
#include "replication.pb.h"

namespace blockrepl {
namespace {

using replication::Batch;
using replication::Op;

Batch BatchOf(std::initializer_list<Op::Kind> kinds, bool durability_only_barriers = false) {
  Batch batch;
  uint64_t seq = 1;
  for (Op::Kind kind : kinds) {
    Op* op = batch.add_ops();
    op->set_seq(seq++);
    op->set_kind(kind);
    if (kind == Op::BARRIER) op->set_durability_only(durability_only_barriers);
  }
  return batch;
}

TEST(ReplicaStreamTest, PageCacheWritesStayOnThePoller) {
  Batch batch = BatchOf({Op::WRITE, Op::TRIM, Op::WRITE_ZEROES, Op::WRITE});
  EXPECT_FALSE(ReplicaStream::WaitsForTheDisk(IncomingBatch::View(batch)));
}

TEST(ReplicaStreamTest, AnEpochBoundIsTheFlushersNotThePollers) {
  Batch batch = BatchOf({Op::WRITE, Op::BARRIER, Op::WRITE}, /*durability_only_barriers=*/true);
  EXPECT_FALSE(ReplicaStream::WaitsForTheDisk(IncomingBatch::View(batch)));
}

TEST(ReplicaStreamTest, AClientFlushLeavesThePoller) {
  Batch batch = BatchOf({Op::WRITE, Op::BARRIER, Op::WRITE});
  EXPECT_TRUE(ReplicaStream::WaitsForTheDisk(IncomingBatch::View(batch)));
}

TEST(ReplicaStreamTest, ResyncVerifyAndHandoverLeaveThePoller) {
  for (Op::Kind kind : {Op::RESYNC, Op::RESYNC_ZERO, Op::RESYNC_BEGIN, Op::RESYNC_DONE,
                        Op::VERIFY, Op::HANDOVER}) {
    Batch batch = BatchOf({Op::WRITE, kind});
    EXPECT_TRUE(ReplicaStream::WaitsForTheDisk(IncomingBatch::View(batch))) << Op::Kind_Name(kind);
  }
}

}  // namespace
}  // namespace blockrepl
