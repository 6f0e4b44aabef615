// What the two comparisons through VERIFY ops share: `replctl verify` (Verifier) and the
// checksum resync pass (Resyncer, --resync-mode=checksum). Both walk the volume in runs of up to
// kVerifyRunBytes, one VERIFY op each, checksum the local bytes in pieces of at most one chunk
// (and at most kVerifyMaxPieceBytes), and keep kVerifyRunsInFlight runs in the pipe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/xxh3.h"

namespace blockrepl {

inline constexpr uint64_t kVerifyRunBytes = 4 << 20;        // bytes per VERIFY op
inline constexpr uint64_t kVerifyMaxPieceBytes = 1 << 20;   // checksum granularity, big chunks
inline constexpr size_t kVerifyRunsInFlight = 8;            // 32 MiB of comparison in the pipe
inline constexpr absl::Duration kVerifyAnswerTimeout = absl::Seconds(120);

// The checksum piece for a bitmap chunk size: a whole chunk, up to kVerifyMaxPieceBytes.
inline uint64_t VerifyPieceBytes(uint64_t chunk_size) {
  return std::min(chunk_size, kVerifyMaxPieceBytes);
}

// XXH3-64 of each `piece`-byte piece of `bytes` (the last may be shorter): what the secondary
// returns for a VERIFY op over the same range.
inline std::vector<uint64_t> PieceChecksums(std::string_view bytes, uint64_t piece) {
  std::vector<uint64_t> sums;
  sums.reserve((bytes.size() + piece - 1) / piece);
  for (uint64_t at = 0; at < bytes.size(); at += piece) {
    sums.push_back(XXH3_64bits(bytes.data() + at, std::min<uint64_t>(piece, bytes.size() - at)));
  }
  return sums;
}

}  // namespace blockrepl
