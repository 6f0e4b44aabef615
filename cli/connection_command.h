// `replctl connect|disconnect`: lets a volume's replication stream come up,
// or cuts it and keeps it down (writes go on being marked in the bitmap and
// are resynced after `connect`). Works on either agent.
#pragma once

#include <string>

namespace blockrepl {

// Waits up to `timeout_seconds` (0: no wait) for the stream to reach the
// asked state; returns the exit code (1 if it did not).
int RunConnectionCommand(const std::string& admin_socket, const std::string& volume, bool connect,
                         int timeout_seconds, bool json);

}  // namespace blockrepl
