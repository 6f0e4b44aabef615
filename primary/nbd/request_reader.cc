#include "primary/nbd/request_reader.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/status_macros.h"
#include "primary/nbd/socket_io.h"

namespace blockrepl::nbd {

RequestReader::RequestReader(int fd, size_t capacity)
    : fd_(fd), capacity_(std::max<size_t>(capacity, 64)), buffer_(new char[capacity_]) {}

size_t RequestReader::TakeBuffered(absl::Span<char> out) {
  const size_t n = std::min(out.size(), buffered());
  if (n == 0) return 0;
  std::memcpy(out.data(), buffer_.get() + begin_, n);
  begin_ += n;
  if (begin_ == end_) begin_ = end_ = 0;
  return n;
}

absl::Status RequestReader::Refill(bool partial) {
  begin_ = end_ = 0;  // only called once the buffer is drained
  while (true) {
    ssize_t n = recv(fd_, buffer_.get(), capacity_, 0);
    if (n > 0) {
      end_ = static_cast<size_t>(n);
      return absl::OkStatus();
    }
    if (n == 0) {
      return partial ? absl::DataLossError("connection closed inside a request")
                     : CleanEofError();
    }
    if (errno == EINTR) continue;
    return PosixError("recv");
  }
}

absl::Status RequestReader::Read(absl::Span<char> out) {
  size_t done = TakeBuffered(out);
  while (done < out.size()) {
    const size_t left = out.size() - done;
    if (left >= capacity_ / 4) {
      // A large payload's rest goes straight where it belongs: copying it
      // through the buffer would cost more than the calls it saves.
      absl::Status s = ReadFull(fd_, out.subspan(done));
      if (done > 0 && IsCleanEof(s)) {
        return absl::DataLossError("connection closed inside a request");
      }
      return s;
    }
    RETURN_IF_ERROR(Refill(/*partial=*/done > 0));
    done += TakeBuffered(out.subspan(done));
  }
  return absl::OkStatus();
}

absl::Status RequestReader::Discard(uint64_t length) {
  const size_t from_buffer = static_cast<size_t>(std::min<uint64_t>(length, buffered()));
  begin_ += from_buffer;
  if (begin_ == end_) begin_ = end_ = 0;
  length -= from_buffer;
  if (length == 0) return absl::OkStatus();
  return nbd::Discard(fd_, length);  // an end of stream in there is kDataLoss
}

bool RequestReader::HasPendingInput() const {
  return buffered() > 0 || nbd::HasPendingInput(fd_);
}

}  // namespace blockrepl::nbd
