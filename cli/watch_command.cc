#include "cli/watch_command.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/admin_client.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "cli/status_command.h"

namespace blockrepl {

int RunWatchCommand(const std::string& admin_socket, const std::string& volume,
                    double interval_seconds, int count, bool json) {
  AdminClient client(admin_socket);
  const bool redraw = !json && StdoutIsTerminal();
  for (int i = 0; count == 0 || i < count; ++i) {
    if (i > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(interval_seconds));
    }
    admin::StatusReply reply;
    grpc::Status status = client.GetStatus(volume, &reply);
    if (!status.ok()) return client.ReportFailure(status);
    if (json) {
      printf("%s\n", MessageToJson(reply).c_str());
    } else {
      const std::string now = absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::Now(),
                                               absl::LocalTimeZone());
      // Home + clear screen: the view stays in place like watch(1).
      if (redraw) printf("\033[H\033[2J");
      printf("Every %.1fs: replctl status (%s)   %s\n\n", interval_seconds,
             admin_socket.c_str(), now.c_str());
      for (const admin::VolumeStatus& v : reply.volumes()) {
        printf("%s", FormatVolumeStatus(v).c_str());
      }
      if (!redraw) printf("\n");
    }
    fflush(stdout);
  }
  return 0;
}

}  // namespace blockrepl
