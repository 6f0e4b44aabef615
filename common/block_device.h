// BlockDevice: the storage interface every layer above the disk talks to.
// The NBD frontend sees only this; the replicating volume implements it as a
// decorator over the local store. Implementations are thread-safe: any
// method may be called concurrently from many threads (the caller orders
// overlapping writes when it cares).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/payload.h"

namespace blockrepl {

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  // Size in bytes; constant for the device's lifetime.
  virtual uint64_t Size() const = 0;

  // Fills `out` from `offset`. The range has been validated by the caller.
  virtual absl::Status Read(uint64_t offset, absl::Span<char> out) = 0;

  // Writes `data` at `offset`. With `fua`, the data is on stable storage
  // before this returns.
  virtual absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) = 0;

  // The same, handing over the buffer: a device that must keep the bytes
  // (the replicating volume queues them for the secondary) takes them
  // without a copy. The default just writes them.
  virtual absl::Status WriteOwned(uint64_t offset, Payload data, bool fua) {
    return Write(offset, data.span(), fua);
  }

  // Writes the concatenated `pieces` at `offset`: a payload left in the
  // network buffers it arrived in (the secondary's zero-copy receive path).
  // The default joins them into one buffer; a file store hands them to pwritev.
  virtual absl::Status WritePieces(uint64_t offset, absl::Span<const iovec> pieces, bool fua) {
    if (pieces.size() == 1) {
      return Write(offset, {static_cast<const char*>(pieces[0].iov_base), pieces[0].iov_len}, fua);
    }
    std::string joined;
    for (const iovec& piece : pieces) {
      joined.append(static_cast<const char*>(piece.iov_base), piece.iov_len);
    }
    return Write(offset, joined, fua);
  }

  // Makes every write that completed before this call durable.
  virtual absl::Status Flush() = 0;

  // Discards the range. Afterwards the range reads back as zeroes: the
  // replica must end up byte-identical, so "maybe zeroes" is not allowed.
  virtual absl::Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;

  // Writes zeroes over the range (may deallocate when `may_trim`).
  virtual absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim,
                                   bool fua) = 0;

  // Asynchronous forms of the three modifying calls, for a device whose
  // writes wait on something other than the caller's thread (the
  // replicating volume in sync mode waits for the secondary's ack). `done`
  // runs exactly once, on any thread, possibly before the call returns, and
  // must not block: the thread handling an ack may run many in a row. The defaults
  // complete in place.
  using Done = absl::AnyInvocable<void(absl::Status) &&>;
  virtual void WriteOwnedAsync(uint64_t offset, Payload data, bool fua, Done done) {
    std::move(done)(WriteOwned(offset, std::move(data), fua));
  }
  virtual void TrimAsync(uint64_t offset, uint64_t length, bool fua, Done done) {
    std::move(done)(Trim(offset, length, fua));
  }
  virtual void WriteZeroesAsync(uint64_t offset, uint64_t length, bool may_trim, bool fua,
                                Done done) {
    std::move(done)(WriteZeroes(offset, length, may_trim, fua));
  }
};

}  // namespace blockrepl
