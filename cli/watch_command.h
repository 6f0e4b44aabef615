// `replctl watch`: a live view of every volume (status with progress bars
// for resync and verify), redrawn in place on a terminal; on a pipe, one
// timestamped block (or, with --json, one JSON line) per interval.
#pragma once

#include <string>

namespace blockrepl {

// `count` refreshes (0 = until interrupted); exits 1 when the agent goes away.
int RunWatchCommand(const std::string& admin_socket, const std::string& volume,
                    double interval_seconds, int count, bool json);

}  // namespace blockrepl
