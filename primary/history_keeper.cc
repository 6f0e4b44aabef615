#include "primary/history_keeper.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace blockrepl {

DataHistory HistoryKeeper::Get() const {
  absl::MutexLock lock(&mu_);
  return history_;
}

absl::Status HistoryKeeper::Diverge(absl::FunctionRef<bool()> peer_following) {
  absl::MutexLock lock(&mu_);
  if (history_.diverged() || peer_following()) return absl::OkStatus();
  const DataHistory before = history_;
  history_.Diverge(BitmapFile::NewId());
  if (absl::Status s = PersistLocked(); !s.ok()) {
    history_ = before;
    return absl::InternalError(
        absl::StrCat("cannot record the new data generation in the bitmap file: ", s.message()));
  }
  diverged_.store(true, std::memory_order_release);
  LogInfo("writing without a secondary: new data generation ", history_.current,
          " (diverged from ", history_.diverged_from, ")");
  return absl::OkStatus();
}

void HistoryKeeper::NoteInSync() {
  if (!diverged_.load(std::memory_order_acquire)) return;
  absl::MutexLock lock(&mu_);
  if (!history_.diverged()) return;
  const DataHistory before = history_;
  history_.Converge();
  if (absl::Status s = PersistLocked(); !s.ok()) {
    // Harmless to keep the old record: a later meeting with a promoted peer
    // would then be reported as a split brain rather than merged.
    history_ = before;
    LogError("cannot record that the secondary is in sync: ", s.message());
    return;
  }
  diverged_.store(false, std::memory_order_release);
  LogInfo("secondary in sync with data generation ", history_.current);
}

absl::Status HistoryKeeper::SetFile(BitmapFile* file) {
  absl::MutexLock lock(&mu_);
  file_ = file;
  return PersistLocked();
}

absl::Status HistoryKeeper::PersistLocked() {
  if (file_ == nullptr) return absl::OkStatus();
  BitmapHeader header = file_->header();
  if (header.history() == history_) return absl::OkStatus();
  header.set_history(history_);
  return file_->WriteHeader(header);
}

}  // namespace blockrepl
