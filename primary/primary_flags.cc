#include "primary/primary_flags.h"

#include <sys/stat.h>

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/agent_command_line.h"
#include "common/cli_flags.h"
#include "common/units.h"

namespace blockrepl {
namespace {

// --bitmap=FILE[,CHUNK_BYTES[,DAEMON_SLEEP_S]] (mdadm's spelling). FILE
// "memory" keeps the bits in memory only (a restart means a full resync).
absl::Status ParseBitmapSpec(const std::string& spec, BitmapSpec* b) {
  std::vector<std::string> parts = absl::StrSplit(spec, ',');
  if (parts.size() > 3) return absl::InvalidArgumentError("--bitmap takes FILE[,CHUNK[,SLEEP]]");
  b->path = parts[0] == "memory" ? "" : parts[0];
  if (parts.size() >= 2 && !parts[1].empty()) {
    auto chunk = ParseSize(parts[1]);
    if (!chunk.ok()) return chunk.status();
    if (*chunk < 4096 || (*chunk & (*chunk - 1)) != 0 || *chunk > (1ull << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bitmap chunk size ", parts[1], " must be a power of two between 4K and 1G"));
    }
    b->chunk_size = static_cast<uint32_t>(*chunk);
    b->chunk_size_given = true;
  }
  if (parts.size() == 3 && !parts[2].empty()) {
    double seconds = 0;
    if (!absl::SimpleAtod(parts[2], &seconds) || seconds <= 0 || seconds > 3600) {
      return absl::InvalidArgumentError(
          absl::StrCat("bitmap daemon sleep '", parts[2], "' must be seconds in (0, 3600]"));
    }
    b->daemon_sleep = absl::Seconds(seconds);
    b->daemon_sleep_given = true;
  }
  return absl::OkStatus();
}

// The raw flag values of one volume (and the agent-wide ones).
struct Flags {
  PrimaryAgentOptions agent;
  PrimaryVolumeOptions volume;
  std::string bitmap_spec, size, max_bytes = "64M", resync_rate, config, checksum = "xxh3";
  std::string bitmap_set_ahead = "0";
  double peer_timeout_s = 15;
  std::string compress = "none";
  std::string on_congestion = "block";
  std::string resync_mode = "bitmap";
  double congestion_timeout_s = 1;
  double batch_linger_s = 0.001;
  uint64_t async_window = 512;
};

// Agent-wide keys: in a config file they go before the first [volume].
const std::vector<std::string> kAgentWideKeys = {"nbd-listen", "nbd-socket", "admin-socket",
                                                 "metrics-listen", "tls-cert", "tls-key",
                                                 "tls-ca", "insecure"};

void DefineFlags(CLI::App& app, Flags& f) {
  PrimaryVolumeOptions& o = f.volume;
  app.add_option("--config", f.config,
                 "read the agent's settings and volumes from FILE (then no other flag)");
  app.add_option("--check-config", f.config, "validate FILE as --config would, then exit");
  app.add_option("--volume", o.volume, "volume name (also the NBD export name)")->required();
  app.add_option("--store", o.store_path, "local store: a file or block device")->required();
  app.add_option("--secondary", o.secondary, "secondary agent HOST:PORT")->required();
  // Hidden (group ""): tests only, see common/fault_injecting_block_device.h.
  app.add_option("--test-inject-faults", o.fault_control,
                 "TEST ONLY: fail store I/O as FILE says (EIO, ENOSPC...)")
      ->group("");
  auto* tcp = app.add_option("--nbd-listen", f.agent.nbd_listen, "serve NBD on HOST:PORT");
  auto* unix_opt = app.add_option("--nbd-socket", f.agent.nbd_socket, "serve NBD on a unix socket");
  tcp->excludes(unix_opt);
  app.add_option("--admin-socket", f.agent.admin_socket, "unix socket for replctl")->required();
  app.add_option("--metrics-listen", f.agent.metrics_listen,
                 "serve Prometheus /metrics and /healthz on HOST:PORT (read-only)")
      ->check(ListenAddressValidator());
  app.add_option("--bitmap", f.bitmap_spec,
                 "write-intent bitmap FILE[,CHUNK_BYTES[,DAEMON_SLEEP_S]]; FILE 'memory' = no file "
                 "(default for a file store: STORE.bitmap)");
  app.add_option("--bitmap-set-ahead", f.bitmap_set_ahead,
                 "a write that sets a new bitmap bit sets its whole aligned group of this many "
                 "bytes in the same flush (0 = off, the default): fewer bitmap flushes under "
                 "random writes, but a crash or failover resyncs whole groups (a disconnect "
                 "still only the chunks written)")
      ->check(SizeValidator())
      ->capture_default_str();
  auto* async_opt = app.add_option("--async", f.async_window, "max writes in flight to the secondary")
                        ->check(CLI::Range(1, 1 << 20))
                        ->capture_default_str();
  app.add_flag("--sync", o.sync, "reply to clients only after the secondary has the write")
      ->excludes(async_opt);
  app.add_option("--max-inflight-bytes", f.max_bytes, "max bytes in flight to the secondary")
      ->check(SizeValidator())
      ->capture_default_str();
  app.add_option("--max-epoch-writes", o.max_epoch_writes,
                 "writes per epoch before an automatic barrier")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--resync-rate", f.resync_rate,
                 "limit resync traffic to BYTES per second (e.g. 50M)")
      ->check(SizeValidator());
  app.add_option("--resync-mode", f.resync_mode,
                 "bitmap: send every flagged chunk; checksum: first compare flagged chunks with "
                 "the secondary's by checksum and send only those that differ (for a full sync "
                 "of a secondary that holds an older copy, or after the bitmap file was lost)")
      ->check(CLI::IsMember({"bitmap", "checksum"}))
      ->capture_default_str();
  app.add_option("--size", f.size, "create the store with this size if it does not exist")
      ->check(SizeValidator());
  app.add_flag("--assume-clean", o.assume_clean,
               "a brand-new secondary already holds the same data: skip the initial full sync");
  app.add_option("--tls-cert", o.tls.cert, "PEM certificate this primary presents (mutual TLS)");
  app.add_option("--tls-key", o.tls.key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", o.tls.ca, "PEM CA bundle the secondary's certificate must chain to");
  app.add_option("--peer-name", o.tls.peer_name,
                 "the secondary's certificate must name this host (SAN or CN)");
  app.add_flag("--insecure", o.tls.insecure,
               "allow plaintext replication to a non-loopback secondary (e.g. over a VPN)");
  app.add_option("--peer-timeout", f.peer_timeout_s,
                 "seconds without an ack (writes in flight) or a keepalive answer before the "
                 "secondary is declared dead: writes are then marked and resynced later")
      ->check(CLI::Range(2.0, 3600.0))
      ->capture_default_str();
  app.add_option("--on-congestion", f.on_congestion,
                 "when the window stays full: block (clients wait for the link) or pull-ahead "
                 "(writes are only marked and resynced when the link catches up; async only)")
      ->check(CLI::IsMember({"block", "pull-ahead"}))
      ->capture_default_str();
  app.add_option("--congestion-timeout", f.congestion_timeout_s,
                 "seconds a write waits for room in a full window before pull-ahead starts")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  app.add_option("--batch-linger", f.batch_linger_s,
                 "async only: seconds a partial batch of writes waits for more before it is "
                 "sent (fewer, larger stream messages; 0 = send as soon as the stream may)")
      ->check(CLI::Range(0.0, 0.1))
      ->capture_default_str();
  app.add_option("--compress", f.compress,
                 "compress replicated payloads: none, lz4, zstd or zstd:LEVEL (1..19); payloads "
                 "that do not compress travel raw")
      ->capture_default_str();
  app.add_option("--checksum", f.checksum,
                 "end-to-end checksum of every replicated payload, verified by the secondary "
                 "before it applies: xxh3 or none")
      ->check(CLI::IsMember({"xxh3", "none"}))
      ->capture_default_str();
  app.add_flag("--force-full-resync", o.bitmap.force_full_resync,
               "replace a bitmap file that is damaged or does not fit, and copy everything");
}

// Checks across flags and converts the raw values; "" or the error.
std::string Finish(Flags& f) {
  PrimaryVolumeOptions& o = f.volume;
  if (f.agent.nbd_listen.empty() == f.agent.nbd_socket.empty()) {
    return "exactly one of --nbd-listen or --nbd-socket is required";
  }
  if (f.bitmap_spec.empty() || f.bitmap_spec[0] == ',') {
    // No FILE: keep the bits beside a file store; a block device has no
    // "beside", so the operator must say where (or 'memory').
    struct stat st;
    const bool block_device = stat(o.store_path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
    if (block_device) return "--bitmap=FILE (or memory) is required for a block-device store";
    f.bitmap_spec = o.store_path + ".bitmap" + f.bitmap_spec;
  }
  if (absl::Status s = ParseBitmapSpec(f.bitmap_spec, &o.bitmap); !s.ok()) {
    return std::string(s.message());
  }
  o.bitmap.set_ahead_bytes = SizeOrDie(f.bitmap_set_ahead);
  if (const uint64_t b = o.bitmap.set_ahead_bytes; (b & (b - 1)) != 0) {
    return "--bitmap-set-ahead must be 0 or a power of two (groups are aligned)";
  }
  o.max_inflight_writes = f.async_window;
  o.checksum = f.checksum == "xxh3";
  o.peer_timeout = absl::Seconds(f.peer_timeout_s);
  auto compression = ParseCompressionSpec(f.compress);
  if (!compression.ok()) return std::string(compression.status().message());
  o.compression = *compression;
  o.pull_ahead = f.on_congestion == "pull-ahead";
  o.congestion_timeout = absl::Seconds(f.congestion_timeout_s);
  // With --sync every write's client waits for its batch's ack: never linger.
  o.batch_linger = o.sync ? absl::ZeroDuration() : absl::Seconds(f.batch_linger_s);
  if (o.pull_ahead && o.sync) {
    return "--on-congestion=pull-ahead needs async replication: with --sync a write is "
           "acknowledged only once the secondary has it";
  }
  o.max_inflight_bytes = SizeOrDie(f.max_bytes);
  o.create_size = SizeOrDie(f.size);
  o.resync_rate = SizeOrDie(f.resync_rate);
  o.resync_by_checksum = f.resync_mode == "checksum";
  if (o.max_inflight_bytes == 0) return "--max-inflight-bytes must be > 0";
  if (absl::Status s = CheckTlsOptions(o.tls, o.secondary); !s.ok()) {
    return std::string(s.message());
  }
  return "";
}

// How repl-primary plugs into the shared command-line driver (common/agent_command_line.h).
struct PrimaryAgent {
  using Flags = blockrepl::Flags;
  static constexpr char kProgram[] = "repl-primary";
  static constexpr char kDescription[] =
      "repl-primary: serve volumes over NBD and replicate them to a secondary";
  static std::vector<std::string> ConfigAgentWideKeys() { return kAgentWideKeys; }
  static void Define(CLI::App& app, Flags& f) { DefineFlags(app, f); }
  static std::string Finish(Flags& f) { return blockrepl::Finish(f); }
  static std::string CheckConfigVolume(const std::string&, const Flags&) { return ""; }
};

}  // namespace

int ParsePrimaryCommandLine(int argc, char** argv, PrimaryAgentOptions* out) {
  return ParseAgentCommandLine<PrimaryAgent>(argc, argv, out);
}

}  // namespace blockrepl
