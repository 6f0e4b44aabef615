// PrimaryAdmin: the primary agent's answers to replctl (status, resync
// control, bitmap rescale), by volume name. Thread-safe: the volumes are.
#pragma once

#include <vector>

#include "common/admin_server.h"
#include "primary/primary_volume.h"

namespace blockrepl {

class PrimaryAdmin : public AdminHandler {
 public:
  explicit PrimaryAdmin(std::vector<PrimaryVolume*> volumes) : volumes_(std::move(volumes)) {}

  std::vector<admin::VolumeStatus> Status() override;
  absl::StatusOr<admin::ResyncControlReply> ControlResync(
      const admin::ResyncControlRequest& request) override;
  absl::StatusOr<admin::RescaleBitmapReply> RescaleBitmap(
      const admin::RescaleBitmapRequest& request) override;
  absl::StatusOr<admin::ConnectionReply> SetConnection(
      const admin::ConnectionRequest& request) override;
  absl::StatusOr<admin::VerifyReply> Verify(const admin::VerifyRequest& request) override;
  absl::StatusOr<admin::ResolveReply> Resolve(const admin::ResolveRequest& request) override;
  absl::StatusOr<admin::SwitchoverReply> Switchover(
      const admin::SwitchoverRequest& request) override;

 private:
  absl::StatusOr<PrimaryVolume*> Find(const std::string& name);
  const std::vector<PrimaryVolume*> volumes_;
};

}  // namespace blockrepl
