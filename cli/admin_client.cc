#include "cli/admin_client.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace blockrepl {

AdminClient::AdminClient(const std::string& socket_path) : socket_path_(socket_path) {
  stub_ = admin::Admin::NewStub(grpc::CreateChannel(absl::StrCat("unix:", socket_path),
                                                    grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::ClientContext> AdminClient::NewContext(int timeout_seconds) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  return context;
}

int AdminClient::ReportFailure(const grpc::Status& status) const {
  if (status.error_code() == grpc::UNAVAILABLE ||
      (status.error_code() == grpc::DEADLINE_EXCEEDED && status.error_message().empty())) {
    fprintf(stderr, "replctl: no agent answers on %s (is it running?)\n", socket_path_.c_str());
  } else {
    fprintf(stderr, "replctl: %s\n", status.error_message().c_str());
  }
  return 1;
}

grpc::Status AdminClient::GetStatus(const std::string& volume, admin::StatusReply* out) {
  auto context = NewContext();
  admin::StatusRequest request;
  request.set_volume(volume);
  return stub_->GetStatus(context.get(), request, out);
}

grpc::Status AdminClient::GetVolume(const std::string& volume, admin::VolumeStatus* out) {
  admin::StatusReply reply;
  grpc::Status status = GetStatus(volume, &reply);
  if (!status.ok()) return status;
  if (reply.volumes_size() != 1) {
    return grpc::Status(grpc::FAILED_PRECONDITION,
                        absl::StrCat("this agent has ", reply.volumes_size(),
                                     " volumes: name one with --volume"));
  }
  *out = reply.volumes(0);
  return grpc::Status::OK;
}

}  // namespace blockrepl
