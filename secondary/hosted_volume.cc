#include "secondary/hosted_volume.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "primary/primary_admin.h"

namespace blockrepl {

absl::Status HostedVolume::ResumeIfPromoted() {
  ReplicaMeta meta = applier()->meta();
  if (!meta.promoted) return absl::OkStatus();
  // The agent's flags as they are now win over those recorded at the
  // promotion (e.g. a --peer added once the other site is rebuilt).
  if (!options_.nbd_listen.empty()) meta.promoted_nbd_listen = options_.nbd_listen;
  if (!options_.peer.empty()) meta.promoted_peer = options_.peer;
  absl::MutexLock lock(&mu_);
  applier()->ReleaseOwnBitmap();
  auto promoted = PromotedVolume::Start(options_, meta, tls_, peer_timeout_s_);
  if (!promoted.ok()) {
    return absl::Status(promoted.status().code(),
                        absl::StrCat("volume '", name(), "' was promoted before this restart "
                                     "but cannot be served again: ",
                                     promoted.status().message()));
  }
  promoted_ = std::move(promoted).value();
  return absl::OkStatus();
}

absl::StatusOr<admin::PromoteReply> HostedVolume::Promote(const admin::PromoteRequest& request) {
  absl::MutexLock lock(&mu_);
  if (promoted_ != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume '", name(), "' is already promoted (NBD ", promoted_->nbd_address(), ")"));
  }
  const std::string nbd_listen =
      request.nbd_listen().empty() ? options_.nbd_listen : request.nbd_listen();
  const std::string peer = request.peer().empty() ? options_.peer : request.peer();
  if (nbd_listen.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "volume '", name(), "': where should clients connect? pass --nbd-listen HOST:PORT (or "
        "start repl-secondary with --nbd-listen for this volume)"));
  }
  if (!peer.empty()) {
    if (absl::Status s = CheckTlsOptions(tls_, peer); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--peer ", peer, ": ", s.message()));
    }
  }
  const bool was_consistent = applier()->meta().consistent;
  bool rolled_back = false;
  auto meta = applier()->Promote(request.force(), nbd_listen, peer, &rolled_back);
  if (!meta.ok()) return meta.status();
  auto promoted = PromotedVolume::Start(options_, *meta, tls_, peer_timeout_s_);
  if (!promoted.ok()) {
    // Back to a replica: nothing was served, nothing written to the store.
    auto own = replica_->OpenOwnBitmap();
    absl::Status undo = applier()->Demote(
        meta->history(), own.ok() ? std::move(own).value() : std::unique_ptr<BitmapFile>());
    return absl::Status(promoted.status().code(),
                        absl::StrCat("promote failed: ", promoted.status().message(),
                                     undo.ok() ? "; the volume stays a replica"
                                               : absl::StrCat("; and reverting: ", undo.message())));
  }
  promoted_ = std::move(promoted).value();
  admin::PromoteReply reply;
  reply.set_nbd_address(promoted_->nbd_address());
  reply.set_generation(promoted_->volume()->history().current);
  reply.set_rolled_back(rolled_back);
  reply.set_forced(!was_consistent && !rolled_back);  // only --force gets here then
  return reply;
}

absl::StatusOr<admin::DemoteReply> HostedVolume::Demote(const admin::DemoteRequest& request) {
  absl::MutexLock lock(&mu_);
  if (promoted_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume '", name(), "' is not promoted: it already is a replica"));
  }
  const absl::Duration timeout = request.timeout_seconds() > 0
                                     ? absl::Seconds(request.timeout_seconds())
                                     : absl::Seconds(60);
  auto reply = promoted_->StopForDemotion(request.force(), timeout);
  if (!reply.ok()) return reply.status();
  promoted_.reset();
  if (absl::Status s = BecomeReplica(); !s.ok()) return s;
  LogInfo("volume '", name(), "' demoted: a replica again",
          reply->peer_in_sync() ? " (the peer holds everything)" : "");
  return reply;
}

absl::Status HostedVolume::BecomeReplica() {
  // The bitmap file holds the promoted history and the chunks the peer may
  // lack (none unless forced): the replica reports both at the next handshake.
  auto own = replica_->OpenOwnBitmap();
  if (!own.ok()) return own.status();
  DataHistory history = applier()->meta().history();
  if (*own != nullptr) history = (*own)->header().history();
  LogInfo("volume '", name(), "': a replica again, following data generation ", history.current);
  return applier()->Demote(history, std::move(own).value());
}

absl::StatusOr<admin::SwitchoverReply> HostedVolume::Switchover(
    const admin::SwitchoverRequest& request) {
  absl::MutexLock lock(&mu_);
  if (promoted_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume '", name(), "' is a replica here: run the switchover on its primary"));
  }
  const absl::Duration timeout = request.timeout_seconds() > 0
                                     ? absl::Seconds(request.timeout_seconds())
                                     : absl::Seconds(60);
  auto new_primary = promoted_->HandOver(timeout);
  if (!new_primary.ok() && promoted_->volume() != nullptr) return new_primary.status();
  promoted_.reset();
  if (absl::Status s = BecomeReplica(); !s.ok()) return s;
  if (!new_primary.ok()) return new_primary.status();
  admin::SwitchoverReply reply;
  reply.set_new_primary_nbd_address(*new_primary);
  reply.set_this_side("replica");
  reply.set_note("this side is the new primary's replica");
  return reply;
}

absl::StatusOr<admin::ResolveReply> HostedVolume::Resolve(const admin::ResolveRequest& request) {
  if (request.discard() == admin::ResolveRequest::DISCARD_UNSPECIFIED) {
    return absl::InvalidArgumentError("say whose writes to discard: --discard=local|remote");
  }
  {
    absl::ReaderMutexLock lock(&mu_);
    if (promoted_ != nullptr) return PromotedAdmin()->Resolve(request);
  }
  const bool local = request.discard() == admin::ResolveRequest::LOCAL;
  // Seen from the handshake's primary: our writes are the secondary's.
  applier()->SetResolution(local ? DiscardChoice::kSecondary : DiscardChoice::kPrimary);
  admin::ResolveReply reply;
  reply.set_note(local ? "this replica's own writes since the split will be overwritten by the "
                         "primary at its next handshake"
                       : "the primary's writes since the split are to be given up: that needs "
                         "the roles swapped (demote the primary, promote this side); the "
                         "handshake keeps being refused until then");
  return reply;
}

bool HostedVolume::PromotedStatus(admin::VolumeStatus* out) const {
  absl::ReaderMutexLock lock(&mu_);
  if (promoted_ == nullptr) return false;
  *out = promoted_->Status();
  return true;
}

void HostedVolume::Shutdown() {
  absl::MutexLock lock(&mu_);
  promoted_.reset();
}

absl::Status HostedVolume::NotPromoted() const {
  return absl::FailedPreconditionError(absl::StrCat(
      "volume '", name(), "' is a replica here: run this on its primary (or promote it first)"));
}

std::unique_ptr<AdminHandler> HostedVolume::PromotedAdmin() {
  return std::make_unique<PrimaryAdmin>(std::vector<PrimaryVolume*>{promoted_->volume()});
}

}  // namespace blockrepl
