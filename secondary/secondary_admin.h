// SecondaryAdmin: the secondary agent's answers to replctl, by volume name:
// status and connect/disconnect of replicas; promote, demote and resolve
// (disaster recovery); and, for a promoted volume, everything the primary
// agent answers (verify, resync control, rescale), by delegation.
// Thread-safe: the hosted volumes and the service are.
#pragma once

#include <string>
#include <vector>

#include "common/admin_server.h"
#include "secondary/hosted_volume.h"
#include "secondary/replica_service.h"

namespace blockrepl {

class SecondaryAdmin : public AdminHandler {
 public:
  // `service` and the volumes outlive this handler.
  SecondaryAdmin(std::vector<HostedVolume*> volumes, ReplicaService* service)
      : volumes_(std::move(volumes)), service_(service) {}

  std::vector<admin::VolumeStatus> Status() override;
  absl::StatusOr<admin::ConnectionReply> SetConnection(
      const admin::ConnectionRequest& request) override;
  absl::StatusOr<admin::ResyncControlReply> ControlResync(
      const admin::ResyncControlRequest& request) override;
  absl::StatusOr<admin::RescaleBitmapReply> RescaleBitmap(
      const admin::RescaleBitmapRequest& request) override;
  absl::StatusOr<admin::VerifyReply> Verify(const admin::VerifyRequest& request) override;
  absl::StatusOr<admin::PromoteReply> Promote(const admin::PromoteRequest& request) override;
  absl::StatusOr<admin::DemoteReply> Demote(const admin::DemoteRequest& request) override;
  absl::StatusOr<admin::ResolveReply> Resolve(const admin::ResolveRequest& request) override;
  absl::StatusOr<admin::SwitchoverReply> Switchover(
      const admin::SwitchoverRequest& request) override;

 private:
  absl::StatusOr<HostedVolume*> Find(const std::string& name) const;
  admin::VolumeStatus ReplicaStatus(HostedVolume& volume) const;
  // `method` of the primary agent's answers when the request's volume is
  // promoted here; `as_replica(volume)` when it is a replica.
  template <typename Reply, typename Request, typename AsReplica>
  absl::StatusOr<Reply> ForVolume(absl::StatusOr<Reply> (AdminHandler::*method)(const Request&),
                                  const Request& request, AsReplica as_replica) {
    absl::StatusOr<HostedVolume*> volume = Find(request.volume());
    if (!volume.ok()) return volume.status();
    if (!(*volume)->promoted()) return as_replica(**volume);
    return (*volume)->template WithPromoted<Reply>(
        [&](AdminHandler& primary) { return (primary.*method)(request); });
  }

  const std::vector<HostedVolume*> volumes_;
  ReplicaService* const service_;
};

}  // namespace blockrepl
