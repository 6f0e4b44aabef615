// The read side of one NBD connection's transmission phase, through one
// receive buffer.
//
// Why: reading each request with its own recv calls (the 28-byte header,
// then the payload) costs two system calls per request, and at 4 KiB writes
// those calls were about a fifth of the primary's CPU (docs/PERFORMANCE.md,
// round 13). A client at queue depth 32 has pipelined many requests by the
// time we read: one recv into the buffer brings in a dozen headers and their
// payloads at once, and copying a 4 KiB payload out of the buffer costs a
// fraction of a system call.
//
// Large payloads are not copied twice: what is left of one after the
// buffered bytes is received straight into the caller's memory.
//
// Single-threaded: the session's reading thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace blockrepl::nbd {

class RequestReader {
 public:
  // 128 KiB holds 31 pipelined 4 KiB writes with their headers: nearly all
  // a client at queue depth 32 can have sent.
  static constexpr size_t kDefaultCapacity = 128 * 1024;

  // Reads from `fd` (not owned) through a buffer of `capacity` bytes (at
  // least 64: a refill never asks recv for 0 bytes, which reads as an end).
  explicit RequestReader(int fd, size_t capacity = kDefaultCapacity);
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Fill `out` exactly: a request's header, then its payload. A peer close
  // before the first byte of a header is ReadFull's clean end (IsCleanEof);
  // anywhere else it is kDataLoss.
  //
  // While the client sends large payloads, ReadHeader receives just the
  // header, as ReadFull would: reading ahead would pull the start of the next
  // payload through the buffer, copying it twice to save one call of many
  // (measured at 64 KiB writes: more CPU per byte, not less).
  absl::Status ReadHeader(absl::Span<char> out);
  absl::Status ReadPayload(absl::Span<char> out);

  // Consumes and drops `length` bytes (a refused write's payload).
  absl::Status Discard(uint64_t length);

  // True if the client has sent bytes that no Read has taken yet: buffered
  // here or waiting in the socket (its next request has begun to arrive).
  bool HasPendingInput() const;

  size_t buffered() const { return end_ - begin_; }

 private:
  // A payload this large is received straight into place.
  bool IsLarge(uint64_t length) const { return length >= capacity_ / 4; }
  // Fills `out`; refills of the buffer ask the socket for `read_ahead`
  // bytes beyond what `out` still needs. `eof_is_clean`: an end of stream
  // before the first byte is the connection's normal end.
  absl::Status Read(absl::Span<char> out, bool read_ahead, bool eof_is_clean);
  // Moves up to `out.size()` buffered bytes into `out`; returns how many.
  size_t TakeBuffered(absl::Span<char> out);
  // One recv into the (emptied) buffer of at most `want` (<= capacity_)
  // bytes, of whatever the socket has. EOF is kUnavailable("eof") if `clean`, else kDataLoss.
  absl::Status Refill(size_t want, bool clean);

  const int fd_;
  const size_t capacity_;
  std::unique_ptr<char[]> buffer_;
  size_t begin_ = 0;  // buffer_[begin_, end_) is received and not yet read
  size_t end_ = 0;
  bool last_payload_large_ = false;  // the client is sending large payloads
};

}  // namespace blockrepl::nbd
