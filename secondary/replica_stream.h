// ReplicaStream: one primary's replication stream on the secondary, driven
// through gRPC's asynchronous API by the service's one polling thread. The
// first message is the Hello; the ReplicaService admits the stream (or refuses
// it) on a thread of its own, since admission may wait for the volume's
// previous stream to stop. After that each batch is applied on the polling
// thread that read it and acked from there. That thread is the only one
// polling the stream's socket: no other thread is woken to receive a batch or
// to learn that an ack went out (a wake-up across cores is the dearest step of
// a small write on these machines; docs/PERFORMANCE.md, round 6). The
// applier's flusher adds its durability acks to the same ordered send queue.
//
// Owns itself: created on the polling thread (each accepted stream asks for
// the next), deleted by whichever thread returns its last operation (the
// poller, or the admission thread). Send and End may be called from any thread.
#pragma once

#include <deque>
#include <string>

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
    enum Kind { kAccepted, kRead, kWritten, kFinished, kDone };
    ReplicaStream* stream;
    Kind kind;
  };

  // Asks `service` for the next incoming stream on `cq`.
  ReplicaStream(ReplicaService* service, grpc::ServerCompletionQueue* cq);
  ReplicaStream(const ReplicaStream&) = delete;
  ReplicaStream& operator=(const ReplicaStream&) = delete;

  // The polling thread hands back each tag; the stream may delete itself.
  void OnEvent(Tag::Kind kind, bool ok);

 private:
  ~ReplicaStream() = default;  // only OnEvent deletes

  void OnAccepted(bool ok);
  void OnReadDone(bool ok);
  void OnWriteDone(bool ok);
  // Runs on its own thread: admission (may wait for the previous stream of
  // the volume), then the reply, then the first batch read.
  void Admit(replication::Hello hello);
  // Decodes, applies and acks the batch in `received_`; false if the stream ends.
  bool ApplyReceived();
  // Queues `message` behind what is unsent; starts a write if none is in flight.
  void Send(const replication::SecondaryMessage& message) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream with `status` once the queued messages are out (the first
  // call wins). `reason` is what the applier records as why the stream ended.
  void End(grpc::Status status, std::string reason) ABSL_LOCKS_EXCLUDED(mu_);
  // Starts the next read unless the stream is ending.
  void ReadNext() ABSL_LOCKS_EXCLUDED(mu_);
  // True (once) when it is time to call Finish: ending, and nothing being
  // written or started.
  bool TakeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartFinish(const grpc::Status& status);
  // One started operation came back; deletes the stream after the last.
  void OperationReturned();

  // Constant after construction.
  ReplicaService* const service_;
  grpc::ServerCompletionQueue* const cq_;
  Tag accepted_tag_{this, Tag::kAccepted}, read_tag_{this, Tag::kRead},
      written_tag_{this, Tag::kWritten}, finished_tag_{this, Tag::kFinished},
      done_tag_{this, Tag::kDone};

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
  bool starting_read_ ABSL_GUARDED_BY(mu_) = false;  // a Read call is under way
  bool ending_ ABSL_GUARDED_BY(mu_) = false;          // End called: no more reads or sends
  bool finished_ ABSL_GUARDED_BY(mu_) = false;        // Finish called
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::string end_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockrepl
