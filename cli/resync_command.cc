#include "cli/resync_command.h"

#include <cstdio>

#include "cli/admin_client.h"
#include "cli/json_output.h"
#include "common/units.h"

namespace blockrepl {

int RunResyncCommand(const std::string& admin_socket, const std::string& volume,
                     const std::string& action, uint64_t rate, bool json) {
  AdminClient client(admin_socket);
  admin::ResyncControlRequest request;
  request.set_volume(volume);
  if (action == "pause") {
    request.set_action(admin::ResyncControlRequest::PAUSE);
  } else if (action == "resume") {
    request.set_action(admin::ResyncControlRequest::RESUME);
  } else {
    request.set_action(admin::ResyncControlRequest::SET_RATE);
    request.set_rate_bytes_per_second(rate);
  }
  admin::ResyncControlReply reply;
  auto context = client.NewContext();
  grpc::Status status = client.stub()->ControlResync(context.get(), request, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
  } else {
    printf("resync %s, rate limit %s\n", reply.paused() ? "paused" : "running",
           reply.rate_bytes_per_second() == 0
               ? "none"
               : (FormatBytes(reply.rate_bytes_per_second()) + "/s").c_str());
  }
  return 0;
}

}  // namespace blockrepl
