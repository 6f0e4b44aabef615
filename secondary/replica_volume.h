// ReplicaVolume: one volume of the secondary agent as opened at start: its
// store, its metadata (checked against the volume's name and size, created
// on first start), its undo log and the Applier over them. Owns all four.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/bitmap/bitmap_file.h"
#include "common/block_device.h"
#include "secondary/applier.h"
#include "secondary/replica_meta.h"
#include "secondary/secondary_flags.h"

namespace blockrepl {

class ReplicaVolume {
 public:
  // Errors name the file and what does not match; nothing is written then.
  static absl::StatusOr<std::unique_ptr<ReplicaVolume>> Open(const SecondaryVolumeOptions& options);

  Applier* applier() { return applier_.get(); }
  const std::string& store_path() const { return store_path_; }
  const std::string& meta_path() const { return meta_path_; }
  uint64_t size() const { return store_->Size(); }
  const std::string& bitmap_path() const { return bitmap_path_; }
  // The store's own bitmap file (of its time as a primary), opened and
  // locked; null when there is none.
  absl::StatusOr<std::unique_ptr<BitmapFile>> OpenOwnBitmap() const;
  // The image's state at start, for the startup log line.
  std::string StartupNote() const;

 private:
  ReplicaVolume() = default;

  std::string store_path_, meta_path_, bitmap_path_;
  std::unique_ptr<BlockDevice> store_;
  ReplicaMeta meta_at_start_;
  std::unique_ptr<Applier> applier_;
};

}  // namespace blockrepl
