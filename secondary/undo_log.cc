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

// The on-disk integers, host order at any alignment.
template <typename T>
T Get(const char* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
template <typename T>
void Put(char* at, T value) {
  std::memcpy(at, &value, sizeof value);
}

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
    const uint32_t magic = Get<uint32_t>(header), length = Get<uint32_t>(header + 4);
    const uint64_t offset = Get<uint64_t>(header + 8), checksum = Get<uint64_t>(header + 16);
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
    const uint32_t count = Get<uint32_t>(header + 4);
    if (Get<uint32_t>(header) != kSegmentMagic || count == 0 || count > kMaxSegmentExtents ||
        XXH3_64bits(header + kSegmentHeader, count * kEntryBytes) != Get<uint64_t>(header + 8)) {
      break;
    }
    struct Entry {
      Extent extent;
      uint64_t checksum;
      uint64_t data_at;  // in `data`
    };
    std::vector<Entry> entries(count);
    uint64_t data_bytes = 0;
    bool valid = true;
    for (uint32_t i = 0; i < count && valid; ++i) {
      const char* entry = header + kSegmentHeader + i * kEntryBytes;
      const Extent e{Get<uint64_t>(entry), Get<uint32_t>(entry + 8)};
      valid = e.offset % kExtentBytes == 0 && e.offset < volume_size_ &&
              e.length == ExtentLength(e.offset / kExtentBytes);
      entries[i] = Entry{e, Get<uint64_t>(entry + 16), data_bytes};
      data_bytes += PadToBlock(e.length);
    }
    if (!valid) break;
    data.resize(data_bytes);
    if (!ReadFully(read_fd_, data.data(), data_bytes, pos + kBlock)) break;
    // All or nothing: a torn segment's extents were never overwritten.
    for (const Entry& e : entries) {
      valid = valid && RecordChecksum(e.extent.offset, data.data() + e.data_at,
                                      e.extent.length) == e.checksum;
    }
    if (!valid) break;
    for (const Entry& e : entries) RETURN_IF_ERROR(visit(e.extent, data.data() + e.data_at));
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
  // Unaligned records: through the page cache.
  if (direct_) RETURN_IF_ERROR(ReopenBuffered());
  std::string record;
  for (uint64_t e : extents) {
    const uint64_t offset = e * kExtentBytes;
    const uint32_t length = ExtentLength(e);
    record.resize(kRecordHeader + length);
    RETURN_IF_ERROR(store->Read(offset, absl::MakeSpan(record.data() + kRecordHeader, length)));
    const uint64_t checksum = RecordChecksum(offset, record.data() + kRecordHeader, length);
    Put(record.data(), kRecordMagic);
    Put(record.data() + 4, length);
    Put(record.data() + 8, offset);
    Put(record.data() + 16, checksum);
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
    Put(entry, offset);
    Put(entry + 8, length);
    Put(entry + 16, checksum);
    at += PadToBlock(length);
  }
  Put(header, kSegmentMagic);
  Put(header + 4, static_cast<uint32_t>(count));
  Put(header + 8, XXH3_64bits(header + kSegmentHeader, count * kEntryBytes));
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
