#include "secondary/undo_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/xxh3.h"

namespace blockrepl {
namespace {

constexpr uint32_t kRecordMagic = 0x6f646e75;  // "undo"
constexpr size_t kRecordHeader = 24;

uint64_t RecordChecksum(uint64_t offset, const char* data, size_t length) {
  XXH64_hash_t seed = offset;
  return XXH3_64bits_withSeed(data, length, seed);
}

}  // namespace

UndoLog::UndoLog(std::string path, int fd, uint64_t volume_size)
    : path_(std::move(path)), fd_(fd), volume_size_(volume_size) {
  const uint64_t extents = (volume_size + kExtentBytes - 1) / kExtentBytes;
  saved_.assign((extents + 63) / 64, 0);
}

UndoLog::~UndoLog() { close(fd_); }

absl::StatusOr<std::unique_ptr<UndoLog>> UndoLog::Open(const std::string& path,
                                                       uint64_t volume_size) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(absl::StrCat("open undo log ", path));
  std::unique_ptr<UndoLog> log(new UndoLog(path, fd, volume_size));
  RETURN_IF_ERROR(log->Load());
  return log;
}

void UndoLog::MarkSaved(uint64_t extent) {
  if (IsSaved(extent)) return;
  saved_[extent / 64] |= uint64_t{1} << (extent % 64);
  ++saved_count_;
}

absl::Status UndoLog::Load() {
  std::vector<char> header(kRecordHeader);
  std::string data;
  uint64_t pos = 0;
  while (true) {
    ssize_t n = pread(fd_, header.data(), kRecordHeader, static_cast<off_t>(pos));
    if (n < 0) return PosixError(absl::StrCat("read undo log ", path_));
    if (n < static_cast<ssize_t>(kRecordHeader)) break;
    uint32_t magic, length;
    uint64_t offset, checksum;
    std::memcpy(&magic, header.data(), 4);
    std::memcpy(&length, header.data() + 4, 4);
    std::memcpy(&offset, header.data() + 8, 8);
    std::memcpy(&checksum, header.data() + 16, 8);
    if (magic != kRecordMagic || length == 0 || length > kExtentBytes || offset % kExtentBytes != 0 ||
        offset >= volume_size_ || length > volume_size_ - offset) {
      break;
    }
    data.resize(length);
    n = pread(fd_, data.data(), length, static_cast<off_t>(pos + kRecordHeader));
    if (n != static_cast<ssize_t>(length) || RecordChecksum(offset, data.data(), length) != checksum) {
      break;  // torn tail: that extent was never overwritten
    }
    MarkSaved(offset / kExtentBytes);
    pos += kRecordHeader + length;
  }
  end_offset_ = pos;
  return absl::OkStatus();
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
  std::string record;
  for (uint64_t e : extents) {
    const uint64_t offset = e * kExtentBytes;
    const uint32_t length = static_cast<uint32_t>(std::min(kExtentBytes, volume_size_ - offset));
    record.resize(kRecordHeader + length);
    RETURN_IF_ERROR(store->Read(offset, absl::MakeSpan(record.data() + kRecordHeader, length)));
    const uint64_t checksum = RecordChecksum(offset, record.data() + kRecordHeader, length);
    std::memcpy(record.data(), &kRecordMagic, 4);
    std::memcpy(record.data() + 4, &length, 4);
    std::memcpy(record.data() + 8, &offset, 8);
    std::memcpy(record.data() + 16, &checksum, 8);
    size_t done = 0;
    while (done < record.size()) {
      ssize_t n = pwrite(fd_, record.data() + done, record.size() - done,
                         static_cast<off_t>(end_offset_ + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError(absl::StrCat("write undo log ", path_));
      }
      done += static_cast<size_t>(n);
    }
    end_offset_ += record.size();
  }
  // One fsync for the whole batch: the old data is durable before any of
  // the new data is written.
  if (fdatasync(fd_) != 0) return PosixError(absl::StrCat("fdatasync undo log ", path_));
  for (uint64_t e : extents) MarkSaved(e);
  return absl::OkStatus();
}

absl::Status UndoLog::RollBack(BlockDevice* store) {
  std::vector<char> header(kRecordHeader);
  std::string data;
  uint64_t pos = 0;
  while (pos < end_offset_) {
    if (pread(fd_, header.data(), kRecordHeader, static_cast<off_t>(pos)) !=
        static_cast<ssize_t>(kRecordHeader)) {
      return PosixError(absl::StrCat("read undo log ", path_));
    }
    uint32_t length;
    uint64_t offset;
    std::memcpy(&length, header.data() + 4, 4);
    std::memcpy(&offset, header.data() + 8, 8);
    data.resize(length);
    if (pread(fd_, data.data(), length, static_cast<off_t>(pos + kRecordHeader)) !=
        static_cast<ssize_t>(length)) {
      return PosixError(absl::StrCat("read undo log ", path_));
    }
    RETURN_IF_ERROR(store->Write(offset, data, /*fua=*/false));
    pos += kRecordHeader + length;
  }
  return store->Flush();
}

absl::Status UndoLog::Clear() {
  if (ftruncate(fd_, 0) != 0 || fdatasync(fd_) != 0) {
    return PosixError(absl::StrCat("truncate undo log ", path_));
  }
  std::fill(saved_.begin(), saved_.end(), 0);
  saved_count_ = 0;
  end_offset_ = 0;
  return absl::OkStatus();
}

}  // namespace blockrepl
