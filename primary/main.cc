// repl-primary: serves local stores over NBD and replicates every write to
// a secondary agent. Flags and wiring only; the logic lives in
// PrimaryVolume (replication) and nbd::NbdServer (protocol).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/admin_server.h"
#include "common/idle_memory_trimmer.h"
#include "common/log.h"
#include "common/metrics/metrics_http_server.h"
#include "common/process.h"
#include "common/service_notify.h"
#include "common/units.h"
#include "primary/nbd/nbd_server.h"
#include "primary/primary_admin.h"
#include "primary/primary_flags.h"
#include "primary/primary_metrics.h"
#include "primary/primary_volume.h"

namespace blockrepl {
namespace {

// Owns what Run() started, and stops it in reverse order on every path.
struct Agent {
  std::vector<std::unique_ptr<PrimaryVolume>> volumes;
  std::vector<std::unique_ptr<nbd::Stats>> nbd_stats;  // per volume, same order
  std::unique_ptr<AdminServer> admin;
  std::unique_ptr<nbd::NbdServer> nbd;
  std::unique_ptr<MetricsHttpServer> metrics;

  void Stop() {
    metrics.reset();  // scrapes read the volumes: stop them first
    if (nbd) nbd->Stop();  // finishes requests in flight
    nbd.reset();
    if (admin) admin->Shutdown();  // no operator command may race with the shutdown
    admin.reset();
    for (auto& v : volumes) v->Shutdown();
  }
  ~Agent() { Stop(); }
};

int Run(int argc, char** argv) {
  ChooseGrpcPoller();  // before any gRPC object
  ChooseGrpcReadBuffers();
  PrimaryAgentOptions options;
  if (int code = ParsePrimaryCommandLine(argc, argv, &options); code >= 0) return code;

  SetLogProgramName("repl-primary");
  BlockTerminationSignals();
  TuneAllocator();
  IdleMemoryTrimmer memory_trimmer;  // gives memory back after bursts, never under load
  for (const PrimaryVolumeOptions& o : options.volumes) {
    if (!o.tls.enabled()) continue;
    if (absl::Status s = CheckTlsFiles(o.tls); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  }
  Agent agent;
  std::vector<PrimaryVolume*> volumes;
  for (const PrimaryVolumeOptions& o : options.volumes) {
    auto volume = PrimaryVolume::Create(o);
    if (!volume.ok()) {
      LogError(volume.status().message());
      return 1;
    }
    volumes.push_back(volume->get());
    agent.volumes.push_back(std::move(volume).value());
    agent.nbd_stats.push_back(std::make_unique<nbd::Stats>());
  }

  PrimaryAdmin admin_handler(volumes);
  auto admin = AdminServer::Start(options.admin_socket, &admin_handler);
  if (!admin.ok()) {
    LogError(admin.status().message());
    return 1;
  }
  agent.admin = std::move(admin).value();
  for (PrimaryVolume* v : volumes) v->Start();

  nbd::ServerOptions nbd_options;
  nbd_options.tcp_listen = options.nbd_listen;
  nbd_options.unix_socket = options.nbd_socket;
  std::vector<nbd::Export> exports;
  for (size_t i = 0; i < volumes.size(); ++i) {
    PrimaryVolume* v = volumes[i];
    nbd::Export exp;
    exp.stats = agent.nbd_stats[i].get();
    exp.name = v->options().volume;
    exp.description = absl::StrCat("blockrepl volume ", exp.name, " replicated to ",
                                   v->options().secondary);
    exp.device = v->device();
    exp.preferred_block_size = 4096;
    exports.push_back(exp);
  }
  auto server = nbd::NbdServer::Start(nbd_options, exports);
  if (!server.ok()) {
    LogError(server.status().message());
    return 1;
  }
  agent.nbd = std::move(server).value();

  if (!options.metrics_listen.empty()) {
    const nbd::Stats* server_stats = &agent.nbd->stats();
    std::vector<const nbd::Stats*> volume_stats;
    for (const auto& s : agent.nbd_stats) volume_stats.push_back(s.get());
    auto metrics = MetricsHttpServer::Start(
        options.metrics_listen,
        [volumes, volume_stats, server_stats](MetricSet* set) {
          for (size_t i = 0; i < volumes.size(); ++i) {
            AppendPrimaryMetrics(volumes[i]->Status(), volumes[i]->ack_latency(),
                                 *volume_stats[i], *server_stats, set);
          }
        },
        [] { return absl::OkStatus(); });
    if (!metrics.ok()) {
      LogError(metrics.status().message());
      return 1;
    }
    agent.metrics = std::move(metrics).value();
  }

  const std::string address = agent.nbd->address();
  for (PrimaryVolume* v : volumes) {
    const PrimaryVolumeOptions& o = v->options();
    LogInfo("volume '", o.volume, "' (", FormatBytes(v->device()->Size()), ") from ",
            o.store_path, " replicating to ", o.secondary, " (",
            o.sync ? std::string("sync")
                   : absl::StrCat("async, window ", o.max_inflight_writes, " writes / ",
                                  FormatBytes(o.max_inflight_bytes)),
            "); NBD on ",
            options.nbd_socket.empty()
                ? absl::StrCat("nbd://", address, "/", o.volume)
                : absl::StrCat("nbd+unix:///", o.volume, "?socket=", address),
            "; replication over ", DescribeTransport(o.tls, o.secondary));
  }
  if (agent.metrics) {
    const std::string host = options.metrics_listen.substr(0, options.metrics_listen.rfind(':'));
    LogInfo("metrics on http://", host, ":", agent.metrics->port(), "/metrics");
  }
  NotifyReady(absl::StrCat("serving ", volumes.size(), " volume(s) on NBD ", address));

  int sig = WaitForTerminationSignal([&options] {
    // gRPC re-reads the files by itself (within a second); say now whether
    // what is on disk is usable, so a bad renewal is noticed at once.
    for (const PrimaryVolumeOptions& o : options.volumes) {
      if (!o.tls.enabled()) continue;
      absl::Status s = CheckTlsFiles(o.tls);
      if (s.ok()) {
        LogInfo("SIGHUP: volume '", o.volume, "': certificates in ", o.tls.cert,
                " are valid; new connections use them");
      } else {
        LogError("SIGHUP: volume '", o.volume, "': ", s.message(),
                 "; the stream keeps its current session, new handshakes will fail until fixed");
      }
    }
  });
  LogInfo("signal ", sig, ": stopping");
  NotifyStopping();
  agent.Stop();
  LogInfo("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace blockrepl

int main(int argc, char** argv) { return blockrepl::Run(argc, argv); }
