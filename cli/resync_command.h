// `replctl resync pause|resume|rate BYTES_PER_S`: operator control of a
// primary's resync through its admin socket.
#pragma once

#include <string>

namespace blockrepl {

// `action` is "pause", "resume" or "rate"; `rate` is used for "rate".
int RunResyncCommand(const std::string& admin_socket, const std::string& volume,
                     const std::string& action, uint64_t rate, bool json);

}  // namespace blockrepl
