#include "cli/status_command.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "admin.grpc.pb.h"
#include "cli/admin_client.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "common/units.h"

namespace blockrepl {

std::string FormatVolumeStatus(const admin::VolumeStatus& v) {
  std::string out = absl::StrFormat("%s : %s, %s, %s", v.name(), v.role(), v.connection(),
                                    v.sync_state());
  if (v.role() == "primary") absl::StrAppend(&out, ", ", v.mode());
  if (v.role() == "secondary") absl::StrAppend(&out, v.consistent() ? ", consistent" : ", INCONSISTENT");
  if (v.disconnected_by_operator()) absl::StrAppend(&out, " (by the operator: replctl connect)");
  if (v.promoted()) absl::StrAppend(&out, ", PROMOTED (nbd ", v.nbd_address(), ")");
  if (v.role() == "handed-over") absl::StrAppend(&out, " to nbd ", v.nbd_address());
  if (v.split_brain()) absl::StrAppend(&out, ", SPLIT BRAIN (replctl resolve)");
  if (!v.resolution().empty()) absl::StrAppend(&out, ", resolution ", v.resolution(), " pending");
  absl::StrAppend(&out, "\n");
  absl::StrAppendFormat(&out, "      %s (%d bytes) store %s, peer %s\n", FormatBytes(v.size_bytes()),
                        v.size_bytes(), v.store(), v.peer().empty() ? "-" : v.peer());
  if (v.role() == "primary") {
    absl::StrAppendFormat(&out, "      %s: %d/%d writes, %s/%s in flight (peak %d writes, %s)\n",
                          v.mode(), v.inflight_writes(), v.max_inflight_writes(),
                          FormatBytes(v.inflight_bytes()), FormatBytes(v.max_inflight_bytes()),
                          v.peak_inflight_writes(), FormatBytes(v.peak_inflight_bytes()));
    absl::StrAppendFormat(&out, "      bitmap: %d/%d pages [%dKB], %dKB chunk, %s\n",
                          v.bitmap_dirty_pages(), v.bitmap_pages(), v.bitmap_dirty_pages() * 4,
                          v.chunk_size() / 1024,
                          v.bitmap_file().empty() ? "in memory" : "file: " + v.bitmap_file());
    absl::StrAppendFormat(&out, "      dirty: %d chunks (%s), %d bits set, %d bitmap flushes\n",
                          v.dirty_chunks(), FormatBytes(v.dirty_chunks() * v.chunk_size()),
                          v.bitmap_bits_set(), v.bitmap_flushes_total());
    if (v.sync_state() == "resyncing" && v.resync_total_bytes() > 0) {
      double fraction = static_cast<double>(v.resync_done_bytes()) / v.resync_total_bytes();
      absl::StrAppendFormat(&out, "      %s  resync = %.1f%% (%d/%d chunks, %s/%s) %s/s eta %s\n",
                            ProgressBar(fraction, 20), fraction * 100, v.resync_done_chunks(),
                            v.resync_total_chunks(), FormatBytes(v.resync_done_bytes()),
                            FormatBytes(v.resync_total_bytes()),
                            FormatBytes(static_cast<uint64_t>(v.resync_rate_bytes_per_second())),
                            FormatDuration(v.resync_eta_seconds()));
    }
    if (v.ahead()) {
      absl::StrAppendFormat(&out, "      AHEAD (pull-ahead): the link is congested, %d writes only "
                            "marked so far; the resync catches up\n", v.ahead_writes_total());
    }
    if (v.verify_active() && v.verify_total_chunks() > 0) {
      double fraction = static_cast<double>(v.verify_done_chunks()) / v.verify_total_chunks();
      absl::StrAppendFormat(&out, "      %s  verify = %.1f%% (%d/%d chunks), %d differ\n",
                            ProgressBar(fraction, 20), fraction * 100, v.verify_done_chunks(),
                            v.verify_total_chunks(), v.verify_differing_chunks());
    }
    if (v.resync_paused() || v.resync_rate_limit_bytes_per_second() > 0) {
      absl::StrAppendFormat(&out, "      resync control: %s, rate limit %s\n",
                            v.resync_paused() ? "PAUSED (replctl resync resume)" : "running",
                            v.resync_rate_limit_bytes_per_second() == 0
                                ? std::string("none")
                                : FormatBytes(v.resync_rate_limit_bytes_per_second()) + "/s");
    }
    absl::StrAppendFormat(&out, "      replicated: %d writes, %s; resynced %d chunks, %s; seq sent "
                          "%d, applied %d, durable %d\n",
                          v.replicated_writes_total(), FormatBytes(v.replicated_bytes_total()),
                          v.resynced_chunks_total(), FormatBytes(v.resynced_bytes_total()),
                          v.sent_seq(), v.acked_seq(),
                          v.durable_seq());
  } else {
    absl::StrAppendFormat(&out, "      applied: %d writes, %s; resync %s; seq applied %d, "
                          "durable %d\n",
                          v.replicated_writes_total(), FormatBytes(v.replicated_bytes_total()),
                          FormatBytes(v.resynced_bytes_total()), v.applied_seq(), v.durable_seq());
    if (!v.consistent()) {
      absl::StrAppendFormat(&out, "      undo log: %s, %s\n", FormatBytes(v.undo_log_bytes()),
                            v.undo_available()
                                ? "the interrupted resync can be rolled back (--rollback-resync)"
                                : "no rollback possible (full sync target)");
    }
  }
  if (!v.last_error().empty()) absl::StrAppend(&out, "      last error: ", v.last_error(), "\n");
  if (v.store_errors_total() > 0) {
    absl::StrAppend(&out, "      store errors: ", v.store_errors_total(), " (latest: ",
                    v.last_store_error(), ")\n");
  }
  return out;
}

int RunStatusCommand(const std::string& admin_socket, const std::string& volume, bool json) {
  AdminClient client(admin_socket);
  admin::StatusReply reply;
  grpc::Status status = client.GetStatus(volume, &reply);
  if (!status.ok()) return client.ReportFailure(status);
  if (json) {
    printf("%s\n", MessageToJson(reply).c_str());
  } else {
    for (const admin::VolumeStatus& v : reply.volumes()) printf("%s", FormatVolumeStatus(v).c_str());
  }
  return 0;
}

}  // namespace blockrepl
