// Connection to an agent's admin socket for replctl commands, and the one
// place that turns a failed call into replctl's one-line error + exit code.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "admin.grpc.pb.h"

namespace blockrepl {

class AdminClient {
 public:
  explicit AdminClient(const std::string& socket_path);
  admin::Admin::Stub* stub() { return stub_.get(); }
  // A context with a deadline suited to admin calls.
  std::unique_ptr<grpc::ClientContext> NewContext(int timeout_seconds = 5) const;
  // Prints "replctl: ..." for a failed call and returns the exit code (1).
  int ReportFailure(const grpc::Status& status) const;
  // The status of `volume` ("" = every volume of the agent).
  grpc::Status GetStatus(const std::string& volume, admin::StatusReply* out);
  // The status of `volume` ("" = the agent's only volume).
  grpc::Status GetVolume(const std::string& volume, admin::VolumeStatus* out);

 private:
  const std::string socket_path_;
  std::unique_ptr<admin::Admin::Stub> stub_;
};

}  // namespace blockrepl
