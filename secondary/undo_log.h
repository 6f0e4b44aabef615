// UndoLog: before a resync overwrites part of the secondary's image, the old
// contents of each touched 64 KiB extent are appended here and made durable.
// While the log is intact, the image can be rolled back to the consistent
// state it had when the resync began (the primary died mid-resync: DRBD
// users set up LVM snapshots by hand for this). Each extent is saved once
// per resync: its first-touch contents are the consistent ones.
//
// File: records of {u32 magic, u32 length, u64 offset, u64 xxh3(offset,
// data)} + data. A torn tail record (crash while appending) fails its
// checksum and is ignored: its extent was not overwritten yet, because the
// log is fsynced before the store is touched.
// Thread-compatible (the Applier serialises all calls).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

  // Saves the current contents of every not-yet-saved extent overlapping
  // the byte ranges, reading them from `store`, then fsyncs the log.
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
  UndoLog(std::string path, int fd, uint64_t volume_size);
  absl::Status Load();
  bool IsSaved(uint64_t extent) const { return (saved_[extent / 64] >> (extent % 64)) & 1; }
  void MarkSaved(uint64_t extent);

  const std::string path_;
  const int fd_;
  const uint64_t volume_size_;
  std::vector<uint64_t> saved_;  // bit per extent
  uint64_t saved_count_ = 0;
  uint64_t end_offset_ = 0;      // append position (after the last valid record)
};

}  // namespace blockrepl
