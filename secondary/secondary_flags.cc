#include "secondary/secondary_flags.h"

#include <sys/stat.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
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
  // A rollback only touches the local store: no listener, no TLS needed.
  if (f.agent.rollback_resync) return "";
  if (f.agent.listen.empty()) return "--listen is required";
  TlsOptions tls = f.agent.tls;
  tls.peer_name = f.volume.peer_name;
  if (absl::Status s = CheckTlsOptions(tls, f.agent.listen); !s.ok()) {
    return std::string(s.message());
  }
  return "";
}

constexpr char kDescription[] =
    "repl-secondary: receive volumes' replication streams into local stores";

int ParseConfig(const std::string& path, SecondaryAgentOptions* out) {
  auto file = LoadConfigFile(path);
  if (!file.ok()) {
    fprintf(stderr, "repl-secondary: %s\n", std::string(file.status().message()).c_str());
    return 2;
  }
  for (const ConfigSection& section : file->volumes) {
    CLI::App app{kDescription, "repl-secondary"};
    Flags f;
    DefineFlags(app, f);
    std::vector<std::string> agent_wide = kAgentWideKeys;
    agent_wide.push_back("rollback-resync");  // a one-shot action, not a setting
    std::string error = ParseConfigVolume(app, *file, section, agent_wide);
    if (error.empty() && f.agent.rollback_resync) {
      error = absl::StrCat(path, ": rollback-resync is a one-shot action: run repl-secondary "
                                 "--rollback-resync with flags for that volume");
    }
    if (error.empty()) error = Finish(f);
    if (!error.empty()) {
      fprintf(stderr, "repl-secondary: %s\n", error.c_str());
      return 2;
    }
    out->listen = f.agent.listen;
    out->admin_socket = f.agent.admin_socket;
    out->metrics_listen = f.agent.metrics_listen;
    out->tls = f.agent.tls;
    out->peer_timeout_s = f.agent.peer_timeout_s;
    std::vector<std::pair<std::string, std::string>> stores;  // volume, store
    for (const auto& v : out->volumes) stores.emplace_back(v.volume, v.store_path);
    if (std::string shared = SharedStoreError(path, stores, f.volume.volume, f.volume.store_path);
        !shared.empty()) {
      fprintf(stderr, "repl-secondary: %s\n", shared.c_str());
      return 2;
    }
    out->volumes.push_back(f.volume);
  }
  return -1;
}

}  // namespace

int ParseSecondaryCommandLine(int argc, char** argv, SecondaryAgentOptions* out) {
  std::string config, usage_error;
  bool check_only = false;
  if (FindConfigArgument(argc, argv, &config, &check_only, &usage_error)) {
    if (!usage_error.empty()) {
      fprintf(stderr, "repl-secondary: %s\n", usage_error.c_str());
      return 2;
    }
    const int code = ParseConfig(config, out);
    if (code >= 0 || !check_only) return code;
    std::vector<std::string> names;
    for (const auto& v : out->volumes) names.push_back(v.volume);
    return ReportConfigChecked(config, names);
  }
  CLI::App app{kDescription, "repl-secondary"};
  Flags f;
  DefineFlags(app, f);
  if (int code = ParseOrExitCode(app, argc, argv); code >= 0) return code;
  if (std::string error = Finish(f); !error.empty()) {
    fprintf(stderr, "repl-secondary: %s\n", error.c_str());
    return 2;
  }
  *out = f.agent;
  out->volumes = {f.volume};
  return -1;
}

}  // namespace blockrepl
