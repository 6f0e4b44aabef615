// BitmapFile: the write-intent bitmap persisted in a file, as md's external
// bitmap but checksummed. Layout (little-endian):
//   [0, 4096)     header slot A   } two slots, written alternately with a
//   [4096, 8192)  header slot B   } sequence number: a torn header write
//                                   leaves the other slot valid
//   8192 + 4096*i page i: 4080 bytes of bits (bit c%32640 of page c/32640 =
//                 chunk c) + trailer {u64 xxh3(bits, index), u32 index,
//                 u32 magic}
// A page whose checksum fails (torn by a crash) is loaded as all ones: every
// chunk it covers is resynced, so a torn page can cost time, never data.
// A header that fails its checksum in both slots, or that describes another
// volume, is refused with a precise error naming the file.
// Thread-compatible: WriteIntentBitmap serialises WritePages; WriteHeader is
// called by the owning agent while no flush runs (start, stop, rescale).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/bitmap/bitmap_store.h"
#include "common/data_history.h"

namespace blockrepl {

struct BitmapHeader {
  static constexpr uint32_t kVersion = 2;  // 2 added diverged_from and older (1 still loads)
  static constexpr uint32_t kStateClean = 1;   // last stop was clean: bits are exact
  static constexpr uint32_t kStateStale = 2;   // bits cannot be trusted: full resync
  // Planned switchover: the peer is the primary now and this store its
  // replica-to-be; repl-primary refuses to serve it (two primaries).
  static constexpr uint32_t kStateHandedOver = 4;

  uint32_t version = kVersion;
  uint64_t sequence = 0;           // higher slot wins
  std::string volume_uuid;         // 32 hex digits, fixed at creation
  std::string generation;          // 32 hex digits: the data history the bits describe
  // The rest of the data history (common/data_history.h): "" or 32 hex
  // digits, and up to two earlier generations, newest first.
  std::string diverged_from;
  std::vector<std::string> older;
  uint64_t volume_size = 0;
  uint32_t chunk_size = 0;
  uint32_t daemon_sleep_ms = 0;
  uint64_t events = 0;             // header writes since creation
  uint64_t events_cleared = 0;     // `events` when the bitmap was last found all clear
  uint32_t state = 0;

  DataHistory history() const { return DataHistory{generation, diverged_from, older}; }
  void set_history(const DataHistory& h) {
    generation = h.current;
    diverged_from = h.diverged_from;
    older = h.older;
  }
  uint64_t chunk_count() const { return (volume_size + chunk_size - 1) / chunk_size; }
  uint64_t page_count() const { return (chunk_count() + kBitsPerPage - 1) / kBitsPerPage; }
};

class BitmapFile : public BitmapStore {
 public:
  // Creates a new file (fails if `path` exists) with all bits clear.
  static absl::StatusOr<std::unique_ptr<BitmapFile>> Create(const std::string& path,
                                                            BitmapHeader header);
  // Opens and validates an existing file and loads its bits.
  static absl::StatusOr<std::unique_ptr<BitmapFile>> Open(const std::string& path,
                                                          bool read_only = false);
  ~BitmapFile() override;

  const BitmapHeader& header() const { return header_; }
  // Bits as loaded (kWordsPerPage words per page); torn pages are all ones.
  const std::vector<uint64_t>& loaded_bits() const { return loaded_bits_; }
  const std::vector<uint64_t>& torn_pages() const { return torn_pages_; }
  const std::string& path() const { return path_; }

  // Renames the open file over `new_path` (atomically replacing it; the lock
  // moves with the file) and fsyncs the directory.
  absl::Status RenameOver(const std::string& new_path);

  // Writes the header into the older slot (sequence + 1, events + 1).
  absl::Status WriteHeader(BitmapHeader header);
  absl::Status WritePages(const std::vector<BitmapPage>& pages) override;
  std::string Description() const override { return path_; }

  // New random 32-hex-digit identifier (volume UUIDs, generations).
  static std::string NewId();

 private:
  BitmapFile(std::string path, int fd, bool read_only)
      : path_(std::move(path)), fd_(fd), read_only_(read_only) {}
  absl::Status LoadPages();

  std::string path_;  // changes only in RenameOver
  const int fd_;
  const bool read_only_;
  BitmapHeader header_;
  int next_slot_ = 0;
  std::vector<uint64_t> loaded_bits_;
  std::vector<uint64_t> torn_pages_;
};

}  // namespace blockrepl
