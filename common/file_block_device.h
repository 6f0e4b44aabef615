// FileBlockDevice: a BlockDevice over a regular file or a block device,
// using pread/pwrite/fdatasync on one descriptor. Thread-safe: positioned
// I/O needs no shared file offset, and the kernel orders nothing for us, so
// callers that care about overlapping writes order them themselves.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/block_device.h"

namespace blockrepl {

class FileBlockDevice : public BlockDevice {
 public:
  // Opens `path` read-write. When the path does not exist and `create_size`
  // is non-zero, creates a sparse file of that size. When it exists and
  // `create_size` is non-zero and differs from its size, fails (never
  // silently resizes someone's disk).
  static absl::StatusOr<std::unique_ptr<FileBlockDevice>> Open(const std::string& path,
                                                               uint64_t create_size = 0);
  ~FileBlockDevice() override;

  uint64_t Size() const override { return size_; }
  absl::Status Read(uint64_t offset, absl::Span<char> out) override;
  absl::Status Write(uint64_t offset, absl::Span<const char> data, bool fua) override;
  absl::Status WritePieces(uint64_t offset, absl::Span<const iovec> pieces, bool fua) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim, bool fua) override;

  const std::string& path() const { return path_; }

 private:
  FileBlockDevice(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  // Writes zero buffers over the range: the fallback when the file system
  // cannot punch holes or zero ranges.
  absl::Status WriteZeroBuffers(uint64_t offset, uint64_t length);
  // Tries fallocate(mode); returns Unimplemented when unsupported here.
  absl::Status Fallocate(int mode, uint64_t offset, uint64_t length);
  std::string Where(std::string_view op, uint64_t offset) const;

  const std::string path_;
  const int fd_;
  const uint64_t size_;
};

}  // namespace blockrepl
