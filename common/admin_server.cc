#include "common/admin_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "admin.grpc.pb.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

class AdminService final : public admin::Admin::Service {
 public:
  explicit AdminService(AdminHandler* handler) : handler_(handler) {}

  grpc::Status GetStatus(grpc::ServerContext*, const admin::StatusRequest* request,
                         admin::StatusReply* reply) override {
    for (admin::VolumeStatus& volume : handler_->Status()) {
      if (!request->volume().empty() && volume.name() != request->volume()) continue;
      *reply->add_volumes() = std::move(volume);
    }
    if (!request->volume().empty() && reply->volumes_size() == 0) {
      return grpc::Status(grpc::NOT_FOUND, absl::StrCat("no volume named '", request->volume(), "'"));
    }
    return grpc::Status::OK;
  }

  grpc::Status ControlResync(grpc::ServerContext*, const admin::ResyncControlRequest* request,
                             admin::ResyncControlReply* reply) override {
    return Forward(&AdminHandler::ControlResync, *request, reply);
  }
  grpc::Status RescaleBitmap(grpc::ServerContext*, const admin::RescaleBitmapRequest* request,
                             admin::RescaleBitmapReply* reply) override {
    return Forward(&AdminHandler::RescaleBitmap, *request, reply);
  }
  grpc::Status SetConnection(grpc::ServerContext*, const admin::ConnectionRequest* request,
                             admin::ConnectionReply* reply) override {
    return Forward(&AdminHandler::SetConnection, *request, reply);
  }
  grpc::Status Verify(grpc::ServerContext*, const admin::VerifyRequest* request,
                      admin::VerifyReply* reply) override {
    return Forward(&AdminHandler::Verify, *request, reply);
  }
  grpc::Status Promote(grpc::ServerContext*, const admin::PromoteRequest* request,
                       admin::PromoteReply* reply) override {
    return Forward(&AdminHandler::Promote, *request, reply);
  }
  grpc::Status Demote(grpc::ServerContext*, const admin::DemoteRequest* request,
                      admin::DemoteReply* reply) override {
    return Forward(&AdminHandler::Demote, *request, reply);
  }
  grpc::Status Resolve(grpc::ServerContext*, const admin::ResolveRequest* request,
                       admin::ResolveReply* reply) override {
    return Forward(&AdminHandler::Resolve, *request, reply);
  }
  grpc::Status Switchover(grpc::ServerContext*, const admin::SwitchoverRequest* request,
                          admin::SwitchoverReply* reply) override {
    return Forward(&AdminHandler::Switchover, *request, reply);
  }

 private:
  // Every call but GetStatus: the handler's answer, or its error as a gRPC status.
  template <typename Request, typename Reply>
  grpc::Status Forward(absl::StatusOr<Reply> (AdminHandler::*method)(const Request&),
                       const Request& request, Reply* reply) {
    absl::StatusOr<Reply> result = (handler_->*method)(request);
    if (result.ok()) *reply = *std::move(result);
    return ToGrpc(result.status());
  }

  AdminHandler* const handler_;
};

class GrpcAdminServer : public AdminServer {
 public:
  GrpcAdminServer(std::string path, std::unique_ptr<AdminService> service,
                  std::unique_ptr<grpc::Server> server)
      : path_(std::move(path)), service_(std::move(service)), server_(std::move(server)) {}
  ~GrpcAdminServer() override { Shutdown(); }

  void Shutdown() override {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
    unlink(path_.c_str());
  }

 private:
  const std::string path_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
};

// True if something accepts connections on the unix socket `path`.
bool SocketIsLive(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool live = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return live;
}

}  // namespace

absl::StatusOr<admin::ResyncControlReply> AdminHandler::ControlResync(
    const admin::ResyncControlRequest&) {
  return absl::FailedPreconditionError("resync is controlled on the primary, not here");
}

absl::StatusOr<admin::RescaleBitmapReply> AdminHandler::RescaleBitmap(
    const admin::RescaleBitmapRequest&) {
  return absl::FailedPreconditionError("the bitmap lives on the primary, not here");
}

absl::StatusOr<admin::ConnectionReply> AdminHandler::SetConnection(
    const admin::ConnectionRequest&) {
  return absl::UnimplementedError("this agent cannot connect or disconnect its volumes");
}

absl::StatusOr<admin::VerifyReply> AdminHandler::Verify(const admin::VerifyRequest&) {
  return absl::FailedPreconditionError(
      "verify runs on the primary (it compares both sides through the replication stream)");
}

absl::StatusOr<admin::PromoteReply> AdminHandler::Promote(const admin::PromoteRequest&) {
  return absl::FailedPreconditionError(
      "promote runs on the secondary agent (repl-secondary) that holds the replica; this volume "
      "is already served as a primary here");
}

absl::StatusOr<admin::DemoteReply> AdminHandler::Demote(const admin::DemoteRequest&) {
  return absl::FailedPreconditionError(
      "repl-primary cannot turn its volumes into replicas in place: stop it and start "
      "repl-secondary on the store with --bitmap=FILE (see the README's disaster recovery "
      "runbook); demote works on volumes promoted in a repl-secondary");
}

absl::StatusOr<admin::ResolveReply> AdminHandler::Resolve(const admin::ResolveRequest&) {
  return absl::UnimplementedError("this agent cannot resolve a split brain");
}

absl::StatusOr<admin::SwitchoverReply> AdminHandler::Switchover(const admin::SwitchoverRequest&) {
  return absl::FailedPreconditionError(
      "switchover runs on the volume's primary (it hands the volume to its secondary)");
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& socket_path,
                                                                AdminHandler* handler) {
  if (socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("admin socket path too long: ", socket_path));
  }
  struct stat st;
  if (lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat("admin socket path ", socket_path, " exists and is not a socket"));
    }
    if (SocketIsLive(socket_path)) {
      return absl::AlreadyExistsError(
          absl::StrCat("admin socket ", socket_path, " is in use by a running agent"));
    }
    unlink(socket_path.c_str());  // stale, left by a crash
  }
  auto service = std::make_unique<AdminService>(handler);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", socket_path), grpc::InsecureServerCredentials());
  builder.RegisterService(service.get());
  // The socket is created inside BuildAndStart: a restrictive umask makes
  // it 0600 from birth instead of chmod-ing after a window.
  mode_t old_umask = umask(0077);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on admin socket ", socket_path));
  }
  chmod(socket_path.c_str(), 0600);
  return std::unique_ptr<AdminServer>(
      new GrpcAdminServer(socket_path, std::move(service), std::move(server)));
}

}  // namespace blockrepl
