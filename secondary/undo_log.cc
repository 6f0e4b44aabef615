#include "secondary/undo_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/xxh3.h"

namespace blockrepl {
namespace {

// Format 1: {u32 magic, u32 length, u64 offset, u64 checksum} + data, back to back.
constexpr uint32_t kRecordMagic = 0x6f646e75;  // "undo"
constexpr size_t kRecordHeader = 24;

// Format 2: segments of a header block and 4 KiB-padded extents.
constexpr uint32_t kSegmentMagic = 0x32646e75;  // "und2"
constexpr size_t kBlock = 4096;                 // O_DIRECT alignment (offsets, lengths, memory)
constexpr size_t kSegmentHeader = 16;           // magic, count, entries checksum
constexpr size_t kEntryBytes = 24;
// 32 extents (2 MiB) a segment: a 1 MiB stream message is one segment, and
// the aligned buffer a resync keeps stays small.
constexpr size_t kMaxSegmentExtents = 32;
static_assert(kSegmentHeader + kMaxSegmentExtents * kEntryBytes <= kBlock);

uint64_t RecordChecksum(uint64_t offset, const char* data, size_t length) {
  XXH64_hash_t seed = offset;
  return XXH3_64bits_withSeed(data, length, seed);
}

uint64_t PadToBlock(uint64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

// Reads exactly `length` bytes at `pos`; false at end of file or on error
// (both end the scan: what follows is not an intact record).
bool ReadFully(int fd, char* out, size_t length, uint64_t pos) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd, out + done, length - done, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

void UndoLog::FreeDeleter::operator()(char* p) const { std::free(p); }

UndoLog::UndoLog(std::string path, int read_fd, int write_fd, bool direct, uint64_t volume_size)
    : path_(std::move(path)),
      read_fd_(read_fd),
      write_fd_(write_fd),
      direct_(direct),
      volume_size_(volume_size) {
  const uint64_t extents = (volume_size + kExtentBytes - 1) / kExtentBytes;
  saved_.assign((extents + 63) / 64, 0);
}

UndoLog::~UndoLog() {
  close(read_fd_);
  close(write_fd_);
}

absl::StatusOr<std::unique_ptr<UndoLog>> UndoLog::Open(const std::string& path,
                                                       uint64_t volume_size) {
  int read_fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (read_fd < 0) return PosixError(absl::StrCat("open undo log ", path));
  bool direct = true;
  int write_fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
  if (write_fd < 0 && errno == EINVAL) {
    direct = false;  // the file system has no O_DIRECT (tmpfs)
    write_fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (write_fd < 0) {
    absl::Status error = PosixError(absl::StrCat("open undo log ", path));
    close(read_fd);
    return error;
  }
  std::unique_ptr<UndoLog> log(new UndoLog(path, read_fd, write_fd, direct, volume_size));
  ASSIGN_OR_RETURN(log->end_offset_, log->Scan([&log](const Extent& extent, const char*) {
    log->MarkSaved(extent.offset / kExtentBytes);
    return absl::OkStatus();
  }));
  return log;
}

void UndoLog::MarkSaved(uint64_t extent) {
  if (IsSaved(extent)) return;
  saved_[extent / 64] |= uint64_t{1} << (extent % 64);
  ++saved_count_;
}

uint32_t UndoLog::ExtentLength(uint64_t extent) const {
  return static_cast<uint32_t>(std::min(kExtentBytes, volume_size_ - extent * kExtentBytes));
}

absl::StatusOr<uint64_t> UndoLog::Scan(Visitor visit) {
  uint32_t magic = 0;
  if (ReadFully(read_fd_, reinterpret_cast<char*>(&magic), 4, 0) && magic == kRecordMagic) {
    format_ = Format::kRecords1;
    return ScanRecords1(visit);
  }
  format_ = Format::kSegments2;
  return ScanSegments2(visit);
}

absl::StatusOr<uint64_t> UndoLog::ScanRecords1(Visitor visit) {
  char header[kRecordHeader];
  std::string data;
  uint64_t pos = 0;
  while (ReadFully(read_fd_, header, kRecordHeader, pos)) {
    uint32_t magic, length;
    uint64_t offset, checksum;
    std::memcpy(&magic, header, 4);
    std::memcpy(&length, header + 4, 4);
    std::memcpy(&offset, header + 8, 8);
    std::memcpy(&checksum, header + 16, 8);
    if (magic != kRecordMagic || length == 0 || length > kExtentBytes ||
        offset % kExtentBytes != 0 || offset >= volume_size_ || length > volume_size_ - offset) {
      break;
    }
    data.resize(length);
    if (!ReadFully(read_fd_, data.data(), length, pos + kRecordHeader) ||
        RecordChecksum(offset, data.data(), length) != checksum) {
      break;  // torn tail: that extent was never overwritten
    }
    RETURN_IF_ERROR(visit(Extent{offset, length}, data.data()));
    pos += kRecordHeader + length;
  }
  return pos;
}

absl::StatusOr<uint64_t> UndoLog::ScanSegments2(Visitor visit) {
  char header[kBlock];
  std::string data;
  uint64_t pos = 0;
  while (ReadFully(read_fd_, header, kBlock, pos)) {
    uint32_t magic, count;
    uint64_t entries_checksum;
    std::memcpy(&magic, header, 4);
    std::memcpy(&count, header + 4, 4);
    std::memcpy(&entries_checksum, header + 8, 8);
    if (magic != kSegmentMagic || count == 0 || count > kMaxSegmentExtents ||
        XXH3_64bits(header + kSegmentHeader, count * kEntryBytes) != entries_checksum) {
      break;
    }
    std::vector<Extent> extents(count);
    std::vector<uint64_t> checksums(count);
    uint64_t data_bytes = 0;
    bool valid = true;
    for (uint32_t i = 0; i < count; ++i) {
      const char* entry = header + kSegmentHeader + i * kEntryBytes;
      std::memcpy(&extents[i].offset, entry, 8);
      std::memcpy(&extents[i].length, entry + 8, 4);
      std::memcpy(&checksums[i], entry + 16, 8);
      const Extent& e = extents[i];
      valid = valid && e.offset % kExtentBytes == 0 && e.offset < volume_size_ &&
              e.length == ExtentLength(e.offset / kExtentBytes);
      data_bytes += PadToBlock(e.length);
    }
    if (!valid) break;
    data.resize(data_bytes);
    if (!ReadFully(read_fd_, data.data(), data_bytes, pos + kBlock)) break;
    uint64_t at = 0;
    for (uint32_t i = 0; i < count && valid; ++i) {
      valid = RecordChecksum(extents[i].offset, data.data() + at, extents[i].length) == checksums[i];
      at += PadToBlock(extents[i].length);
    }
    if (!valid) break;  // torn: none of its extents was overwritten
    at = 0;
    for (const Extent& e : extents) {
      RETURN_IF_ERROR(visit(e, data.data() + at));
      at += PadToBlock(e.length);
    }
    pos += kBlock + data_bytes;
  }
  return pos;
}

absl::Status UndoLog::SaveBeforeOverwrite(
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges, BlockDevice* store) {
  std::vector<uint64_t> extents;
  for (const auto& [offset, length] : ranges) {
    if (length == 0) continue;
    for (uint64_t e = offset / kExtentBytes; e <= (offset + length - 1) / kExtentBytes; ++e) {
      if (!IsSaved(e)) extents.push_back(e);
    }
  }
  if (extents.empty()) return absl::OkStatus();
  std::sort(extents.begin(), extents.end());
  extents.erase(std::unique(extents.begin(), extents.end()), extents.end());
  if (format_ == Format::kRecords1) {
    RETURN_IF_ERROR(AppendRecords1(extents, store));
  } else {
    for (size_t i = 0; i < extents.size(); i += kMaxSegmentExtents) {
      RETURN_IF_ERROR(AppendSegment2(extents.data() + i,
                                     std::min(kMaxSegmentExtents, extents.size() - i), store));
    }
  }
  // One fdatasync for the whole batch: the old data is durable before any
  // of the new data is written.
  if (fdatasync(write_fd_) != 0) return PosixError(absl::StrCat("fdatasync undo log ", path_));
  for (uint64_t e : extents) MarkSaved(e);
  return absl::OkStatus();
}

absl::Status UndoLog::AppendRecords1(const std::vector<uint64_t>& extents, BlockDevice* store) {
  std::string record;
  for (uint64_t e : extents) {
    const uint64_t offset = e * kExtentBytes;
    const uint32_t length = ExtentLength(e);
    record.resize(kRecordHeader + length);
    RETURN_IF_ERROR(store->Read(offset, absl::MakeSpan(record.data() + kRecordHeader, length)));
    const uint64_t checksum = RecordChecksum(offset, record.data() + kRecordHeader, length);
    std::memcpy(record.data(), &kRecordMagic, 4);
    std::memcpy(record.data() + 4, &length, 4);
    std::memcpy(record.data() + 8, &offset, 8);
    std::memcpy(record.data() + 16, &checksum, 8);
    // Unaligned: through the page cache.
    if (direct_) RETURN_IF_ERROR(ReopenBuffered());
    RETURN_IF_ERROR(WriteAt(record.data(), record.size(), end_offset_));
    end_offset_ += record.size();
  }
  return absl::OkStatus();
}

absl::Status UndoLog::AppendSegment2(const uint64_t* extents, size_t count, BlockDevice* store) {
  uint64_t bytes = kBlock;
  for (size_t i = 0; i < count; ++i) bytes += PadToBlock(ExtentLength(extents[i]));
  if (bytes > buffer_bytes_) {
    char* buffer = static_cast<char*>(std::aligned_alloc(kBlock, bytes));
    if (buffer == nullptr) return absl::ResourceExhaustedError("no memory for the undo log");
    buffer_.reset(buffer);
    buffer_bytes_ = bytes;
  }
  char* header = buffer_.get();
  std::memset(header, 0, kBlock);
  uint64_t at = kBlock;
  for (size_t i = 0; i < count; ++i) {
    const uint64_t offset = extents[i] * kExtentBytes;
    const uint32_t length = ExtentLength(extents[i]);
    char* data = buffer_.get() + at;
    RETURN_IF_ERROR(store->Read(offset, absl::MakeSpan(data, length)));
    std::memset(data + length, 0, PadToBlock(length) - length);
    const uint64_t checksum = RecordChecksum(offset, data, length);
    char* entry = header + kSegmentHeader + i * kEntryBytes;
    std::memcpy(entry, &offset, 8);
    std::memcpy(entry + 8, &length, 4);
    std::memcpy(entry + 16, &checksum, 8);
    at += PadToBlock(length);
  }
  const uint32_t count32 = static_cast<uint32_t>(count);
  const uint64_t entries_checksum = XXH3_64bits(header + kSegmentHeader, count * kEntryBytes);
  std::memcpy(header, &kSegmentMagic, 4);
  std::memcpy(header + 4, &count32, 4);
  std::memcpy(header + 8, &entries_checksum, 8);
  RETURN_IF_ERROR(WriteAt(buffer_.get(), bytes, end_offset_));
  end_offset_ += bytes;
  return absl::OkStatus();
}

absl::Status UndoLog::WriteAt(const char* data, size_t length, uint64_t pos) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = pwrite(write_fd_, data + done, length - done, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && direct_) {
      // Opened with O_DIRECT but refused at the write (a device whose
      // sectors are larger than 4 KiB): carry on through the page cache.
      RETURN_IF_ERROR(ReopenBuffered());
      continue;
    }
    if (n < 0) return PosixError(absl::StrCat("write undo log ", path_));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status UndoLog::ReopenBuffered() {
  int fd = open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return PosixError(absl::StrCat("reopen undo log ", path_));
  close(write_fd_);
  write_fd_ = fd;
  direct_ = false;
  return absl::OkStatus();
}

absl::Status UndoLog::RollBack(BlockDevice* store) {
  ASSIGN_OR_RETURN(uint64_t end, Scan([store](const Extent& extent, const char* data) {
    return store->Write(extent.offset, absl::MakeConstSpan(data, extent.length), /*fua=*/false);
  }));
  if (end < end_offset_) {
    // The extents before the damage are back; the image stays inconsistent.
    return absl::DataLossError(absl::StrCat(
        "undo log ", path_, " is damaged at byte ", end, " of ", end_offset_,
        ": the extents saved after it could not be rolled back"));
  }
  return store->Flush();
}

absl::Status UndoLog::Clear() {
  if (ftruncate(write_fd_, 0) != 0 || fdatasync(write_fd_) != 0) {
    return PosixError(absl::StrCat("truncate undo log ", path_));
  }
  std::fill(saved_.begin(), saved_.end(), 0);
  saved_count_ = 0;
  end_offset_ = 0;
  format_ = Format::kSegments2;
  buffer_.reset();
  buffer_bytes_ = 0;
  return absl::OkStatus();
}

}  // namespace blockrepl
