#include "common/bitmap/bitmap_rescale.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/bitmap/bitmap_file.h"
#include "common/status_macros.h"

namespace blockrepl {
namespace {

constexpr uint64_t kAllOnes = ~uint64_t{0};

// First bit >= `from` and < `limit` whose value is `value`, else `limit`.
// Skips whole words, so long runs cost one step per 64 chunks.
uint64_t NextBit(const std::vector<uint64_t>& words, uint64_t from, uint64_t limit, bool value) {
  if (from >= limit) return limit;
  const uint64_t flip = value ? 0 : kAllOnes;
  uint64_t w = from / 64;
  uint64_t x = (words[w] ^ flip) & (kAllOnes << (from % 64));
  while (x == 0) {
    ++w;
    if (w * 64 >= limit) return limit;
    x = words[w] ^ flip;
  }
  return std::min(w * 64 + static_cast<uint64_t>(std::countr_zero(x)), limit);
}

// Sets bits [begin, end).
void SetRange(std::vector<uint64_t>& words, uint64_t begin, uint64_t end) {
  for (; begin < end && begin % 64 != 0; ++begin) words[begin / 64] |= uint64_t{1} << (begin % 64);
  for (; begin < end && end - begin >= 64; begin += 64) words[begin / 64] = kAllOnes;
  for (; begin < end; ++begin) words[begin / 64] |= uint64_t{1} << (begin % 64);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return PosixError(absl::StrCat("open ", path, " for fsync"));
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return ErrnoToStatus(err, absl::StrCat("fsync ", path));
  return absl::OkStatus();
}

// Builds the complete new file at `tmp`; the caller renames it into place.
absl::Status WriteRescaledFile(const std::string& tmp, const BitmapHeader& header,
                               const std::vector<uint64_t>& bits) {
  ASSIGN_OR_RETURN(std::unique_ptr<BitmapFile> fresh, BitmapFile::Create(tmp, header));
  assert(bits.size() == header.page_count() * kWordsPerPage);
  std::vector<BitmapPage> pages;
  pages.reserve(header.page_count());
  for (uint64_t i = 0; i < header.page_count(); ++i) {
    const auto first = bits.begin() + static_cast<ptrdiff_t>(i * kWordsPerPage);
    pages.push_back(BitmapPage{i, std::vector<uint64_t>(first, first + kWordsPerPage)});
  }
  RETURN_IF_ERROR(fresh->WritePages(pages));  // ends with fdatasync
  // fdatasync may skip metadata that a read does not need; the rename must
  // not become durable before the whole inode is.
  return FsyncPath(tmp, O_RDONLY);
}

}  // namespace

bool IsValidBitmapChunk(uint64_t chunk_size) {
  return chunk_size >= kMinBitmapChunk && chunk_size <= kMaxBitmapChunk &&
         std::has_single_bit(chunk_size);
}

uint64_t CountSetBits(const std::vector<uint64_t>& words) {
  uint64_t n = 0;
  for (uint64_t w : words) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

std::vector<uint64_t> RescaleBits(const std::vector<uint64_t>& words, uint64_t volume_size,
                                  uint32_t old_chunk, uint32_t new_chunk) {
  assert(IsValidBitmapChunk(old_chunk) && IsValidBitmapChunk(new_chunk));
  assert(volume_size > 0);
  const uint64_t old_chunks = (volume_size + old_chunk - 1) / old_chunk;
  const uint64_t new_chunks = (volume_size + new_chunk - 1) / new_chunk;
  const uint64_t pages = (new_chunks + kBitsPerPage - 1) / kBitsPerPage;
  std::vector<uint64_t> out(pages * kWordsPerPage, 0);
  // Bits past the last old chunk are not chunks: ignore them if set.
  const uint64_t limit = std::min<uint64_t>(old_chunks, words.size() * 64);
  // Each run of set old chunks covers a byte range; every new chunk touching
  // that range is set. Growing, that ORs; shrinking, it spreads; the volume's
  // end clips the last partial chunk on both sides.
  for (uint64_t c = NextBit(words, 0, limit, true); c < limit;
       c = NextBit(words, c, limit, true)) {
    const uint64_t run_end = NextBit(words, c, limit, false);
    const uint64_t first_byte = c * old_chunk;
    const uint64_t end_byte = std::min(run_end * old_chunk, volume_size);
    SetRange(out, first_byte / new_chunk, (end_byte + new_chunk - 1) / new_chunk);
    c = run_end;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BitmapFile>> ReplaceBitmapFile(
    const std::string& path, const BitmapHeader& header, const std::vector<uint64_t>& bits) {
  const std::string tmp = path + ".rescale.tmp";
  // A leftover from a crashed rescale: the caller holds the lock on `path`.
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return PosixError(absl::StrCat("remove stale ", tmp));
  }
  absl::Status s = WriteRescaledFile(tmp, header, bits);
  if (!s.ok()) {
    unlink(tmp.c_str());  // best effort: the old file is untouched
    return s;
  }
  // Lock the new file before it takes the old one's name, so nobody can
  // slip in between.
  auto file = BitmapFile::Open(tmp);
  if (file.ok()) s = (*file)->RenameOver(path);
  if (!file.ok() || !s.ok()) {
    unlink(tmp.c_str());
    return file.ok() ? s : file.status();
  }
  return file;
}

absl::Status RescaleBitmapFile(const std::string& path, uint32_t new_chunk,
                               RescaleResult* result) {
  if (!IsValidBitmapChunk(new_chunk)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rescale ", path, ": chunk size ", new_chunk,
        " must be a power of two between ", kMinBitmapChunk, " and ", kMaxBitmapChunk));
  }
  // Read-write open: only for the writer lock, so a running agent (which
  // holds it) makes this fail instead of racing with its page writes. The
  // old file itself is never written.
  ASSIGN_OR_RETURN(std::unique_ptr<BitmapFile> old, BitmapFile::Open(path));
  const BitmapHeader& h = old->header();
  // Torn pages are all ones in loaded_bits(): carrying them over keeps the
  // safe reading (those chunks get resynced), it never loses a dirty chunk.
  std::vector<uint64_t> bits = RescaleBits(old->loaded_bits(), h.volume_size, h.chunk_size,
                                           new_chunk);
  BitmapHeader header;
  header.volume_uuid = h.volume_uuid;
  header.set_history(h.history());
  header.volume_size = h.volume_size;
  header.chunk_size = new_chunk;
  header.daemon_sleep_ms = h.daemon_sleep_ms;
  header.state = h.state;
  const uint64_t new_dirty = CountSetBits(bits);
  // Create restarts `events` at 1; "cleared" is only true if nothing is set.
  header.events_cleared = new_dirty == 0 ? 1 : 0;

  RETURN_IF_ERROR(ReplaceBitmapFile(path, header, bits).status());
  if (result != nullptr) {
    result->old_chunk = h.chunk_size;
    result->new_chunk = new_chunk;
    result->old_dirty_chunks = CountSetBits(old->loaded_bits());
    result->new_dirty_chunks = new_dirty;
  }
  return absl::OkStatus();
}

}  // namespace blockrepl
