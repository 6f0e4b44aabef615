#include "common/file_block_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "absl/container/inlined_vector.h"

#include "common/status_macros.h"

namespace blockrepl {

absl::StatusOr<std::unique_ptr<FileBlockDevice>> FileBlockDevice::Open(const std::string& path,
                                                                       uint64_t create_size) {
  int flags = O_RDWR | O_CLOEXEC;
  int fd = open(path.c_str(), flags);
  bool created = false;
  if (fd < 0 && errno == ENOENT && create_size > 0) {
    fd = open(path.c_str(), flags | O_CREAT | O_EXCL, 0600);
    created = true;
  }
  if (fd < 0) return PosixError(absl::StrCat("open ", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status s = PosixError(absl::StrCat("fstat ", path));
    close(fd);
    return s;
  }
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
      absl::Status s = PosixError(absl::StrCat("ioctl BLKGETSIZE64 ", path));
      close(fd);
      return s;
    }
  } else if (S_ISREG(st.st_mode)) {
    if (created) {
      if (ftruncate(fd, static_cast<off_t>(create_size)) != 0) {
        absl::Status s = PosixError(absl::StrCat("ftruncate ", path));
        close(fd);
        unlink(path.c_str());
        return s;
      }
      st.st_size = static_cast<off_t>(create_size);
    }
    size = static_cast<uint64_t>(st.st_size);
  } else {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file or block device"));
  }
  if (create_size > 0 && size != create_size) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(path, " has size ", size,
                                                      " bytes but --size asks for ", create_size));
  }
  if (size == 0) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is empty (size 0)"));
  }
  return std::unique_ptr<FileBlockDevice>(
      new FileBlockDevice(path, fd, size));
}

FileBlockDevice::~FileBlockDevice() { close(fd_); }

std::string FileBlockDevice::Where(std::string_view op, uint64_t offset) const {
  return absl::StrCat(std::string(op), " ", path_, " @", offset);
}

absl::Status FileBlockDevice::Read(uint64_t offset, absl::Span<char> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(Where("pread", offset + done));
    }
    if (n == 0) {
      return absl::OutOfRangeError(absl::StrCat(Where("pread", offset + done), ": end of file"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FileBlockDevice::Write(uint64_t offset, absl::Span<const char> data, bool fua) {
  const iovec whole{const_cast<char*>(data.data()), data.size()};
  return WritePieces(offset, absl::MakeConstSpan(&whole, 1), fua);
}

absl::Status FileBlockDevice::WritePieces(uint64_t offset, absl::Span<const iovec> pieces,
                                          bool fua) {
  // RWF_DSYNC makes a FUA write durable in the same syscall instead of a
  // whole-file fdatasync afterwards.
  const int rw_flags = fua ? RWF_DSYNC : 0;
  absl::InlinedVector<iovec, 4> left(pieces.begin(), pieces.end());  // no allocation for 1-4
  size_t first = 0;  // left[first..] is still to write
  uint64_t done = 0;
  while (first < left.size()) {
    if (left[first].iov_len == 0) {
      ++first;
      continue;
    }
    const int count = static_cast<int>(std::min<size_t>(left.size() - first, IOV_MAX));
    ssize_t n = pwritev2(fd_, &left[first], count, static_cast<off_t>(offset + done), rw_flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(Where("pwrite", offset + done));
    }
    done += static_cast<uint64_t>(n);
    // A short write: skip what went out, go on from the middle of a piece.
    for (size_t written = static_cast<size_t>(n); written > 0;) {
      const size_t k = std::min(written, left[first].iov_len);
      left[first].iov_base = static_cast<char*>(left[first].iov_base) + k;
      left[first].iov_len -= k;
      written -= k;
      if (left[first].iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

absl::Status FileBlockDevice::Flush() {
  if (fdatasync(fd_) != 0) return PosixError(absl::StrCat("fdatasync ", path_));
  return absl::OkStatus();
}

absl::Status FileBlockDevice::Fallocate(int mode, uint64_t offset, uint64_t length) {
  while (fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    if (errno == EINTR) continue;
    if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) {
      return absl::UnimplementedError("fallocate mode not supported");
    }
    return PosixError(Where("fallocate", offset));
  }
  return absl::OkStatus();
}

absl::Status FileBlockDevice::WriteZeroBuffers(uint64_t offset, uint64_t length) {
  static const std::vector<char> kZeroes(1 << 20, 0);
  while (length > 0) {
    uint64_t n = std::min<uint64_t>(length, kZeroes.size());
    RETURN_IF_ERROR(Write(offset, absl::MakeConstSpan(kZeroes.data(), n), /*fua=*/false));
    offset += n;
    length -= n;
  }
  return absl::OkStatus();
}

absl::Status FileBlockDevice::Trim(uint64_t offset, uint64_t length, bool fua) {
  // Punching a hole both frees the space and guarantees zeroes on read-back,
  // which keeps primary and secondary byte-identical after a trim.
  absl::Status s = Fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  if (absl::IsUnimplemented(s)) s = WriteZeroBuffers(offset, length);
  RETURN_IF_ERROR(s);
  return fua ? Flush() : absl::OkStatus();
}

absl::Status FileBlockDevice::WriteZeroes(uint64_t offset, uint64_t length, bool may_trim,
                                          bool fua) {
  absl::Status s = may_trim ? Fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
                            : Fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
  if (absl::IsUnimplemented(s) && !may_trim) {
    s = Fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  }
  if (absl::IsUnimplemented(s)) s = WriteZeroBuffers(offset, length);
  RETURN_IF_ERROR(s);
  return fua ? Flush() : absl::OkStatus();
}

}  // namespace blockrepl
