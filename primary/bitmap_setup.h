// Opens the primary's write-intent bitmap at start: loads and validates an
// existing bitmap file against the volume, creates a new one, or (with
// force_full_resync) replaces an unusable one. Decides the data history
// (generation) the primary continues: the file's, or a new one when the bits
// cannot describe what the secondary lacks. Used only by PrimaryVolume.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bitmap/bitmap_file.h"
#include "common/bitmap/write_intent_bitmap.h"
#include "common/data_history.h"

namespace blockrepl {

struct BitmapSpec {
  std::string path;                 // "" = in memory only
  uint32_t chunk_size = 65536;
  bool chunk_size_given = false;    // the operator asked for this chunk size explicitly
  absl::Duration daemon_sleep = absl::Seconds(5);
  bool daemon_sleep_given = false;
  bool force_full_resync = false;   // replace a bitmap file that does not fit
  // --bitmap-set-ahead: the aligned group whose bits a new bit's flush sets
  // too (WriteIntentBitmap::SetSetAhead); 0 or one chunk = off.
  uint64_t set_ahead_bytes = 0;
};

struct OpenedBitmap {
  std::unique_ptr<WriteIntentBitmap> bitmap;
  BitmapFile* file = nullptr;       // owned by `bitmap`; null for memory
  std::string volume_uuid;
  DataHistory history;              // generation and what it diverged from
  absl::Duration daemon_sleep;
  std::string startup_note;         // what happened, for the log
};

absl::StatusOr<OpenedBitmap> OpenBitmap(const BitmapSpec& spec, uint64_t volume_size);

}  // namespace blockrepl
