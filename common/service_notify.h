// systemd readiness protocol (Type=notify units): tells the service manager
// when the agent serves, what it is doing, and when it stops. A no-op when
// not started by systemd ($NOTIFY_SOCKET unset). Thread-safe.
#pragma once

#include <string>

namespace blockrepl {

// READY=1 plus a one-line STATUS= shown by `systemctl status`.
void NotifyReady(const std::string& status);
void NotifyStopping();

}  // namespace blockrepl
