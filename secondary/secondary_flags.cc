#include "secondary/secondary_flags.h"

#include <sys/stat.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/agent_command_line.h"
#include "common/cli_flags.h"

namespace blockrepl {
namespace {

struct Flags {
  SecondaryAgentOptions agent;
  SecondaryVolumeOptions volume;
  std::string size, config;
};

const std::vector<std::string> kAgentWideKeys = {"listen",  "admin-socket", "metrics-listen",
                                                 "tls-cert", "tls-key",   "tls-ca",
                                                 "insecure", "peer-timeout"};

void DefineFlags(CLI::App& app, Flags& f) {
  app.add_option("--config", f.config,
                 "read the agent's settings and volumes from FILE (then no other flag)");
  app.add_option("--check-config", f.config, "validate FILE as --config would, then exit");
  app.add_option("--volume", f.volume.volume, "volume name; a primary of another volume is refused")
      ->required();
  app.add_option("--store", f.volume.store_path, "local store: a file or block device")
      ->required();
  app.add_option("--listen", f.agent.listen,
                 "replication listen address HOST:PORT (not needed with --rollback-resync)")
      ->check(ListenAddressValidator());
  app.add_option("--admin-socket", f.agent.admin_socket, "unix socket for replctl")->required();
  app.add_option("--meta", f.volume.meta_path, "replica metadata file (default: STORE.meta)");
  // Disaster recovery (README "Disaster recovery runbook").
  app.add_option("--bitmap", f.volume.bitmap_path,
                 "write-intent bitmap file of this store's time as a primary (default: "
                 "STORE.bitmap): an old primary failing back brings its own here; a promoted "
                 "volume keeps its bits in it");
  app.add_option("--nbd-listen", f.volume.nbd_listen,
                 "where `replctl promote` serves this volume over NBD (HOST:PORT)")
      ->check(ListenAddressValidator());
  app.add_option("--peer", f.volume.peer,
                 "once promoted, replicate to this repl-secondary (HOST:PORT: the other site's "
                 "--listen)");
  app.add_option("--store-io", f.volume.store_io,
                 "how the replica writes its store: buffered (through the page cache) or direct "
                 "(aligned writes with O_DIRECT through io_uring, several in flight: no page "
                 "cache and less CPU for small writes, but each batch waits for the disk)")
      ->check(CLI::IsMember({"buffered", "direct"}))
      ->capture_default_str();
  // Hidden (group ""): tests only, see common/fault_injecting_block_device.h.
  app.add_option("--test-inject-faults", f.volume.fault_control,
                 "TEST ONLY: fail store I/O as FILE says (EIO, ENOSPC...)")
      ->group("");
  app.add_option("--metrics-listen", f.agent.metrics_listen,
                 "serve Prometheus /metrics and /healthz on HOST:PORT (read-only)")
      ->check(ListenAddressValidator());
  app.add_flag("--rollback-resync", f.agent.rollback_resync,
               "the primary is lost mid-resync: roll the image back to its state before the "
               "resync (from the undo log), then exit");
  app.add_option("--size", f.size, "create the store with this size if it does not exist")
      ->check(SizeValidator());
  app.add_option("--tls-cert", f.agent.tls.cert, "PEM certificate this secondary presents");
  app.add_option("--tls-key", f.agent.tls.key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", f.agent.tls.ca,
                 "PEM CA bundle a primary's certificate must chain to (client certificates are "
                 "required)");
  app.add_option("--peer-name", f.volume.peer_name,
                 "accept only a primary whose certificate names this host (SAN or CN)");
  app.add_option("--peer-timeout", f.agent.peer_timeout_s,
                 "seconds of silence (no keepalive answer) before a primary's stream is dropped")
      ->check(CLI::Range(2.0, 3600.0))
      ->capture_default_str();
  app.add_flag("--insecure", f.agent.tls.insecure,
               "allow plaintext replication on a non-loopback listen address");
}

// Checks across flags; "" or the error.
std::string Finish(Flags& f) {
  f.volume.create_size = SizeOrDie(f.size);
  struct stat st;
  if (f.volume.meta_path.empty() && stat(f.volume.store_path.c_str(), &st) == 0 &&
      S_ISBLK(st.st_mode)) {
    return "--meta is required when the store is a block device";
  }
  if (f.volume.bitmap_path.empty()) {
    const bool block = stat(f.volume.store_path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
    f.volume.bitmap_path = (block ? f.volume.meta_path : f.volume.store_path) + ".bitmap";
  }
  // A rollback only touches the local store: no listener, no TLS needed.
  if (f.agent.rollback_resync) return "";
  if (f.agent.listen.empty()) return "--listen is required";
  TlsOptions tls = f.agent.tls;
  tls.peer_name = f.volume.peer_name;
  if (absl::Status s = CheckTlsOptions(tls, f.agent.listen); !s.ok()) {
    return std::string(s.message());
  }
  // Once promoted, the volume replicates to --peer with the same credentials:
  // the same rule against plaintext off loopback.
  if (!f.volume.peer.empty()) {
    if (absl::Status s = CheckTlsOptions(tls, f.volume.peer); !s.ok()) {
      return absl::StrCat("--peer: ", s.message());
    }
  }
  return "";
}

// How repl-secondary plugs into the shared command-line driver (common/agent_command_line.h).
struct SecondaryAgent {
  using Flags = blockrepl::Flags;
  static constexpr char kProgram[] = "repl-secondary";
  static constexpr char kDescription[] =
      "repl-secondary: receive volumes' replication streams into local stores";
  static std::vector<std::string> ConfigAgentWideKeys() {
    std::vector<std::string> keys = kAgentWideKeys;
    keys.push_back("rollback-resync");  // a one-shot action, refused below, not a setting
    return keys;
  }
  static void Define(CLI::App& app, Flags& f) { DefineFlags(app, f); }
  static std::string Finish(Flags& f) { return blockrepl::Finish(f); }
  static std::string CheckConfigVolume(const std::string& path, const Flags& f) {
    if (!f.agent.rollback_resync) return "";
    return absl::StrCat(path, ": rollback-resync is a one-shot action: run repl-secondary "
                              "--rollback-resync with flags for that volume");
  }
};

}  // namespace

int ParseSecondaryCommandLine(int argc, char** argv, SecondaryAgentOptions* out) {
  return ParseAgentCommandLine<SecondaryAgent>(argc, argv, out);
}

}  // namespace blockrepl
