#include "secondary/replica_volume.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/fault_injecting_block_device.h"
#include "common/file_block_device.h"
#include "common/units.h"
#include "secondary/direct_write_queue.h"
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

  v->bitmap_path_ = o.bitmap_path;
  auto own = v->OpenOwnBitmap();
  if (!own.ok()) return own.status();
  const BitmapFile* own_file = own->get();

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
    if (own_file != nullptr) {
      // An old primary joining as the replica of its promoted peer (fail
      // back): its bitmap file says which volume and history its data is.
      const BitmapHeader& h = own_file->header();
      meta.volume_uuid = h.volume_uuid;
      meta.set_history(h.history());
      meta.chunk_size = h.chunk_size;
      LogInfo("volume '", o.volume, "': no replica metadata yet; taking identity and data "
              "history from the bitmap file ", own_file->path(), " (", h.history().Describe(),
              ")");
    }
    if (absl::Status s = meta.Save(v->meta_path_); !s.ok()) return s;
  } else {
    return loaded.status();
  }
  v->meta_at_start_ = meta;
  if (own_file != nullptr && !meta.volume_uuid.empty() &&
      own_file->header().volume_uuid != meta.volume_uuid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bitmap file ", own_file->path(), " belongs to volume UUID ",
        own_file->header().volume_uuid, ", this replica (", v->meta_path_, ") to ",
        meta.volume_uuid, "; refusing to mix them (pass the right --bitmap, or move it away)"));
  }

  auto undo = UndoLog::Open(v->meta_path_ + ".undo", v->store_->Size());
  if (!undo.ok()) return undo.status();
  v->applier_ = std::make_unique<Applier>(o.volume, v->store_.get(), v->meta_path_, meta,
                                          std::move(undo).value(), std::move(own).value());
  if (o.store_io == "direct") {
    // Fault injection wraps the store's calls, which direct writes would bypass.
    if (!o.fault_control.empty()) {
      return absl::InvalidArgumentError("--store-io=direct bypasses --test-inject-faults");
    }
    auto direct = DirectWriteQueue::Open(o.store_path);
    if (!direct.ok()) {
      return absl::Status(direct.status().code(),
                          absl::StrCat("--store-io=direct: ", direct.status().message()));
    }
    v->applier_->UseDirectWrites(std::move(direct).value());
  }
  return v;
}

absl::StatusOr<std::unique_ptr<BitmapFile>> ReplicaVolume::OpenOwnBitmap() const {
  struct stat st;
  if (stat(bitmap_path_.c_str(), &st) != 0 && errno == ENOENT) {
    return std::unique_ptr<BitmapFile>();
  }
  auto file = BitmapFile::Open(bitmap_path_);
  if (!file.ok()) return file.status();
  if ((*file)->header().volume_size != store_->Size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bitmap file ", bitmap_path_, " describes a volume of ", (*file)->header().volume_size,
        " bytes, the store has ", store_->Size(), " bytes"));
  }
  return file;
}

std::string ReplicaVolume::StartupNote() const {
  const ReplicaMeta& m = meta_at_start_;
  return absl::StrCat(
      "volume '", m.volume, "' (", FormatBytes(m.size_bytes), ") in ", store_path_, ", image ",
      m.consistent ? "consistent"
                   : m.undo_valid ? "INCONSISTENT (resync target; --rollback-resync can undo it)"
                                  : "INCONSISTENT (full sync target, no undo)",
      m.followed_generation.empty() ? ", no history yet" : "",
      m.diverged() ? absl::StrCat(", written on its own since ", m.diverged_from) : "",
      m.promoted ? ", PROMOTED (served as a primary)" : "");
}

}  // namespace blockrepl
