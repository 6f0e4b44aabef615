#include "common/service_notify.h"

#include <systemd/sd-daemon.h>

#include "absl/strings/str_cat.h"

namespace blockrepl {

void NotifyReady(const std::string& status) {
  sd_notify(0, absl::StrCat("READY=1\nSTATUS=", status).c_str());
}

void NotifyStopping() { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

}  // namespace blockrepl
