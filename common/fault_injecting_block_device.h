// A BlockDevice that fails on command: the test-only wrapper behind the agents' hidden
// --test-inject-faults=FILE flag, so end-to-end tests can watch what a real agent does when its
// store returns EIO or ENOSPC (the NBD client gets the error, nothing unsafe is acknowledged,
// the failure shows in status and metrics, the agent keeps serving).
//
// FILE holds the faults in force, one rule per line, re-read whenever it changes (checked at
// most every 20 ms, from the I/O path: no thread). A missing or empty file injects nothing.
//
//   # OP      ERRNO   [OFFSET LENGTH]     '#' starts a comment
//   write     ENOSPC                      every write fails with ENOSPC
//   read      EIO     1048576 65536       reads touching [1 MiB, 1 MiB + 64 KiB) fail
//   all       EIO                         everything fails (OP: read write flush trim zeroes all)
//
// ERRNO is EIO, ENOSPC, EROFS or EDQUOT. A failed call does nothing to the wrapped store, so the
// store never half-applies an injected fault. A malformed line is ignored and logged once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/block_device.h"

namespace blockrepl {

class FaultInjectingBlockDevice : public BlockDevice {
 public:
  struct Rule {
    enum Op { kRead = 1, kWrite = 2, kFlush = 4, kTrim = 8, kZeroes = 16, kAll = 31 };
    int ops = 0;            // bit set of Op
    int error = 0;          // errno
    uint64_t offset = 0;    // range; length 0 = the whole device
    uint64_t length = 0;
  };

  FaultInjectingBlockDevice(std::unique_ptr<BlockDevice> inner, std::string control_path);

  uint64_t Size() const override { return inner_->Size(); }
  absl::Status Read(uint64_t offset, absl::Span<char> out) override;
  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override;
  absl::Status WritePieces(uint64_t offset, absl::Span<const iovec> pieces, bool fua) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim, bool fua) override;

  // Parses the control file's text; malformed lines are described in `problems`.
  static std::vector<Rule> ParseRules(const std::string& text, std::vector<std::string>* problems);

  // Calls failed on purpose so far.
  uint64_t injected() const;

 private:
  // The injected error for this call, or OK to pass it through.
  absl::Status Check(Rule::Op op, uint64_t offset, uint64_t length, const char* what);
  void ReloadIfChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<BlockDevice> inner_;
  const std::string control_path_;
  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string loaded_text_ ABSL_GUARDED_BY(mu_);
  uint64_t injected_ ABSL_GUARDED_BY(mu_) = 0;
};

// `store` unchanged when `control_path` is empty; else wrapped, with a loud warning in the log
// (a production agent must never run with this).
std::unique_ptr<BlockDevice> MaybeInjectFaults(std::unique_ptr<BlockDevice> store,
                                               const std::string& control_path);

}  // namespace blockrepl
