#include "common/mem_block_device.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace blockrepl {

MemBlockDevice::MemBlockDevice(uint64_t size) : size_(size), data_(size, '\0') {}

absl::Status MemBlockDevice::CheckRange(uint64_t offset, uint64_t length, const char* op) const {
  if (offset > size_ || length > size_ - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("mem ", op, " @", offset, "+", length, " beyond size ", size_));
  }
  return absl::OkStatus();
}

absl::Status MemBlockDevice::Read(uint64_t offset, absl::Span<char> out) {
  if (absl::Status s = CheckRange(offset, out.size(), "read"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (!out.empty()) memcpy(out.data(), data_.data() + offset, out.size());
  return absl::OkStatus();
}

absl::Status MemBlockDevice::Write(uint64_t offset, absl::Span<const char> data, bool fua) {
  if (absl::Status s = CheckRange(offset, data.size(), "write"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (!data.empty()) memcpy(data_.data() + offset, data.data(), data.size());
  if (fua) ++fua_count_;
  return absl::OkStatus();
}

absl::Status MemBlockDevice::Flush() {
  absl::MutexLock lock(&mu_);
  ++flush_count_;
  return absl::OkStatus();
}

absl::Status MemBlockDevice::Trim(uint64_t offset, uint64_t length, bool fua) {
  return WriteZeroes(offset, length, /*may_trim=*/true, fua);
}

absl::Status MemBlockDevice::WriteZeroes(uint64_t offset, uint64_t length, bool may_trim,
                                         bool fua) {
  if (absl::Status s = CheckRange(offset, length, "zero"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  memset(data_.data() + offset, 0, length);
  if (fua) ++fua_count_;
  return absl::OkStatus();
}

std::string MemBlockDevice::Contents() const {
  absl::MutexLock lock(&mu_);
  return data_;
}

uint64_t MemBlockDevice::flush_count() const {
  absl::MutexLock lock(&mu_);
  return flush_count_;
}

uint64_t MemBlockDevice::fua_count() const {
  absl::MutexLock lock(&mu_);
  return fua_count_;
}

}  // namespace blockrepl
