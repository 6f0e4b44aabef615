// Blocking socket helpers for the NBD frontend: full reads/writes that retry
// on EINTR and short transfers, never raise SIGPIPE, and say what failed.
// Stateless functions; callers serialise access to a descriptor themselves
// (one reader thread per socket, writes under the session's write mutex).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace blockrepl::nbd {

// Reads exactly out.size() bytes. A peer close before the first byte is
// kUnavailable with "eof" in the message (the normal end of a connection);
// in the middle of a message it is kDataLoss.
absl::Status ReadFull(int fd, absl::Span<char> out);

// Reads and throws away `length` bytes in bounded pieces, so an oversized
// request is consumed without buffering it.
absl::Status Discard(int fd, uint64_t length);

// Writes every byte of every iovec (the array is modified as it progresses).
// Uses sendmsg(MSG_NOSIGNAL) so a vanished peer is an error, not a signal.
absl::Status WriteFullv(int fd, struct iovec* iov, int iovcnt);
absl::Status WriteFull(int fd, std::string_view data);
// Writes every byte, or with `dont_wait` (MSG_DONTWAIT) what the socket takes
// now; returns how many bytes went out.
absl::StatusOr<uint64_t> Writev(int fd, struct iovec* iov, int iovcnt, bool dont_wait);

// True if bytes the peer sent are waiting to be read (FIONREAD), i.e. the
// client has sent its next request already. False on error.
bool HasPendingInput(int fd);

// True if `status` came from ReadFull hitting a clean end of stream.
bool IsCleanEof(const absl::Status& status);
// The status ReadFull returns for that clean end (for readers of their own).
absl::Status CleanEofError();

// "127.0.0.1:5555", "[::1]:5555", or "unix" for the connected peer of `fd`.
std::string PeerName(int fd);

// One warning line through common/log: "nbd: <who>: <message>". For
// connection-level events only, never per request.
void LogConnection(std::string_view who, std::string_view message);

}  // namespace blockrepl::nbd
