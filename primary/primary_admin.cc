#include "primary/primary_admin.h"

#include "absl/strings/str_cat.h"

namespace blockrepl {

std::vector<admin::VolumeStatus> PrimaryAdmin::Status() {
  std::vector<admin::VolumeStatus> result;
  for (PrimaryVolume* v : volumes_) result.push_back(v->Status());
  return result;
}

absl::StatusOr<PrimaryVolume*> PrimaryAdmin::Find(const std::string& name) {
  if (name.empty() && volumes_.size() == 1) return volumes_[0];
  for (PrimaryVolume* v : volumes_) {
    if (v->options().volume == name) return v;
  }
  std::string names;
  for (PrimaryVolume* v : volumes_) absl::StrAppend(&names, names.empty() ? "" : ", ", v->options().volume);
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this agent has ", volumes_.size(), " volumes (", names, "): name one with --volume"));
  }
  return absl::NotFoundError(absl::StrCat("no volume named '", name, "' (this agent has: ", names, ")"));
}

absl::StatusOr<admin::ResyncControlReply> PrimaryAdmin::ControlResync(
    const admin::ResyncControlRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  switch (request.action()) {
    case admin::ResyncControlRequest::PAUSE:
      (*volume)->PauseResync(true);
      break;
    case admin::ResyncControlRequest::RESUME:
      (*volume)->PauseResync(false);
      break;
    case admin::ResyncControlRequest::SET_RATE:
      (*volume)->SetResyncRate(request.rate_bytes_per_second());
      break;
    default:
      return absl::InvalidArgumentError("unknown resync action");
  }
  admin::VolumeStatus status = (*volume)->Status();
  admin::ResyncControlReply reply;
  reply.set_paused(status.resync_paused());
  reply.set_rate_bytes_per_second(status.resync_rate_limit_bytes_per_second());
  return reply;
}

absl::StatusOr<admin::RescaleBitmapReply> PrimaryAdmin::RescaleBitmap(
    const admin::RescaleBitmapRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  const uint64_t chunk = request.chunk_size();
  if (chunk < 4096 || chunk > (1ull << 30) || (chunk & (chunk - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk size ", chunk, " must be a power of two between 4K and 1G"));
  }
  return (*volume)->RescaleBitmap(static_cast<uint32_t>(chunk));
}

absl::StatusOr<admin::ConnectionReply> PrimaryAdmin::SetConnection(
    const admin::ConnectionRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  (*volume)->SetOperatorDisconnected(!request.connect());
  admin::VolumeStatus status = (*volume)->Status();
  admin::ConnectionReply reply;
  reply.set_connection(status.connection());
  reply.set_disconnected_by_operator(status.disconnected_by_operator());
  return reply;
}

absl::StatusOr<admin::VerifyReply> PrimaryAdmin::Verify(const admin::VerifyRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  return (*volume)->Verify(request);
}

absl::StatusOr<admin::ResolveReply> PrimaryAdmin::Resolve(const admin::ResolveRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  if (request.discard() == admin::ResolveRequest::DISCARD_UNSPECIFIED) {
    return absl::InvalidArgumentError("say whose writes to discard: --discard=local|remote");
  }
  const bool local = request.discard() == admin::ResolveRequest::LOCAL;
  (*volume)->Resolve(local ? DiscardChoice::kPrimary : DiscardChoice::kSecondary);
  admin::ResolveReply reply;
  reply.set_note(local ? "this primary's writes since the split will be given up at the next "
                         "handshake: that needs the roles swapped (demote here, promote there); "
                         "the secondary keeps refusing until then"
                       : "the secondary's writes since the split will be overwritten from here "
                         "at the next handshake (now)");
  return reply;
}

absl::StatusOr<admin::SwitchoverReply> PrimaryAdmin::Switchover(
    const admin::SwitchoverRequest& request) {
  auto volume = Find(request.volume());
  if (!volume.ok()) return volume.status();
  const absl::Duration timeout = request.timeout_seconds() > 0
                                     ? absl::Seconds(request.timeout_seconds())
                                     : absl::Seconds(60);
  auto new_primary = (*volume)->HandOver(timeout);
  if (!new_primary.ok()) return new_primary.status();
  admin::SwitchoverReply reply;
  reply.set_new_primary_nbd_address(*new_primary);
  reply.set_this_side("handed-over");
  const PrimaryVolumeOptions& o = (*volume)->options();
  reply.set_note(absl::StrCat(
      "this repl-primary no longer serves '", o.volume, "'. To make this store the new "
      "primary's replica, stop repl-primary and run: repl-secondary --volume ", o.volume,
      " --store ", o.store_path, o.bitmap.path.empty() ? "" : " --bitmap " + o.bitmap.path,
      " --listen HOST:PORT (the new primary's --peer) --admin-socket ..."));
  return reply;
}

}  // namespace blockrepl
