#include "secondary/secondary_admin.h"

namespace blockrepl {

admin::VolumeStatus SecondaryAdmin::VolumeStatus(const Volume& volume) const {
  const Applier& applier = *volume.applier;
  const Applier::Snapshot s = applier.snapshot();
  admin::VolumeStatus v;
  v.set_name(applier.volume());
  v.set_role("secondary");
  v.set_connection(s.connected ? "connected" : "disconnected");
  v.set_sync_state(!s.consistent ? "resyncing" : s.connected ? "in_sync" : "out_of_sync");
  v.set_size_bytes(applier.size());
  v.set_replicated_bytes_total(s.applied_bytes_total);
  v.set_replicated_writes_total(s.applied_writes_total);
  v.set_resynced_bytes_total(s.resync_bytes_total);
  v.set_peer(s.peer);
  v.set_store(volume.store_path);
  v.set_bitmap_file(volume.meta_path);
  v.set_last_error(s.last_error);
  v.set_store_errors_total(s.store_errors_total);
  v.set_last_store_error(s.last_store_error);
  v.set_applied_seq(s.applied_seq);
  v.set_acked_seq(s.applied_seq);
  v.set_durable_seq(s.durable_seq);
  v.set_consistent(s.consistent);
  v.set_connects_total(s.streams_total);
  v.set_generation(s.followed_generation);
  v.set_undo_available(s.undo_available);
  v.set_undo_log_bytes(s.undo_log_bytes);
  v.set_disconnected_by_operator(service_->disconnected(applier.volume()));
  return v;
}

std::vector<admin::VolumeStatus> SecondaryAdmin::Status() {
  std::vector<admin::VolumeStatus> result;
  for (const Volume& v : volumes_) result.push_back(VolumeStatus(v));
  return result;
}

absl::StatusOr<admin::ConnectionReply> SecondaryAdmin::SetConnection(
    const admin::ConnectionRequest& request) {
  std::string name = request.volume();
  if (name.empty() && volumes_.size() == 1) name = volumes_[0].applier->volume();
  if (absl::Status s = service_->SetDisconnected(name, !request.connect()); !s.ok()) return s;
  admin::ConnectionReply reply;
  for (const Volume& v : volumes_) {
    if (v.applier->volume() != name) continue;
    // The cancelled stream ends asynchronously: say what was asked.
    reply.set_connection(request.connect() ? VolumeStatus(v).connection() : "disconnected");
    reply.set_disconnected_by_operator(!request.connect());
  }
  return reply;
}

}  // namespace blockrepl
