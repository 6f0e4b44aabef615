// HostedVolume: one volume of repl-secondary, in either role. Normally a
// replica (ReplicaVolume: its Applier takes a primary's stream). After
// `replctl promote` it is served as a primary (PromotedVolume) over the same
// store, until `replctl demote` makes it a replica again; the role is in the
// replica's meta, so a restart comes back in the same role. Thread-safe:
// role changes take the lock exclusively, everything reading the promoted
// volume takes it shared.
#pragma once

#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "admin.pb.h"
#include "common/admin_server.h"
#include "common/log.h"
#include "common/tls/tls_options.h"
#include "secondary/promoted_volume.h"
#include "secondary/replica_volume.h"
#include "secondary/secondary_flags.h"

namespace blockrepl {

class HostedVolume {
 public:
  HostedVolume(SecondaryVolumeOptions options, TlsOptions tls, double peer_timeout_s,
               std::unique_ptr<ReplicaVolume> replica)
      : options_(std::move(options)),
        tls_(std::move(tls)),
        peer_timeout_s_(peer_timeout_s),
        replica_(std::move(replica)) {
    // A HANDOVER from the primary (its `replctl switchover`) promotes us
    // once its stream has ended.
    applier()->SetPromotion(options_.nbd_listen, options_.peer, [this] {
      if (absl::Status s = ResumeIfPromoted(); !s.ok()) LogError("switchover: ", s.message());
    });
  }
  ~HostedVolume() { Shutdown(); }

  const std::string& name() const { return options_.volume; }
  ReplicaVolume* replica() { return replica_.get(); }
  Applier* applier() { return replica_->applier(); }

  // At start: a volume promoted before the restart is served again.
  absl::Status ResumeIfPromoted();
  absl::StatusOr<admin::PromoteReply> Promote(const admin::PromoteRequest& request);
  absl::StatusOr<admin::DemoteReply> Demote(const admin::DemoteRequest& request);
  absl::StatusOr<admin::ResolveReply> Resolve(const admin::ResolveRequest& request);
  // Planned switchover of a promoted volume: hands it to the peer and
  // becomes its replica. (A replica is promoted by the HANDOVER op instead.)
  absl::StatusOr<admin::SwitchoverReply> Switchover(const admin::SwitchoverRequest& request);

  bool promoted() const {
    absl::ReaderMutexLock lock(&mu_);
    return promoted_ != nullptr;
  }
  // The promoted volume's status; false when this is a replica.
  bool PromotedStatus(admin::VolumeStatus* out) const;
  // Runs `fn` with an admin handler over the promoted volume (the primary
  // agent's answers); FailedPrecondition when this is a replica.
  template <typename Reply>
  absl::StatusOr<Reply> WithPromoted(
      const std::function<absl::StatusOr<Reply>(AdminHandler&)>& fn) {
    absl::ReaderMutexLock lock(&mu_);
    if (promoted_ == nullptr) return NotPromoted();
    std::unique_ptr<AdminHandler> handler = PromotedAdmin();
    return fn(*handler);
  }

  // Clean stop of whichever role runs.
  void Shutdown();

 private:
  absl::Status NotPromoted() const;
  // The promoted volume stopped (demote, switchover): a replica again.
  absl::Status BecomeReplica() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<AdminHandler> PromotedAdmin() ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const SecondaryVolumeOptions options_;
  const TlsOptions tls_;
  const double peer_timeout_s_;
  const std::unique_ptr<ReplicaVolume> replica_;

  mutable absl::Mutex mu_;
  std::unique_ptr<PromotedVolume> promoted_ ABSL_GUARDED_BY(mu_);  // null: a replica
};

}  // namespace blockrepl
