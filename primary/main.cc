// repl-primary: serves a local store over NBD and replicates every write to
// a secondary agent. Flags and wiring only; the logic lives in
// PrimaryVolume (replication) and nbd::NbdServer (protocol).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/admin_server.h"
#include "common/cli_flags.h"
#include "common/log.h"
#include "common/metrics/metrics_http_server.h"
#include "common/process.h"
#include "common/units.h"
#include "primary/nbd/nbd_server.h"
#include "primary/primary_admin.h"
#include "primary/primary_metrics.h"
#include "primary/primary_volume.h"

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

int Run(int argc, char** argv) {
  CLI::App app{"repl-primary: serve a volume over NBD and replicate it to a secondary"};
  PrimaryVolumeOptions o;
  std::string nbd_listen, nbd_socket, admin_socket, bitmap_spec, size, max_bytes = "64M";
  std::string metrics_listen;
  uint64_t async_window = 512;
  app.add_option("--volume", o.volume, "volume name (also the NBD export name)")->required();
  app.add_option("--store", o.store_path, "local store: a file or block device")->required();
  app.add_option("--secondary", o.secondary, "secondary agent HOST:PORT")->required();
  auto* tcp = app.add_option("--nbd-listen", nbd_listen, "serve NBD on HOST:PORT");
  auto* unix_opt = app.add_option("--nbd-socket", nbd_socket, "serve NBD on a unix socket");
  tcp->excludes(unix_opt);
  app.add_option("--admin-socket", admin_socket, "unix socket for replctl")->required();
  app.add_option("--metrics-listen", metrics_listen,
                 "serve Prometheus /metrics and /healthz on HOST:PORT (read-only)")
      ->check(ListenAddressValidator());
  app.add_option("--bitmap", bitmap_spec,
                 "write-intent bitmap FILE[,CHUNK_BYTES[,DAEMON_SLEEP_S]]; FILE 'memory' = no file "
                 "(default for a file store: STORE.bitmap)");
  auto* async_opt = app.add_option("--async", async_window, "max writes in flight to the secondary")
                        ->check(CLI::Range(1, 1 << 20))
                        ->capture_default_str();
  app.add_flag("--sync", o.sync, "reply to clients only after the secondary has the write")
      ->excludes(async_opt);
  app.add_option("--max-inflight-bytes", max_bytes, "max bytes in flight to the secondary")
      ->check(SizeValidator())
      ->capture_default_str();
  app.add_option("--max-epoch-writes", o.max_epoch_writes,
                 "writes per epoch before an automatic barrier")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  std::string resync_rate;
  app.add_option("--resync-rate", resync_rate, "limit resync traffic to BYTES per second (e.g. 50M)")
      ->check(SizeValidator());
  app.add_option("--size", size, "create the store with this size if it does not exist")
      ->check(SizeValidator());
  app.add_flag("--assume-clean", o.assume_clean,
               "a brand-new secondary already holds the same data: skip the initial full sync");
  app.add_flag("--force-full-resync", o.bitmap.force_full_resync,
               "replace a bitmap file that is damaged or does not fit, and copy everything");
  if (int code = ParseOrExitCode(app, argc, argv); code >= 0) return code;
  if (nbd_listen.empty() == nbd_socket.empty()) {
    fprintf(stderr, "repl-primary: exactly one of --nbd-listen or --nbd-socket is required\n");
    return 2;
  }
  if (bitmap_spec.empty() || bitmap_spec[0] == ',') {
    // No FILE: keep the bits beside a file store; a block device has no
    // "beside", so the operator must say where (or 'memory').
    struct stat st;
    const bool block_device = stat(o.store_path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
    if (block_device) {
      fprintf(stderr, "repl-primary: --bitmap=FILE (or memory) is required for a block-device store\n");
      return 2;
    }
    bitmap_spec = o.store_path + ".bitmap" + bitmap_spec;
  }
  if (absl::Status s = ParseBitmapSpec(bitmap_spec, &o.bitmap); !s.ok()) {
    fprintf(stderr, "repl-primary: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  o.max_inflight_writes = async_window;
  o.max_inflight_bytes = SizeOrDie(max_bytes);
  o.create_size = SizeOrDie(size);
  o.resync_rate = SizeOrDie(resync_rate);
  if (o.max_inflight_bytes == 0) {
    fprintf(stderr, "repl-primary: --max-inflight-bytes must be > 0\n");
    return 2;
  }

  SetLogProgramName("repl-primary");
  BlockTerminationSignals();
  TuneAllocator();
  auto volume_or = PrimaryVolume::Create(o);
  if (!volume_or.ok()) {
    LogError(volume_or.status().message());
    return 1;
  }
  std::unique_ptr<PrimaryVolume> volume = std::move(volume_or).value();

  PrimaryAdmin admin_handler({volume.get()});
  auto admin = AdminServer::Start(admin_socket, &admin_handler);
  if (!admin.ok()) {
    LogError(admin.status().message());
    return 1;
  }
  volume->Start();

  nbd::ServerOptions nbd_options;
  nbd_options.tcp_listen = nbd_listen;
  nbd_options.unix_socket = nbd_socket;
  nbd::Export exp;
  exp.name = o.volume;
  exp.description = absl::StrCat("blockrepl volume ", o.volume, " replicated to ", o.secondary);
  exp.device = volume->device();
  exp.preferred_block_size = 4096;
  auto server = nbd::NbdServer::Start(nbd_options, {exp});
  if (!server.ok()) {
    LogError(server.status().message());
    (*admin)->Shutdown();
    volume->Shutdown();
    return 1;
  }
  std::unique_ptr<MetricsHttpServer> metrics;
  if (!metrics_listen.empty()) {
    const PrimaryVolume* v = volume.get();
    const nbd::Stats* nbd_stats = &(*server)->stats();
    auto started = MetricsHttpServer::Start(
        metrics_listen,
        [v, nbd_stats](MetricSet* set) {
          AppendPrimaryMetrics(v->Status(), v->ack_latency(), *nbd_stats, set);
        },
        [] { return absl::OkStatus(); });
    if (!started.ok()) {
      LogError(started.status().message());
      (*server)->Stop();
      (*admin)->Shutdown();
      volume->Shutdown();
      return 1;
    }
    metrics = std::move(started).value();
  }
  const std::string address = (*server)->address();
  LogInfo("volume '", o.volume, "' (", FormatBytes(volume->device()->Size()), ") from ",
          o.store_path, " replicating to ", o.secondary, " (",
          o.sync ? std::string("sync") : absl::StrCat("async, window ", o.max_inflight_writes,
                                                     " writes / ", FormatBytes(o.max_inflight_bytes)),
          "); NBD on ",
          nbd_socket.empty() ? absl::StrCat("nbd://", address, "/", o.volume)
                             : absl::StrCat("nbd+unix:///", o.volume, "?socket=", address),
          metrics ? absl::StrCat("; metrics on http://", metrics_listen, "/metrics") : "");

  int sig = WaitForTerminationSignal();
  LogInfo("signal ", sig, ": stopping");
  metrics.reset();  // scrapes read the volume: stop them first
  (*server)->Stop();  // finishes requests in flight
  (*admin)->Shutdown();  // no operator command may race with the shutdown
  volume->Shutdown();
  LogInfo("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace blockrepl

int main(int argc, char** argv) { return blockrepl::Run(argc, argv); }
