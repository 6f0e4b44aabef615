// repl-secondary: receives volumes' replication streams into local stores
// (never serving them to clients). Flags and wiring only; the logic lives in
// ReplicaService (stream), Applier (ordering, durability) and ReplicaVolume.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/admin_server.h"
#include "common/idle_memory_trimmer.h"
#include "common/log.h"
#include "common/metrics/metrics_http_server.h"
#include "common/metrics/status_metrics.h"
#include "common/process.h"
#include "common/service_notify.h"
#include "common/tls/tls_options.h"
#include "secondary/hosted_volume.h"
#include "secondary/replica_service.h"
#include "secondary/replica_volume.h"
#include "secondary/secondary_admin.h"
#include "secondary/secondary_flags.h"

namespace blockrepl {
namespace {

// `service` serves its streams from `*cq` (made here) until service->Stop().
std::unique_ptr<grpc::Server> StartReplicationServer(const std::string& listen,
                                                     const TlsOptions& tls, double peer_timeout_s,
                                                     ReplicaService* service,
                                                     std::unique_ptr<grpc::ServerCompletionQueue>* cq) {
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, MakeServerCredentials(tls), &bound_port);
  builder.RegisterService(service);
  *cq = builder.AddCompletionQueue();
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Ping a silent primary every third of the peer timeout; drop it after
  // another third without an answer.
  const int third_ms = std::max(1000, static_cast<int>(peer_timeout_s * 1000 / 3));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, third_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, third_ms);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) return nullptr;
  service->Start(cq->get());
  return server;
}

int Run(int argc, char** argv) {
  ChooseGrpcPoller();  // before any gRPC object
  ChooseGrpcReadBuffers();
  SecondaryAgentOptions options;
  if (int code = ParseSecondaryCommandLine(argc, argv, &options); code >= 0) return code;

  SetLogProgramName("repl-secondary");
  BlockTerminationSignals();
  TuneAllocator();
  IdleMemoryTrimmer memory_trimmer;  // gives memory back after bursts, never under load
  if (options.tls.enabled()) {
    if (absl::Status s = CheckTlsFiles(options.tls); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  }
  std::vector<std::unique_ptr<ReplicaVolume>> volumes;
  for (const SecondaryVolumeOptions& o : options.volumes) {
    auto volume = ReplicaVolume::Open(o);
    if (!volume.ok()) {
      LogError(volume.status().message());
      return 1;
    }
    volumes.push_back(std::move(volume).value());
  }
  if (options.rollback_resync) {
    absl::Status s = volumes.front()->applier()->RollBackInterruptedResync();
    if (!s.ok()) {
      LogError(s.message());
      return 1;
    }
    return 0;
  }

  std::vector<std::unique_ptr<HostedVolume>> hosted;
  std::map<std::string, Applier*> appliers;
  std::map<std::string, std::string> peer_names;
  std::vector<HostedVolume*> admin_volumes;
  for (size_t i = 0; i < volumes.size(); ++i) {
    auto& v = volumes[i];
    appliers[v->applier()->volume()] = v->applier();
    peer_names[v->applier()->volume()] = options.volumes[i].peer_name;
    hosted.push_back(std::make_unique<HostedVolume>(options.volumes[i], options.tls,
                                                    options.peer_timeout_s, std::move(v)));
    admin_volumes.push_back(hosted.back().get());
  }
  volumes.clear();  // owned by `hosted` now
  for (auto& h : hosted) {
    if (absl::Status s = h->ResumeIfPromoted(); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  }
  ReplicaService service(appliers, peer_names);
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  std::unique_ptr<grpc::Server> server =
      StartReplicationServer(options.listen, options.tls, options.peer_timeout_s, &service, &cq);
  if (server == nullptr) {
    LogError("cannot listen for replication on ", options.listen);
    return 1;
  }
  auto stop_server = [&] {
    service.CancelAll();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server->Wait();
    service.Stop();  // after the server: drains the streams' queue
  };
  SecondaryAdmin admin_handler(admin_volumes, &service);
  auto admin = AdminServer::Start(options.admin_socket, &admin_handler);
  if (!admin.ok()) {
    LogError(admin.status().message());
    stop_server();
    return 1;
  }
  std::unique_ptr<MetricsHttpServer> metrics;
  if (!options.metrics_listen.empty()) {
    auto started = MetricsHttpServer::Start(
        options.metrics_listen,
        [&admin_handler](MetricSet* set) {
          for (const admin::VolumeStatus& v : admin_handler.Status()) {
            AppendVolumeStatusMetrics(v, set);
          }
        },
        [] { return absl::OkStatus(); });
    if (!started.ok()) {
      LogError(started.status().message());
      (*admin)->Shutdown();
      stop_server();
      return 1;
    }
    metrics = std::move(started).value();
  }
  for (const auto& h : hosted) {
    LogInfo(h->replica()->StartupNote(), "; listening for its primary on ", options.listen);
  }
  LogInfo("replication over ", DescribeTransport(options.tls, options.listen));
  if (metrics) {
    const std::string host = options.metrics_listen.substr(0, options.metrics_listen.rfind(':'));
    LogInfo("metrics on http://", host, ":", metrics->port(), "/metrics");
  }
  NotifyReady(absl::StrCat("receiving ", volumes.size(), " volume(s) on ", options.listen));

  int sig = WaitForTerminationSignal([&options] {
    // gRPC re-reads the files by itself (within a second); say now whether
    // what is on disk is usable, so a bad renewal is noticed at once.
    if (!options.tls.enabled()) return;
    absl::Status s = CheckTlsFiles(options.tls);
    if (s.ok()) {
      LogInfo("SIGHUP: certificates in ", options.tls.cert, " are valid; new connections use them");
    } else {
      LogError("SIGHUP: ", s.message(),
               "; live streams keep their sessions, new handshakes will fail until fixed");
    }
  });
  LogInfo("signal ", sig, ": stopping");
  NotifyStopping();
  metrics.reset();
  stop_server();
  for (auto& h : hosted) {
    h->Shutdown();  // a promoted volume stops serving first
    if (absl::Status s = h->applier()->Shutdown(); !s.ok()) LogError(s.message());
  }
  (*admin)->Shutdown();
  LogInfo("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace blockrepl

int main(int argc, char** argv) { return blockrepl::Run(argc, argv); }
