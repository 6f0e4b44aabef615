// Changing a write-intent bitmap's chunk size without losing a dirty byte.
// RescaleBits is pure bit logic: growing ORs old bits into the new chunk that
// covers them, shrinking spreads an old bit over all its sub-chunks. The rule
// behind both: a byte whose old chunk was dirty lies in a dirty new chunk.
// RescaleBitmapFile applies it offline to a bitmap file, replacing the file
// atomically (temp file + rename), so a crash leaves the old or the new file.
// Free functions, no shared state: thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/bitmap/bitmap_file.h"

namespace blockrepl {

inline constexpr uint32_t kMinBitmapChunk = 4096;
inline constexpr uint32_t kMaxBitmapChunk = 1u << 30;

// True for a power of two in [kMinBitmapChunk, kMaxBitmapChunk].
bool IsValidBitmapChunk(uint64_t chunk_size);

// Number of set bits in `words`.
uint64_t CountSetBits(const std::vector<uint64_t>& words);

// `words` is the old bit vector (bit c%64 of word c/64 = chunk c of
// `old_chunk` bytes). Returns the new vector for `new_chunk`-byte chunks,
// sized to whole pages (kWordsPerPage words each); bits past the last chunk
// are clear. Both chunk sizes must satisfy IsValidBitmapChunk (asserted).
// Cost: O(words + runs of set bits), never per byte.
std::vector<uint64_t> RescaleBits(const std::vector<uint64_t>& words, uint64_t volume_size,
                                  uint32_t old_chunk, uint32_t new_chunk);

// Atomically replaces the bitmap file at `path` with a complete new one
// holding `header` and `bits`: built at `path + ".rescale.tmp"`, made
// durable, locked, renamed over `path`, directory fsynced; returns it open.
// A crash leaves the old or the new file. The caller must hold the writer
// lock of `path` (or be the agent that owns it).
absl::StatusOr<std::unique_ptr<BitmapFile>> ReplaceBitmapFile(
    const std::string& path, const BitmapHeader& header, const std::vector<uint64_t>& bits);

struct RescaleResult {
  uint32_t old_chunk = 0;
  uint32_t new_chunk = 0;
  uint64_t old_dirty_chunks = 0;  // as loaded: torn pages count as all dirty
  uint64_t new_dirty_chunks = 0;
};

// Rewrites the bitmap file at `path` with `new_chunk`-byte chunks. Takes the
// file's writer lock, so a running agent makes it fail (kFailedPrecondition,
// "in use"). The new file is built at `path + ".rescale.tmp"`, made durable,
// then renamed over `path` and the directory fsynced. Identity, generation,
// volume size, daemon sleep and state are kept; the event counters restart
// as for any newly created file. `result` (optional) receives the counts.
absl::Status RescaleBitmapFile(const std::string& path, uint32_t new_chunk,
                               RescaleResult* result = nullptr);

}  // namespace blockrepl
