// MemBlockDevice: a BlockDevice held in memory, for tests. Thread-safe (one
// mutex around the bytes). Besides the interface it counts flushes and FUA
// writes and can hand out a copy of its contents, so tests can check both
// data and durability requests.
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/block_device.h"

namespace blockrepl {

class MemBlockDevice : public BlockDevice {
 public:
  explicit MemBlockDevice(uint64_t size);

  uint64_t Size() const override { return size_; }
  absl::Status Read(uint64_t offset, absl::Span<char> out) override;
  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim, bool fua) override;

  // A copy of the whole device.
  std::string Contents() const;
  uint64_t flush_count() const;
  uint64_t fua_count() const;  // Write/Trim/WriteZeroes calls with fua set

 private:
  // Out-of-range calls are caller bugs; reported as kOutOfRange, not UB.
  absl::Status CheckRange(uint64_t offset, uint64_t length, const char* op) const;

  const uint64_t size_;

  mutable absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  uint64_t flush_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fua_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blockrepl
