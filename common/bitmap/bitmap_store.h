// BitmapStore: where the write-intent bitmap's bits are persisted. The
// in-memory bitmap (WriteIntentBitmap) owns the logic; a store only writes
// pages of bits and makes them durable. MemoryBitmapStore persists nothing
// (bits are lost with the process, so a restart means a full resync); the
// bitmap file store (header + checksummed pages) implements the same
// interface. Implementations need not be thread-safe: WriteIntentBitmap
// calls them from one flushing thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace blockrepl {

// Bits are grouped in pages, the unit of bitmap I/O, as in md. A page holds
// 4080 bytes of bits (32640 chunks) so that, on disk, bits plus a 16-byte
// checksummed trailer fill exactly one 4 KiB block.
inline constexpr uint64_t kBitmapPageBytes = 4080;
inline constexpr uint64_t kBitsPerPage = kBitmapPageBytes * 8;
inline constexpr uint64_t kWordsPerPage = kBitmapPageBytes / 8;

struct BitmapPage {
  uint64_t index;              // page number
  std::vector<uint64_t> words; // kWordsPerPage words; bit i of word w = chunk page*kBitsPerPage+w*64+i
};

class BitmapStore {
 public:
  virtual ~BitmapStore() = default;
  // Writes the pages and makes them durable before returning.
  virtual absl::Status WritePages(const std::vector<BitmapPage>& pages) = 0;
  // "" for memory, else the file path (for status output).
  virtual std::string Description() const = 0;
};

class MemoryBitmapStore : public BitmapStore {
 public:
  absl::Status WritePages(const std::vector<BitmapPage>& pages) override { return absl::OkStatus(); }
  std::string Description() const override { return ""; }
};

}  // namespace blockrepl
