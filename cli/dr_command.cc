#include "cli/dr_command.h"

#include <cstdio>

#include "cli/admin_client.h"
#include "cli/json_output.h"

namespace blockrepl {

int RunPromoteCommand(const std::string& admin_socket, const PromoteArgs& args, bool json) {
  AdminClient client(admin_socket);
  admin::PromoteRequest request;
  request.set_volume(args.volume);
  request.set_force(args.force);
  request.set_nbd_listen(args.nbd_listen);
  request.set_peer(args.peer);
  admin::PromoteReply reply;
  // A rollback of an interrupted resync can take a while.
  auto context = client.NewContext(600);
  grpc::Status status = client.stub()->Promote(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
    return 0;
  }
  printf("promoted: clients connect to nbd://%s/%s (data generation %s)%s%s\n",
         reply.nbd_address().c_str(), args.volume.c_str(), reply.generation().c_str(),
         reply.rolled_back() ? "; the interrupted resync was rolled back first" : "",
         reply.forced() ? "; FORCED on an inconsistent image: check the file system" : "");
  return 0;
}

int RunDemoteCommand(const std::string& admin_socket, const std::string& volume, bool force,
                     double timeout_seconds, bool json) {
  AdminClient client(admin_socket);
  admin::DemoteRequest request;
  request.set_volume(volume);
  request.set_force(force);
  request.set_timeout_seconds(timeout_seconds);
  admin::DemoteReply reply;
  auto context = client.NewContext(static_cast<int>(timeout_seconds > 0 ? timeout_seconds : 60) + 30);
  grpc::Status status = client.stub()->Demote(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
  } else if (reply.peer_in_sync()) {
    printf("demoted: a replica again; the peer holds every write (promote it now)\n");
  } else {
    printf("demoted (--force): the peer lacks %llu chunks; they stay flagged here and the peer's "
           "data wins them once it is promoted\n",
           static_cast<unsigned long long>(reply.unsynced_chunks()));
  }
  return 0;
}

int RunResolveCommand(const std::string& admin_socket, const std::string& volume,
                      const std::string& discard, bool json) {
  AdminClient client(admin_socket);
  admin::ResolveRequest request;
  request.set_volume(volume);
  request.set_discard(discard == "local" ? admin::ResolveRequest::LOCAL
                                         : admin::ResolveRequest::REMOTE);
  admin::ResolveReply reply;
  auto context = client.NewContext();
  grpc::Status status = client.stub()->Resolve(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
  } else {
    printf("%s\n", reply.note().c_str());
  }
  return 0;
}

int RunSwitchoverCommand(const std::string& admin_socket, const std::string& volume,
                         double timeout_seconds, bool json) {
  AdminClient client(admin_socket);
  admin::SwitchoverRequest request;
  request.set_volume(volume);
  request.set_timeout_seconds(timeout_seconds);
  admin::SwitchoverReply reply;
  auto context =
      client.NewContext(static_cast<int>(timeout_seconds > 0 ? timeout_seconds : 60) + 60);
  grpc::Status status = client.stub()->Switchover(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
    return 0;
  }
  printf("switched over: clients reconnect to nbd://%s/%s\n%s\n",
         reply.new_primary_nbd_address().c_str(), volume.c_str(), reply.note().c_str());
  return 0;
}

}  // namespace blockrepl
