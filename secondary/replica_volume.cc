#include "secondary/replica_volume.h"

#include "absl/strings/str_cat.h"
#include "common/fault_injecting_block_device.h"
#include "common/file_block_device.h"
#include "common/units.h"
#include "secondary/undo_log.h"

namespace blockrepl {

absl::StatusOr<std::unique_ptr<ReplicaVolume>> ReplicaVolume::Open(
    const SecondaryVolumeOptions& o) {
  std::unique_ptr<ReplicaVolume> v(new ReplicaVolume());
  v->store_path_ = o.store_path;
  v->meta_path_ = o.meta_path.empty() ? o.store_path + ".meta" : o.meta_path;
  auto store = FileBlockDevice::Open(o.store_path, o.create_size);
  if (!store.ok()) return store.status();
  v->store_ = MaybeInjectFaults(std::move(store).value(), o.fault_control);

  auto loaded = ReplicaMeta::Load(v->meta_path_);
  ReplicaMeta meta;
  if (loaded.ok()) {
    meta = *loaded;
    if (meta.volume != o.volume || meta.size_bytes != v->store_->Size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          v->meta_path_, " belongs to volume '", meta.volume, "' of ", meta.size_bytes,
          " bytes, but this secondary is started for volume '", o.volume, "' with a store of ",
          v->store_->Size(), " bytes; refusing to mix them (move the metadata file away to "
          "start this store as a new replica)"));
    }
  } else if (absl::IsNotFound(loaded.status())) {
    meta.volume = o.volume;
    meta.size_bytes = v->store_->Size();
    if (absl::Status s = meta.Save(v->meta_path_); !s.ok()) return s;
  } else {
    return loaded.status();
  }
  v->meta_at_start_ = meta;

  auto undo = UndoLog::Open(v->meta_path_ + ".undo", v->store_->Size());
  if (!undo.ok()) return undo.status();
  v->applier_ = std::make_unique<Applier>(o.volume, v->store_.get(), v->meta_path_, meta,
                                          std::move(undo).value());
  return v;
}

std::string ReplicaVolume::StartupNote() const {
  const ReplicaMeta& m = meta_at_start_;
  return absl::StrCat(
      "volume '", m.volume, "' (", FormatBytes(m.size_bytes), ") in ", store_path_, ", image ",
      m.consistent ? "consistent"
                   : m.undo_valid ? "INCONSISTENT (resync target; --rollback-resync can undo it)"
                                  : "INCONSISTENT (full sync target, no undo)",
      m.followed_generation.empty() ? ", no history yet" : "");
}

}  // namespace blockrepl
