// Tiny helpers for absl::Status propagation. Debian's Abseil (20220623) has no
// status macros of its own, so the project keeps exactly one copy here.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define BLOCKREPL_CONCAT_INNER(a, b) a##b
#define BLOCKREPL_CONCAT(a, b) BLOCKREPL_CONCAT_INNER(a, b)

// Returns from the current function if `expr` yields a non-OK status.
#define RETURN_IF_ERROR(expr)                     \
  do {                                            \
    ::absl::Status _status = (expr);              \
    if (!_status.ok()) return _status;            \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr, returns its status on
// error, otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(BLOCKREPL_CONCAT(_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

namespace blockrepl {

// Maps an errno value to the closest absl::StatusCode, keeping the text.
// Used at the syscall edge so callers can branch on the code (e.g. ENOSPC ->
// kResourceExhausted, which the NBD layer turns back into NBD_ENOSPC).
absl::Status ErrnoToStatus(int err, std::string_view what);

// Short form for the common "syscall failed" case: uses errno.
inline absl::Status PosixError(std::string_view what) {
  return ErrnoToStatus(errno, what);
}

}  // namespace blockrepl
