// ReplicationChannel: how the replicator reaches its secondary, without
// knowing about gRPC. A channel opens streams; a stream carries protobuf
// messages both ways. The gRPC adapter (grpc_replication_channel.*) is the
// production implementation; tests plug an in-process one.
//
// A stream has two phases, both driven by one thread (the replicator's):
//  - the handshake: blocking Send and Receive, one message each way;
//  - the data phase: Run, an event loop that asks the replicator what to
//    send whenever the stream can take a message and hands it every message
//    the secondary sends. One thread sends and receives: with a thread for
//    each, every write and every ack cost a wake-up of both (and of the
//    session thread that handed the write over) where one suffices.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/payload.h"
#include "replication.pb.h"

namespace blockrepl {

// The replicator's side of a stream's data phase. Every call comes from the
// thread inside ReplicationStream::Run, one at a time.
class StreamEvents {
 public:
  enum class Next {
    kMessage,  // `message` (and `payloads`) are filled: send them
    kIdle,     // nothing to send now; ask again after Wake(), an event, or at `*retry_at`
    kEnd,      // end the stream (stopping, or the connection was broken)
  };
  virtual ~StreamEvents() = default;
  // The stream can take a message. `more_coming` lets the transport hold it
  // to coalesce with the next. A batch's op i without `data` has
  // `payloads[i]` (if any) as its data, so payloads go out uncopied.
  // With kIdle, `*retry_at` (InfiniteFuture unless set) is when a message
  // held back to grow (a batch lingering) is due even if nothing happens.
  virtual Next NextMessage(replication::PrimaryMessage* message, std::vector<Payload>* payloads,
                           bool* more_coming, absl::Time* retry_at) = 0;
  // A message from the secondary; false ends the stream.
  virtual bool OnMessage(const replication::SecondaryMessage& message) = 0;
  // Called about every `tick` given to Run (timers: idle barriers, the peer
  // timeout); false ends the stream.
  virtual bool OnTick() = 0;
};

class ReplicationStream {
 public:
  virtual ~ReplicationStream() = default;
  // Handshake phase, blocking. False once the stream is broken.
  virtual bool Send(replication::PrimaryMessage message, std::vector<Payload> payloads,
                    bool more_coming) = 0;
  // False at end of stream or when broken.
  virtual bool Receive(replication::SecondaryMessage* message) = 0;
  // Data phase, on the thread that did the handshake: sends what `events`
  // hands out (one message at a time), delivers what arrives, ticks, until
  // the stream breaks or `events` ends it. Returns once nothing of the
  // stream is pending; FinishReason then says why it ended.
  virtual void Run(StreamEvents* events, absl::Duration tick) = 0;
  // Any thread, cheap, never blocks: NextMessage may have a message at
  // `due`. Makes Run ask then (at once for a time past) unless it is going to
  // ask anyway (a write in flight, whose completion asks). An earlier WakeAt
  // still pending keeps its time; a later one is brought forward.
  virtual void WakeAt(absl::Time due) = 0;
  void Wake() { WakeAt(absl::InfinitePast()); }
  // Aborts the stream from any thread; Send, Receive and Run return.
  virtual void Cancel() = 0;
  // Why the stream ended, once it has ("" if unknown). Call once.
  virtual std::string FinishReason() = 0;
  // The certificate the secondary presented, for the log (tls_options.h:
  // DescribePeerCertificate); "" over plaintext. After the handshake.
  virtual std::string PeerCertificate() { return ""; }
};

class ReplicationChannel {
 public:
  virtual ~ReplicationChannel() = default;
  // Waits up to `timeout` for the transport to connect, then opens a stream.
  virtual absl::StatusOr<std::unique_ptr<ReplicationStream>> Open(absl::Duration timeout) = 0;
  virtual std::string peer() const = 0;
  // Closes the connection under the streams (once they have ended), so the
  // next Open connects anew: a new TLS handshake, with the certificates in
  // force now. An operator's disconnect does this; a broken stream does not
  // (the transport reconnects by itself).
  virtual void DropConnection() {}
};

}  // namespace blockrepl
