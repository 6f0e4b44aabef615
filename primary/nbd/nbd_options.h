// Plain configuration and counters shared by the NBD server's parts.
// Export and ServerOptions are values, constant once the server starts.
// Stats is written by the server's threads with relaxed atomic increments
// and may be read from any thread at any time (monotonic counters, except
// connections_active which goes up and down).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/block_device.h"
#include "common/metrics/latency_histogram.h"
#include "primary/nbd/nbd_wire.h"

namespace blockrepl::nbd {

// Counters; read with relaxed loads.
struct Stats {
  // Indexed by NBD command type 0..7 (READ, WRITE, DISC, FLUSH, TRIM, CACHE,
  // WRITE_ZEROES, BLOCK_STATUS). errors[] counts non-zero replies.
  std::atomic<uint64_t> requests[kNumStatsCommands] = {};
  std::atomic<uint64_t> errors[kNumStatsCommands] = {};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_active{0};
  std::atomic<uint64_t> bytes_read{0};          // bytes of successful READs (device side)
  std::atomic<uint64_t> bytes_written{0};       // payload bytes of successful WRITEs
  std::atomic<uint64_t> handshake_failures{0};  // dropped before transmission (not ABORT)
  // From a request fully received to its reply sent, successful or not.
  // Writes = WRITE, WRITE_ZEROES and TRIM: everything that changes data.
  LatencyHistogram write_latency;
  LatencyHistogram flush_latency;
};

struct Export {
  std::string name;  // export name == volume name
  std::string description;
  BlockDevice* device = nullptr;  // not owned; outlives the server
  // Advertised in NBD_INFO_BLOCK_SIZE. Rounded down to a power of two and
  // clamped to [512, max_payload] at Start (e.g. the bitmap chunk size).
  uint32_t preferred_block_size = 4096;
  // Only true if a flush on one connection covers writes completed on all.
  bool can_multi_conn = true;
  // Request counters of this export (not owned; outlives the server). Null:
  // they go to the server's Stats. Connection counters are always the server's.
  Stats* stats = nullptr;
};

struct ServerOptions {
  std::string tcp_listen;           // "HOST:PORT" (IPv4, [v6]; port 0 = pick); or empty
  std::string unix_socket;          // path; or empty. Exactly one of the two is set.
  uint32_t max_payload = 32 << 20;  // NBD_INFO_BLOCK_SIZE max and the request cap
  int worker_threads = 64;          // requests may block a long time (replication window, acks)
  int max_requests_per_connection = 128;  // the reader stops reading when reached
  uint64_t max_buffered_bytes_per_connection = 128ull << 20;
};

}  // namespace blockrepl::nbd
