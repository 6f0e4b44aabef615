// AdminServer: serves the Admin gRPC service (used by replctl) on a unix
// socket created mode 0600, so only the agent's user can drive it. The
// agent supplies a status provider; the server knows nothing else about
// it. Thread-safe; owns gRPC's server threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "admin.pb.h"

namespace blockrepl {

using StatusProvider = std::function<std::vector<admin::VolumeStatus>()>;

class AdminServer {
 public:
  // Fails if another live agent already listens on `socket_path`; a stale
  // socket file left by a crash is replaced.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& socket_path,
                                                            StatusProvider provider);
  virtual ~AdminServer() = default;
  virtual void Shutdown() = 0;
};

}  // namespace blockrepl
