// ReplicaMeta: what the secondary must remember across restarts: which
// volume it replicates, the primary history its image follows, whether the
// image is consistent (not a half-done resync target) and the last applied
// sequence number. Stored as a small "key=value" text file replaced
// atomically (write temp, fsync, rename, fsync dir) so a crash leaves the
// old or the new version, never a torn one. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/data_history.h"

namespace blockrepl {

struct ReplicaMeta {
  std::string volume;
  uint64_t size_bytes = 0;
  std::string followed_generation;  // "" = never synced with any primary
  bool consistent = true;
  uint64_t last_applied_seq = 0;
  // While !consistent: the undo log holds the image as it was when the
  // resync began, so it can be rolled back (false for full syncs).
  bool undo_valid = false;
  // The volume UUID (from the primary's bitmap file) this replica belongs
  // to; "" = not paired yet. A primary of another UUID is refused.
  std::string volume_uuid;
  // The rest of the data history (common/data_history.h; `current` is
  // followed_generation): set when this image was written on its own (it
  // was promoted, or was a primary) since it was last in sync.
  std::string diverged_from;
  std::string older_generations;  // comma-separated, newest first
  uint32_t chunk_size = 0;        // the primary's bitmap chunk (0 = never told)
  // `replctl promote`: this store is served as a primary by this agent (a
  // restart serves it again, never takes a primary's stream into it).
  bool promoted = false;
  std::string promoted_nbd_listen;  // where it is served
  std::string promoted_peer;        // where it replicates to

  DataHistory history() const;
  bool diverged() const { return !diverged_from.empty(); }
  void set_history(const DataHistory& h);

  // NotFound when the file does not exist (a brand-new secondary).
  static absl::StatusOr<ReplicaMeta> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;
};

}  // namespace blockrepl
