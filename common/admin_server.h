// AdminServer: serves the Admin gRPC service (used by replctl) on a unix
// socket created mode 0600, so only the agent's user can drive it. The
// agent implements AdminHandler; the server only translates between gRPC
// and absl::Status. Thread-safe; owns gRPC's server threads, which call the
// handler concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "admin.pb.h"

namespace blockrepl {

class AdminHandler {
 public:
  virtual ~AdminHandler() = default;
  virtual std::vector<admin::VolumeStatus> Status() = 0;
  // Defaults: not supported by this agent (e.g. a secondary).
  virtual absl::StatusOr<admin::ResyncControlReply> ControlResync(
      const admin::ResyncControlRequest& request);
  virtual absl::StatusOr<admin::RescaleBitmapReply> RescaleBitmap(
      const admin::RescaleBitmapRequest& request);
  virtual absl::StatusOr<admin::ConnectionReply> SetConnection(
      const admin::ConnectionRequest& request);
  virtual absl::StatusOr<admin::VerifyReply> Verify(const admin::VerifyRequest& request);
  virtual absl::StatusOr<admin::PromoteReply> Promote(const admin::PromoteRequest& request);
  virtual absl::StatusOr<admin::DemoteReply> Demote(const admin::DemoteRequest& request);
  virtual absl::StatusOr<admin::ResolveReply> Resolve(const admin::ResolveRequest& request);
  virtual absl::StatusOr<admin::SwitchoverReply> Switchover(
      const admin::SwitchoverRequest& request);
};

class AdminServer {
 public:
  // Fails if another live agent already listens on `socket_path`; a stale
  // socket file left by a crash is replaced. `handler` outlives the server.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& socket_path,
                                                            AdminHandler* handler);
  virtual ~AdminServer() = default;
  virtual void Shutdown() = 0;
};

}  // namespace blockrepl
