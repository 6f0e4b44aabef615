// repl-secondary: receives a volume's replication stream and applies it to
// a local store, which is never served to clients while it is a backup.
// Flags and wiring only; the logic lives in Applier and ReplicaService.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "common/admin_server.h"
#include "common/cli_flags.h"
#include "common/file_block_device.h"
#include "common/log.h"
#include "common/metrics/metrics_http_server.h"
#include "common/metrics/status_metrics.h"
#include "common/process.h"
#include "common/units.h"
#include "secondary/applier.h"
#include "secondary/replica_service.h"
#include "secondary/secondary_admin.h"

namespace blockrepl {
namespace {

int Run(int argc, char** argv) {
  CLI::App app{"repl-secondary: receive a volume's replication stream into a local store"};
  std::string volume, store_path, listen, admin_socket, meta_path, size, metrics_listen;
  app.add_option("--volume", volume, "volume name; a primary of another volume is refused")
      ->required();
  app.add_option("--store", store_path, "local store: a file or block device")->required();
  app.add_option("--listen", listen, "replication listen address HOST:PORT")->required();
  app.add_option("--admin-socket", admin_socket, "unix socket for replctl")->required();
  app.add_option("--meta", meta_path, "replica metadata file (default: STORE.meta)");
  app.add_option("--metrics-listen", metrics_listen,
                 "serve Prometheus /metrics and /healthz on HOST:PORT (read-only)")
      ->check(ListenAddressValidator());
  bool rollback = false;
  app.add_flag("--rollback-resync", rollback,
               "the primary is lost mid-resync: roll the image back to its state before the "
               "resync (from the undo log), then exit");
  app.add_option("--size", size, "create the store with this size if it does not exist")
      ->check(SizeValidator());
  if (int code = ParseOrExitCode(app, argc, argv); code >= 0) return code;

  SetLogProgramName("repl-secondary");
  BlockTerminationSignals();
  TuneAllocator();
  auto store_or = FileBlockDevice::Open(store_path, SizeOrDie(size));
  if (!store_or.ok()) {
    LogError(store_or.status().message());
    return 1;
  }
  std::unique_ptr<FileBlockDevice> store = std::move(store_or).value();
  if (meta_path.empty()) {
    struct stat st;
    if (stat(store_path.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
      LogError("--meta is required when the store is a block device");
      return 2;
    }
    meta_path = store_path + ".meta";
  }
  auto meta_or = ReplicaMeta::Load(meta_path);
  ReplicaMeta meta;
  if (meta_or.ok()) {
    meta = *meta_or;
    if (meta.volume != volume || meta.size_bytes != store->Size()) {
      LogError(meta_path, " belongs to volume '", meta.volume, "' of ", meta.size_bytes,
               " bytes, but this secondary is started for volume '", volume, "' with a store of ",
               store->Size(), " bytes; refusing to mix them (move the metadata file away to "
               "start this store as a new replica)");
      return 1;
    }
  } else if (absl::IsNotFound(meta_or.status())) {
    meta.volume = volume;
    meta.size_bytes = store->Size();
    if (absl::Status s = meta.Save(meta_path); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  } else {
    LogError(meta_or.status().message());
    return 1;
  }

  auto undo = UndoLog::Open(meta_path + ".undo", store->Size());
  if (!undo.ok()) {
    LogError(undo.status().message());
    return 1;
  }
  Applier applier(volume, store.get(), meta_path, meta, std::move(undo).value());
  if (rollback) {
    absl::Status s = applier.RollBackInterruptedResync();
    if (!s.ok()) {
      LogError(s.message());
      return 1;
    }
    return 0;
  }
  ReplicaService service({{volume, &applier}});
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    LogError("cannot listen for replication on ", listen);
    return 1;
  }
  SecondaryAdmin admin_handler({{&applier, store_path, meta_path}}, &service);
  auto admin = AdminServer::Start(admin_socket, &admin_handler);
  if (!admin.ok()) {
    LogError(admin.status().message());
    server->Shutdown();
    return 1;
  }
  std::unique_ptr<MetricsHttpServer> metrics;
  if (!metrics_listen.empty()) {
    auto started = MetricsHttpServer::Start(
        metrics_listen,
        [&admin_handler](MetricSet* set) {
          for (const admin::VolumeStatus& v : admin_handler.Status()) {
            AppendVolumeStatusMetrics(v, set);
          }
        },
        [] { return absl::OkStatus(); });
    if (!started.ok()) {
      LogError(started.status().message());
      (*admin)->Shutdown();
      server->Shutdown();
      return 1;
    }
    metrics = std::move(started).value();
  }
  LogInfo("volume '", volume, "' (", FormatBytes(store->Size()), ") in ", store_path,
          ", listening for its primary on ", listen, ", image ",
          meta.consistent ? "consistent"
                          : meta.undo_valid ? "INCONSISTENT (resync target; --rollback-resync can undo it)"
                                            : "INCONSISTENT (full sync target, no undo)",
          meta.followed_generation.empty() ? ", no history yet" : "",
          metrics ? absl::StrCat("; metrics on http://", metrics_listen, "/metrics") : "");

  int sig = WaitForTerminationSignal();
  LogInfo("signal ", sig, ": stopping");
  metrics.reset();
  service.CancelAll();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  if (absl::Status s = applier.Shutdown(); !s.ok()) LogError(s.message());
  (*admin)->Shutdown();
  LogInfo("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace blockrepl

int main(int argc, char** argv) { return blockrepl::Run(argc, argv); }
