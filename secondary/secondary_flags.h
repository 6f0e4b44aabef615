// repl-secondary's command-line contract: flags for one volume, or
// `--config FILE` for several (common/config_file.h), both checked by the
// same flag definitions. Only main() calls this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/tls/tls_options.h"

namespace blockrepl {

struct SecondaryVolumeOptions {
  std::string volume;
  std::string store_path;
  std::string meta_path;     // "" = STORE.meta (file stores only)
  uint64_t create_size = 0;  // create the store file with this size if missing
  std::string peer_name;     // "" = any certificate from the CA; else it must name this
  std::string bitmap_path;    // own bitmap (promotion, fail back); "" = STORE.bitmap
  std::string nbd_listen;     // where a promoted volume is served ("" = promote must say)
  std::string peer;           // where a promoted volume replicates to ("" = nowhere yet)
  std::string fault_control; // test only: --test-inject-faults FILE (see FaultInjectingBlockDevice)
  // How the replica writes its store: "buffered" (the page cache) or
  // "direct" (O_DIRECT through io_uring, secondary/direct_write_queue.h).
  std::string store_io = "buffered";
};

struct SecondaryAgentOptions {
  std::string listen;          // replication HOST:PORT
  std::string admin_socket;
  std::string metrics_listen;  // "" = no /metrics
  bool rollback_resync = false;  // one-shot: roll back, then exit (flags only)
  TlsOptions tls;                // peer_name unused here: it is per volume
  double peer_timeout_s = 15;    // keepalive: a silent primary is dropped after this
  std::vector<SecondaryVolumeOptions> volumes;
};

// -1 to go on; otherwise the exit code (0 after --help, 2 for a usage or
// configuration error, already reported on stderr).
int ParseSecondaryCommandLine(int argc, char** argv, SecondaryAgentOptions* out);

}  // namespace blockrepl
