#include "cli/connection_command.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/admin_client.h"
#include "cli/json_output.h"

namespace blockrepl {

int RunConnectionCommand(const std::string& admin_socket, const std::string& volume, bool connect,
                         int timeout_seconds, bool json) {
  AdminClient client(admin_socket);
  admin::ConnectionRequest request;
  request.set_volume(volume);
  request.set_connect(connect);
  admin::ConnectionReply reply;
  auto context = client.NewContext();
  grpc::Status status = client.stub()->SetConnection(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);

  // The stream changes state asynchronously: poll until it has (or give up).
  admin::VolumeStatus v;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  bool reached = false;
  while (true) {
    status = client.GetVolume(volume, &v);
    if (!status.ok()) return client.ReportFailure(status);
    reached = connect ? v.connection() == "connected" : v.connection() != "connected";
    if (reached || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (json) {
    printf("%s\n", MessageToJson(v).c_str());
  } else if (reached && connect) {
    printf("%s: connected to %s (%s)\n", v.name().c_str(),
           v.peer().empty() ? "its peer" : v.peer().c_str(), v.sync_state().c_str());
  } else if (reached) {
    printf("%s: disconnected by the operator; %s\n", v.name().c_str(),
           v.role() == "primary"
               ? "writes are marked in the bitmap and resynced after `replctl connect`"
               : "the primary is refused until `replctl connect`");
  }
  if (reached || timeout_seconds == 0) return 0;
  fprintf(stderr, "replctl: %s is still %s after %d s%s%s\n", v.name().c_str(),
          v.connection().c_str(), timeout_seconds, v.last_error().empty() ? "" : ": ",
          v.last_error().c_str());
  return 1;
}

}  // namespace blockrepl
