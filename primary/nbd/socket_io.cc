#include "primary/nbd/socket_io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace blockrepl::nbd {
namespace {

constexpr char kEofMessage[] = "eof";
constexpr size_t kDiscardChunk = 64 * 1024;

}  // namespace

absl::Status ReadFull(int fd, absl::Span<char> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = recv(fd, out.data() + done, out.size() - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      if (done == 0) return CleanEofError();
      return absl::DataLossError(
          absl::StrCat("connection closed after ", done, " of ", out.size(), " bytes"));
    }
    if (errno == EINTR) continue;
    return PosixError("recv");
  }
  return absl::OkStatus();
}

absl::Status Discard(int fd, uint64_t length) {
  char buf[kDiscardChunk];
  while (length > 0) {
    size_t piece = static_cast<size_t>(std::min<uint64_t>(length, sizeof(buf)));
    absl::Status s = ReadFull(fd, absl::Span<char>(buf, piece));
    if (IsCleanEof(s)) return absl::DataLossError("connection closed inside a payload");
    RETURN_IF_ERROR(s);
    length -= piece;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Writev(int fd, struct iovec* iov, int iovcnt, bool dont_wait) {
  uint64_t written = 0;
  while (iovcnt > 0) {
    if (iov->iov_len == 0) {
      ++iov;
      --iovcnt;
      continue;
    }
    struct msghdr msg = {};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (dont_wait && (errno == EAGAIN || errno == EWOULDBLOCK)) return written;
      return PosixError("send");
    }
    written += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && iovcnt > 0) {
      size_t take = std::min(left, iov->iov_len);
      iov->iov_base = static_cast<char*>(iov->iov_base) + take;
      iov->iov_len -= take;
      left -= take;
      if (iov->iov_len == 0) {
        ++iov;
        --iovcnt;
      }
    }
  }
  return written;
}

absl::Status WriteFullv(int fd, struct iovec* iov, int iovcnt) {
  return Writev(fd, iov, iovcnt, /*dont_wait=*/false).status();
}

absl::Status WriteFull(int fd, std::string_view data) {
  struct iovec iov = {const_cast<char*>(data.data()), data.size()};
  return WriteFullv(fd, &iov, 1);
}

bool HasPendingInput(int fd) {
  int pending = 0;
  return ioctl(fd, FIONREAD, &pending) == 0 && pending > 0;
}

absl::Status CleanEofError() { return absl::UnavailableError(kEofMessage); }

bool IsCleanEof(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable &&
         std::string_view(status.message().data(), status.message().size()) == kEofMessage;
}

std::string PeerName(int fd) {
  struct sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(sin->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
    return absl::StrCat("[", host, "]:", ntohs(sin6->sin6_port));
  }
  return "unix";
}

void LogConnection(std::string_view who, std::string_view message) {
  LogLine(LogLevel::kWarning, absl::StrCat("nbd: ", absl::string_view(who.data(), who.size()), ": ",
                                           absl::string_view(message.data(), message.size())));
}

}  // namespace blockrepl::nbd
