#include "primary/nbd/request_reader.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/status_macros.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {
namespace {

// The connection ended after a request had begun.
absl::Status EofInsideRequest() {
  return absl::DataLossError("connection closed inside a request");
}

}  // namespace

RequestReader::RequestReader(int fd, size_t capacity)
    : fd_(fd), capacity_(std::max<size_t>(capacity, 64)), buffer_(new char[capacity_]) {}

size_t RequestReader::TakeBuffered(absl::Span<char> out) {
  const size_t n = std::min(out.size(), buffered());
  if (n == 0) return 0;
  std::memcpy(out.data(), buffer_.get() + begin_, n);
  begin_ += n;
  return n;
}

absl::Status RequestReader::Refill(size_t want, bool clean) {
  begin_ = end_ = 0;  // only called once the buffer is drained
  while (true) {
    ssize_t n = recv(fd_, buffer_.get(), want, 0);
    if (n > 0) {
      end_ = static_cast<size_t>(n);
      return absl::OkStatus();
    }
    if (n == 0) {
      return clean ? CleanEofError() : EofInsideRequest();
    }
    if (errno == EINTR) continue;
    return PosixError("recv");
  }
}

absl::Status RequestReader::Read(absl::Span<char> out, bool read_ahead, bool eof_is_clean) {
  size_t done = TakeBuffered(out);
  while (done < out.size()) {
    const size_t left = out.size() - done;
    if (IsLarge(left)) {
      // A large payload's rest goes straight where it belongs: copying it
      // through the buffer would cost more than the calls it saves.
      absl::Status s = ReadFull(fd_, out.subspan(done));
      if (IsCleanEof(s) && (done > 0 || !eof_is_clean)) return EofInsideRequest();
      return s;
    }
    // Not large, so `left` < capacity_: either way the refill fits.
    RETURN_IF_ERROR(Refill(read_ahead ? capacity_ : left, eof_is_clean && done == 0));
    done += TakeBuffered(out.subspan(done));
  }
  return absl::OkStatus();
}

absl::Status RequestReader::ReadHeader(absl::Span<char> out) {
  return Read(out, /*read_ahead=*/!last_payload_large_, /*eof_is_clean=*/true);
}

absl::Status RequestReader::ReadPayload(absl::Span<char> out) {
  last_payload_large_ = IsLarge(out.size());
  return Read(out, /*read_ahead=*/!last_payload_large_, /*eof_is_clean=*/false);
}

absl::Status RequestReader::Discard(uint64_t length) {
  last_payload_large_ = IsLarge(length);
  const size_t from_buffer = static_cast<size_t>(std::min<uint64_t>(length, buffered()));
  begin_ += from_buffer;
  length -= from_buffer;
  if (length == 0) return absl::OkStatus();
  return nbd::Discard(fd_, length);  // an end of stream in there is kDataLoss
}

bool RequestReader::HasPendingInput() const {
  return buffered() > 0 || nbd::HasPendingInput(fd_);
}

}  // namespace blockrepl::nbd
