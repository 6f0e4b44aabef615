// `replctl wait`: blocks until a volume is connected and in sync, like
// `mdadm --wait` for an md resync. For scripts: a planned switchover, a
// backup of the secondary, a benchmark that times a resync. One admin
// channel is polled in-process, so a fine interval costs the agent an RPC
// per poll, not a process start.
#pragma once

#include <string>

namespace blockrepl {

// Returns the exit code: 0 once in sync; 1 if `timeout_seconds` (0: no
// limit) passed first, the volume is held down by `replctl disconnect`, or
// the agent is gone.
int RunWaitCommand(const std::string& admin_socket, const std::string& volume,
                   double timeout_seconds, double interval_seconds, bool json);

}  // namespace blockrepl
