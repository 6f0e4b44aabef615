#include "common/metrics/status_metrics.h"

#include <string>

namespace blockrepl {

namespace {

void StateSet(MetricSet* out, const std::string& name, const std::string& help,
              const std::string& volume, const std::string& current,
              std::initializer_list<const char*> states) {
  for (const char* state : states) {
    out->Gauge(name, help, {{"volume", volume}, {"state", state}}, current == state ? 1 : 0);
  }
}

}  // namespace

void AppendVolumeStatusMetrics(const admin::VolumeStatus& s, MetricSet* out) {
  const std::string& v = s.name();
  const MetricLabels vol = {{"volume", v}};
  const bool primary = s.role() == "primary";

  out->Gauge("volume_info", "Constant 1; the labels describe the volume and this agent's role.",
             {{"volume", v}, {"role", s.role()}, {"mode", s.mode()},
              {"generation", s.generation()}, {"volume_uuid", s.volume_uuid()}},
             1);
  StateSet(out, "role", "This agent's role for the volume (state set).", v, s.role(),
           {"primary", "secondary", "handed-over"});
  out->Gauge("promoted", "1 when a replica was promoted and this agent serves it as the primary.",
             vol, s.promoted() ? 1 : 0);
  out->Gauge("split_brain",
             "1 when the last handshake was refused because both sides wrote on their own.", vol,
             s.split_brain() ? 1 : 0);
  StateSet(out, "connection_state", "Replication connection state (state set).", v,
           s.connection(), {"connected", "connecting", "disconnected"});
  out->Gauge("peer_connected", "1 when the replication stream to the peer is up.", vol,
             s.connection() == "connected" ? 1 : 0);
  StateSet(out, "sync_state", "Replication sync state (state set).", v, s.sync_state(),
           {"in_sync", "resyncing", "out_of_sync"});
  out->Gauge("consistent",
             primary ? "1 when the secondary's image is a state this primary had at a flush."
                     : "1 when this secondary's image is a state the primary had at a flush.",
             vol, s.consistent() ? 1 : 0);
  out->Gauge("size_bytes", "Volume size.", vol, s.size_bytes());
  out->Counter("connects_total", "Replication streams established.", vol, s.connects_total());
  out->Counter("store_errors_total",
               "Failed I/O on this agent's store (primary: client requests; secondary: applied ops).",
               vol, s.store_errors_total());
  out->Gauge("durable_seq", "Highest write sequence number durable on the secondary.", vol,
             s.durable_seq());

  if (!primary) {
    out->Gauge("applied_seq", "Highest write sequence number applied by this secondary.", vol,
               s.applied_seq());
    out->Counter("applied_writes_total", "Writes applied by this secondary.", vol,
                 s.replicated_writes_total());
    out->Counter("applied_bytes_total", "Bytes of writes applied by this secondary.", vol,
                 s.replicated_bytes_total());
    out->Counter("resync_applied_bytes_total", "Resync bytes applied by this secondary.", vol,
                 s.resynced_bytes_total());
    out->Gauge("undo_log_bytes", "Size of the undo log kept during a resync.", vol,
               s.undo_log_bytes());
    out->Gauge("undo_available", "1 when an interrupted resync can be rolled back.", vol,
               s.undo_available() ? 1 : 0);
    out->Gauge("store_direct_io",
               "1 when aligned writes reach the store with O_DIRECT (--store-io), 0 through the "
               "page cache.", vol, s.store_io() == "direct" ? 1 : 0);
    out->Counter("direct_writes_total",
                 "Direct writes started on the store (one per 128 KiB of a longer write).", vol,
                 s.direct_writes_total());
    return;
  }

  out->Gauge("inflight_writes", "Writes sent to the secondary and not yet acked.", vol,
             s.inflight_writes());
  out->Gauge("inflight_writes_limit", "Window: most writes in flight (--async).", vol,
             s.max_inflight_writes());
  out->Gauge("inflight_bytes", "Bytes sent to the secondary and not yet acked.", vol,
             s.inflight_bytes());
  out->Gauge("inflight_bytes_limit", "Window: most bytes in flight (--max-inflight-bytes).", vol,
             s.max_inflight_bytes());
  out->Counter("replicated_writes_total", "Client writes handed to the replication stream.", vol,
               s.replicated_writes_total());
  out->Counter("replicated_bytes_total", "Bytes of client writes handed to the stream.", vol,
               s.replicated_bytes_total());
  out->Counter("stream_messages_total",
               "Batches sent on the replication stream (with replicated_writes_total: writes per "
               "message, what --batch-linger raises).",
               vol, s.stream_messages_total());
  out->Gauge("sent_seq", "Highest write sequence number handed to the stream.", vol,
             s.sent_seq());
  out->Gauge("acked_seq", "Highest write sequence number applied by the secondary.", vol,
             s.acked_seq());
  out->Gauge("ack_lag_writes", "Sequence numbers sent but not yet applied by the secondary.", vol,
             s.sent_seq() > s.acked_seq() ? s.sent_seq() - s.acked_seq() : 0);
  out->Gauge("dirty_chunks", "Chunks that may differ from the secondary right now.", vol,
             s.dirty_chunks());
  out->Gauge("bitmap_marked_chunks",
             "Chunks whose bitmap bit is set (dirty ones and those awaiting lazy clearing).",
             vol, s.bitmap_bits_set());
  out->Gauge("bitmap_chunk_size_bytes", "Bytes covered by one bitmap bit.", vol, s.chunk_size());
  out->Gauge("bitmap_pages", "Pages of bitmap bits.", vol, s.bitmap_pages());
  out->Gauge("bitmap_dirty_pages", "Bitmap pages holding a set bit.", vol, s.bitmap_dirty_pages());
  out->Counter("bitmap_flushes_total",
               "Flushes to the bitmap file (pages + fdatasync): group commits and lazy clears.", vol,
               s.bitmap_flushes_total());
  out->Gauge("resync_active", "1 while a resync pass runs.", vol,
             s.sync_state() == "resyncing" ? 1 : 0);
  out->Gauge("resync_done_bytes", "Bytes sent by the current (or last) resync pass.", vol,
             s.resync_done_bytes());
  out->Gauge("resync_total_bytes", "Bytes to send in the current (or last) resync pass.", vol,
             s.resync_total_bytes());
  out->Gauge("resync_done_chunks", "Chunks sent by the current (or last) resync pass.", vol,
             s.resync_done_chunks());
  out->Gauge("resync_total_chunks", "Chunks to send in the current (or last) resync pass.", vol,
             s.resync_total_chunks());
  out->Counter("resynced_bytes_total", "Bytes sent by all resync passes.", vol,
               s.resynced_bytes_total());
  out->Counter("resynced_chunks_total", "Chunks sent by all resync passes.", vol,
               s.resynced_chunks_total());
  out->Counter("resync_checksum_matched_bytes_total",
               "Flagged bytes not sent because the secondary's checksum matched "
               "(--resync-mode=checksum).",
               vol, s.resync_checksum_matched_bytes_total());
  out->Gauge("resync_rate_bytes_per_second", "Current resync throughput.", vol,
             s.resync_rate_bytes_per_second());
  if (s.resync_eta_seconds() >= 0 && s.sync_state() == "resyncing") {
    out->Gauge("resync_eta_seconds", "Estimated time to finish the current resync pass.", vol,
               s.resync_eta_seconds());
  }
  out->Gauge("resync_rate_limit_bytes_per_second", "Resync rate limit (0 = none).", vol,
             s.resync_rate_limit_bytes_per_second());
  out->Gauge("resync_paused", "1 when the operator paused the resync.", vol,
             s.resync_paused() ? 1 : 0);
  out->Gauge("ahead", "1 while pulling ahead: live writes are only marked (--on-congestion).", vol,
             s.ahead() ? 1 : 0);
  out->Counter("ahead_writes_total", "Client writes marked for resync instead of sent (pull-ahead).",
               vol, s.ahead_writes_total());
  out->Counter("compression_input_bytes_total",
               "Replicated payload bytes before compression (--compress).", vol,
               s.compression_input_bytes_total());
  out->Counter("compression_output_bytes_total",
               "Replicated payload bytes as sent (raw when compression did not pay).", vol,
               s.compression_output_bytes_total());
  if (s.compression_output_bytes_total() > 0) {
    out->Gauge("compression_ratio", "Payload bytes before / after compression, since start.", vol,
               static_cast<double>(s.compression_input_bytes_total()) /
                   s.compression_output_bytes_total());
  }
}

}  // namespace blockrepl
