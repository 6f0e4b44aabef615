#include "cli/wait_command.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/admin_client.h"
#include "cli/json_output.h"

namespace blockrepl {
namespace {

// The agents' own summary, which implies connected: on the primary, nothing
// dirty and nothing in flight; on the secondary, a consistent image.
bool InSync(const admin::VolumeStatus& v) { return v.sync_state() == "in_sync"; }

}  // namespace

int RunWaitCommand(const std::string& admin_socket, const std::string& volume,
                   double timeout_seconds, double interval_seconds, bool json) {
  AdminClient client(admin_socket);
  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(interval_seconds);
  admin::VolumeStatus v;
  while (true) {
    grpc::Status status = client.GetVolume(volume, &v);
    if (!status.ok()) return client.ReportFailure(status);
    if (InSync(v)) break;
    if (v.disconnected_by_operator()) {
      // It would never come: the stream stays down until `replctl connect`.
      fprintf(stderr, "replctl: %s is disconnected by the operator (replctl connect first)\n",
              v.name().c_str());
      return 1;
    }
    const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
    if (timeout_seconds > 0 && waited.count() >= timeout_seconds) {
      std::string where = v.sync_state();
      if (v.sync_state() == "resyncing" && v.resync_total_chunks() > 0) {
        where += " (" + std::to_string(v.resync_done_chunks()) + " of " +
                 std::to_string(v.resync_total_chunks()) + " chunks)";
      }
      fprintf(stderr, "replctl: %s is still %s, %s, after %g s%s%s\n", v.name().c_str(),
              v.connection().c_str(), where.c_str(), timeout_seconds,
              v.last_error().empty() ? "" : ": ", v.last_error().c_str());
      return 1;
    }
    std::this_thread::sleep_for(interval);
  }
  if (json) {
    printf("%s\n", MessageToJson(v).c_str());
  } else {
    const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
    printf("%s: in sync with %s (waited %.2f s)\n", v.name().c_str(),
           v.peer().empty() ? "its peer" : v.peer().c_str(), waited.count());
  }
  return 0;
}

}  // namespace blockrepl
