// UndoLog: before a resync overwrites part of the secondary's image, the old
// contents of each touched 64 KiB extent are appended here and made durable.
// While the log is intact, the image can be rolled back to the consistent
// state it had when the resync began (the primary died mid-resync: DRBD
// users set up LVM snapshots by hand for this). Each extent is saved once
// per resync: its first-touch contents are the consistent ones.
//
// File (format 2): segments, each on a 4 KiB boundary. A segment is one
// 4 KiB header block {u32 magic, u32 count, u64 xxh3 of the entries, then
// `count` entries of {u64 offset, u32 length, u32 zero, u64 xxh3(offset,
// data)}}, followed by each extent's old data padded to a 4 KiB multiple.
// One call writes its extents as one segment (or a few, for a large batch)
// with O_DIRECT: the log is written once and read only by a rollback, so
// passing it through the page cache would only evict the store's pages, and
// on the guests we measured the copy into new page-cache pages cost 25 times
// the store's own writes (docs/PERFORMANCE.md, round 11). Where O_DIRECT is
// refused (tmpfs), the same format is written through the page cache.
//
// A torn segment (crash while appending) fails a checksum and it and
// everything after it are ignored: none of its extents was overwritten yet,
// because the log is fdatasynced before the store is touched.
//
// Format 1 (before round 11: 24-byte-header records, unaligned) is still
// read; a log that holds it keeps being appended to in it until Clear, so an
// upgrade in the middle of a resync can still roll back.
// Thread-compatible (the Applier serialises all calls).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/block_device.h"

namespace blockrepl {

class UndoLog {
 public:
  static constexpr uint64_t kExtentBytes = 64 << 10;

  // Opens (or creates, empty) the log at `path` for a volume of
  // `volume_size` bytes and loads which extents it already holds.
  static absl::StatusOr<std::unique_ptr<UndoLog>> Open(const std::string& path,
                                                       uint64_t volume_size);
  ~UndoLog();
  UndoLog(const UndoLog&) = delete;
  UndoLog& operator=(const UndoLog&) = delete;

  // Saves the current contents of every not-yet-saved extent overlapping
  // the byte ranges, reading them from `store`, then fdatasyncs the log.
  // Returns once the old data is durable: only then may the caller write.
  absl::Status SaveBeforeOverwrite(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                                   BlockDevice* store);
  // Writes every saved extent back into `store` and flushes it.
  absl::Status RollBack(BlockDevice* store);
  // Forgets everything (the resync completed): truncates the file.
  absl::Status Clear();

  uint64_t saved_extents() const { return saved_count_; }
  uint64_t size_bytes() const { return end_offset_; }
  const std::string& path() const { return path_; }

 private:
  enum class Format { kRecords1, kSegments2 };
  struct Extent {
    uint64_t offset;  // in the volume
    uint32_t length;
  };
  // Calls `visit` with each intact extent and its saved data, in log order,
  // stopping at the first torn or foreign byte; returns where that is.
  using Visitor = absl::FunctionRef<absl::Status(const Extent& extent, const char* data)>;
  absl::StatusOr<uint64_t> Scan(Visitor visit);
  absl::StatusOr<uint64_t> ScanRecords1(Visitor visit);
  absl::StatusOr<uint64_t> ScanSegments2(Visitor visit);

  absl::Status AppendRecords1(const std::vector<uint64_t>& extents, BlockDevice* store);
  absl::Status AppendSegment2(const uint64_t* extents, size_t count, BlockDevice* store);
  // pwrite of the whole buffer at `pos` on the writing descriptor; if the
  // file system turns out to refuse O_DIRECT there, reopens it buffered and
  // writes again.
  absl::Status WriteAt(const char* data, size_t length, uint64_t pos);
  absl::Status ReopenBuffered();

  UndoLog(std::string path, int read_fd, int write_fd, bool direct, uint64_t volume_size);
  bool IsSaved(uint64_t extent) const { return (saved_[extent / 64] >> (extent % 64)) & 1; }
  void MarkSaved(uint64_t extent);
  uint32_t ExtentLength(uint64_t extent) const;

  const std::string path_;
  const int read_fd_;  // buffered: loading and rolling back read unaligned format-1 records
  int write_fd_;       // O_DIRECT unless refused (direct_ false)
  bool direct_;
  const uint64_t volume_size_;
  Format format_ = Format::kSegments2;
  std::vector<uint64_t> saved_;  // bit per extent
  uint64_t saved_count_ = 0;
  uint64_t end_offset_ = 0;  // append position (after the last intact record or segment)
  // A segment's header and data, 4 KiB aligned for O_DIRECT; kept while a
  // resync appends (the size of the largest segment so far), freed by Clear.
  struct FreeDeleter {
    void operator()(char* p) const;
  };
  std::unique_ptr<char, FreeDeleter> buffer_;
  size_t buffer_bytes_ = 0;
};

}  // namespace blockrepl
