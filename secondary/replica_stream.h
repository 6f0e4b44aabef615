// ReplicaStream: one primary's replication stream on the secondary, driven
// through gRPC's asynchronous API by the service's one polling thread. The
// first message is the Hello; the ReplicaService admits the stream (or refuses
// it) on a thread of its own, since admission may wait for the volume's
// previous stream to stop. After that each batch of page-cache writes is
// applied on the polling thread that read it and acked from there. That
// thread is the only one polling the stream's socket: no other thread is woken
// to receive a batch or to learn that an ack went out (a wake-up across cores
// is the dearest step of a small write on these machines; docs/PERFORMANCE.md,
// round 6). A batch that waits for the disk itself (a client's flush, resync,
// verify) is applied on a thread of its own, so one volume's fdatasync never
// holds up the other volumes' streams; the next read starts after it either
// way, which keeps the stream's order. The applier's flusher adds its
// durability acks to the same ordered send queue.
//
// Owns itself: created on the polling thread (each accepted stream asks for
// the next), deleted once its last operation has come back, after its goodbye
// to the applier (on a thread of its own: that flushes the store). Send and
// End may be called from any thread.
#pragma once

#include <deque>
#include <memory>
#include <string>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/async_stream.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/wire/stream_codec.h"
#include "replication.pb.h"

namespace blockrepl {

class Applier;
class ReplicaService;

class ReplicaStream {
 public:
  // A completion-queue tag: which operation of which stream came back.
  struct Tag {
    enum Kind { kAccepted, kRead, kWritten, kFinished, kDone, kKicked };
    ReplicaStream* stream;
    Kind kind;
  };

  // Asks `service` for the next incoming stream on `cq`.
  ReplicaStream(ReplicaService* service, grpc::ServerCompletionQueue* cq);
  ReplicaStream(const ReplicaStream&) = delete;
  ReplicaStream& operator=(const ReplicaStream&) = delete;

  // The polling thread hands back each tag; the stream may delete itself.
  void OnEvent(Tag::Kind kind, bool ok);
  // Called once by the service's polling thread before its loop.
  static void MarkThisThreadThePoller();

  // True if applying `batch` waits for the disk itself (an fdatasync, a meta
  // save, a read), not only for the page cache: such a batch is applied off
  // the polling thread.
  static bool WaitsForTheDisk(const IncomingBatch& batch);

 private:
  ~ReplicaStream() = default;  // only Delete deletes

  void OnAccepted(bool ok);
  void OnReadDone(bool ok);
  void OnWriteDone(bool ok);
  // Runs on its own thread: admission (may wait for the previous stream of
  // the volume), then the reply, then the first batch read.
  void Admit(replication::Hello hello);
  // Decodes the batch in `received_` into `batch_`; false (and ends the
  // stream) if it does not parse.
  bool DecodeReceived();
  // Applies `batch_` to `applier` (the admitted one) and acks it; false if
  // the stream ends.
  bool ApplyDecoded(Applier* applier);
  // For error messages only (takes mu_).
  std::string VolumeName() ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `message` behind what is unsent (sent in order).
  void Send(const replication::SecondaryMessage& message) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream with `status` once the queued messages are out (the first
  // call wins). `reason` is what the applier records as why the stream ended.
  void End(grpc::Status status, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);
  // Asks for the next read (not once the stream is ending).
  void ReadNext() ABSL_LOCKS_EXCLUDED(mu_);
  // Every gRPC operation starts on the polling thread: there, Pump starts
  // what is due; elsewhere, a kick (an alarm due now) has the poller pump.
  void PumpOrKick() ABSL_LOCKS_EXCLUDED(mu_);
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);
  // One started operation came back; after the last, the stream says
  // goodbye to its applier (on a thread of its own: that flushes) and goes.
  void OperationReturned();
  void Delete();

  // Constant after construction.
  ReplicaService* const service_;
  grpc::ServerCompletionQueue* const cq_;
  Tag accepted_tag_{this, Tag::kAccepted}, read_tag_{this, Tag::kRead},
      written_tag_{this, Tag::kWritten}, finished_tag_{this, Tag::kFinished},
      done_tag_{this, Tag::kDone}, kicked_tag_{this, Tag::kKicked};

  std::unique_ptr<grpc::Alarm> kick_;  // fires on the poller: see PumpOrKick
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_{&context_};
  // Touched only by whoever owns the current read (one at a time).
  grpc::ByteBuffer received_;
  IncomingBatch batch_;

  absl::Mutex mu_;
  int operations_ ABSL_GUARDED_BY(mu_) = 0;  // started, not yet come back
  // Set by admission before the first batch is read.
  Applier* applier_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string volume_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> unsent_ ABSL_GUARDED_BY(mu_);  // front is in flight if writing_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_wanted_ ABSL_GUARDED_BY(mu_) = false;   // the next Pump starts a read
  bool kick_pending_ ABSL_GUARDED_BY(mu_) = false;  // an alarm is set
  bool ending_ ABSL_GUARDED_BY(mu_) = false;          // End called: no more reads or sends
  bool finished_ ABSL_GUARDED_BY(mu_) = false;        // Finish called
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::string end_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockrepl
