// SecondaryAdmin: the secondary agent's answers to replctl (status,
// connect/disconnect), by volume name. Thread-safe: the appliers and the
// service are.
#pragma once

#include <string>
#include <vector>

#include "common/admin_server.h"
#include "secondary/applier.h"
#include "secondary/replica_service.h"

namespace blockrepl {

class SecondaryAdmin : public AdminHandler {
 public:
  struct Volume {
    const Applier* applier;
    std::string store_path;
    std::string meta_path;
  };
  // `service` and the appliers outlive this handler.
  SecondaryAdmin(std::vector<Volume> volumes, ReplicaService* service)
      : volumes_(std::move(volumes)), service_(service) {}

  std::vector<admin::VolumeStatus> Status() override;
  absl::StatusOr<admin::ConnectionReply> SetConnection(
      const admin::ConnectionRequest& request) override;

 private:
  admin::VolumeStatus VolumeStatus(const Volume& volume) const;

  const std::vector<Volume> volumes_;
  ReplicaService* const service_;
};

}  // namespace blockrepl
