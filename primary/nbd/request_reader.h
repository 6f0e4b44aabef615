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
  // 128 KiB holds a queue depth of 32 pipelined 4 KiB writes, headers included.
  static constexpr size_t kDefaultCapacity = 128 * 1024;

  // Reads from `fd` (not owned) through a buffer of `capacity` bytes.
  explicit RequestReader(int fd, size_t capacity = kDefaultCapacity);
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Fills `out` exactly. A peer close before the first byte of `out` is
  // ReadFull's clean end (IsCleanEof), after it kDataLoss, as with ReadFull.
  absl::Status Read(absl::Span<char> out);

  // Consumes and drops `length` bytes (a refused write's payload).
  absl::Status Discard(uint64_t length);

  // True if the client has sent bytes that no Read has taken yet: buffered
  // here or waiting in the socket (its next request has begun to arrive).
  bool HasPendingInput() const;

  size_t buffered() const { return end_ - begin_; }

 private:
  // Moves up to `out.size()` buffered bytes into `out`; returns how many.
  size_t TakeBuffered(absl::Span<char> out);
  // One recv into the (emptied) buffer, of whatever the socket has, at most
  // the capacity. EOF is kUnavailable("eof"); `partial` makes it kDataLoss.
  absl::Status Refill(bool partial);

  const int fd_;
  const size_t capacity_;
  std::unique_ptr<char[]> buffer_;
  size_t begin_ = 0;  // buffer_[begin_, end_) is received and not yet read
  size_t end_ = 0;
};

}  // namespace blockrepl::nbd
