#include "secondary/secondary_admin.h"

#include "absl/strings/str_cat.h"

namespace blockrepl {
namespace {

std::string ResolutionName(DiscardChoice choice) {
  // Seen from a replica, the handshake's secondary is "local".
  switch (choice) {
    case DiscardChoice::kSecondary:
      return "discard-local";
    case DiscardChoice::kPrimary:
      return "discard-remote";
    case DiscardChoice::kNone:
      break;
  }
  return "";
}

}  // namespace

absl::StatusOr<HostedVolume*> SecondaryAdmin::Find(const std::string& name) const {
  if (name.empty() && volumes_.size() == 1) return volumes_[0];
  for (HostedVolume* v : volumes_) {
    if (v->name() == name) return v;
  }
  return absl::NotFoundError(absl::StrCat("no volume '", name, "' on this agent"));
}

admin::VolumeStatus SecondaryAdmin::ReplicaStatus(HostedVolume& volume) const {
  const Applier& applier = *volume.applier();
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
  v.set_store(volume.replica()->store_path());
  v.set_bitmap_file(volume.replica()->meta_path());
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
  v.set_store_io(s.direct_writes ? "direct" : "buffered");
  v.set_direct_writes_total(s.direct_writes_total);
  v.set_disconnected_by_operator(service_->disconnected(applier.volume()));
  v.set_diverged_from(s.diverged_from);
  v.set_volume_uuid(applier.meta().volume_uuid);
  v.set_dirty_chunks(s.own_write_chunks);
  v.set_split_brain(s.split_brain);
  v.set_resolution(ResolutionName(s.resolution));
  return v;
}

std::vector<admin::VolumeStatus> SecondaryAdmin::Status() {
  std::vector<admin::VolumeStatus> result;
  for (HostedVolume* v : volumes_) {
    admin::VolumeStatus status;
    if (!v->PromotedStatus(&status)) status = ReplicaStatus(*v);
    result.push_back(std::move(status));
  }
  return result;
}

absl::StatusOr<admin::ConnectionReply> SecondaryAdmin::SetConnection(
    const admin::ConnectionRequest& request) {
  auto as_replica = [&](HostedVolume& volume) -> absl::StatusOr<admin::ConnectionReply> {
    if (absl::Status s = service_->SetDisconnected(volume.name(), !request.connect()); !s.ok()) {
      return s;
    }
    admin::ConnectionReply reply;
    // The cancelled stream ends asynchronously: say what was asked.
    reply.set_connection(request.connect() ? ReplicaStatus(volume).connection() : "disconnected");
    reply.set_disconnected_by_operator(!request.connect());
    return reply;
  };
  return ForVolume(&AdminHandler::SetConnection, request, as_replica);
}

// On a replica these answer "run it on the primary" (AdminHandler's defaults).
absl::StatusOr<admin::ResyncControlReply> SecondaryAdmin::ControlResync(
    const admin::ResyncControlRequest& request) {
  return ForVolume(&AdminHandler::ControlResync, request,
                   [&](HostedVolume&) { return AdminHandler::ControlResync(request); });
}

absl::StatusOr<admin::RescaleBitmapReply> SecondaryAdmin::RescaleBitmap(
    const admin::RescaleBitmapRequest& request) {
  return ForVolume(&AdminHandler::RescaleBitmap, request,
                   [&](HostedVolume&) { return AdminHandler::RescaleBitmap(request); });
}

absl::StatusOr<admin::VerifyReply> SecondaryAdmin::Verify(const admin::VerifyRequest& request) {
  return ForVolume(&AdminHandler::Verify, request,
                   [&](HostedVolume&) { return AdminHandler::Verify(request); });
}

absl::StatusOr<admin::PromoteReply> SecondaryAdmin::Promote(const admin::PromoteRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  // A stream already running makes the promotion fail (two primaries).
  auto reply = (*volume)->Promote(request);
  // An operator's `disconnect` of the replica role means nothing once it
  // is a primary; a later demote must not come back silently refusing.
  if (reply.ok()) service_->SetDisconnected((*volume)->name(), false).IgnoreError();
  return reply;
}

absl::StatusOr<admin::DemoteReply> SecondaryAdmin::Demote(const admin::DemoteRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  return (*volume)->Demote(request);
}

absl::StatusOr<admin::ResolveReply> SecondaryAdmin::Resolve(const admin::ResolveRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  return (*volume)->Resolve(request);
}

absl::StatusOr<admin::SwitchoverReply> SecondaryAdmin::Switchover(
    const admin::SwitchoverRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  return (*volume)->Switchover(request);
}

}  // namespace blockrepl
