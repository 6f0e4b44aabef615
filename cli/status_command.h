// `replctl status`: fetches every volume's status from an agent and prints
// it mdstat-style for people, or as one JSON object for scripts.
#pragma once

#include <string>

#include "admin.pb.h"

namespace blockrepl {

// Human-readable block for one volume (multi-line, ends with a newline).
std::string FormatVolumeStatus(const admin::VolumeStatus& v);

// Runs the command; returns the process exit code.
int RunStatusCommand(const std::string& admin_socket, const std::string& volume, bool json);

}  // namespace blockrepl
