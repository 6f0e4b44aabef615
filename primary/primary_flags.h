// repl-primary's command-line contract: flags for one volume, or
// `--config FILE` for several (common/config_file.h), both checked by the
// same flag definitions. Only main() calls this.
#pragma once

#include <string>
#include <vector>

#include "primary/primary_volume.h"

namespace blockrepl {

struct PrimaryAgentOptions {
  std::string nbd_listen;      // HOST:PORT, or
  std::string nbd_socket;      // a unix socket path
  std::string admin_socket;
  std::string metrics_listen;  // "" = no /metrics
  std::vector<PrimaryVolumeOptions> volumes;
};

// -1 to go on; otherwise the exit code (0 after --help, 2 for a usage or
// configuration error, already reported on stderr).
int ParsePrimaryCommandLine(int argc, char** argv, PrimaryAgentOptions* out);

}  // namespace blockrepl
