// The bytes of one write, owned and movable, on their way from the NBD
// socket to the local disk and on to the replication stream.
//
// Not a std::string: C++20 has no way to size a string without zero-filling
// it first, and a 1 MiB write's payload is received straight into this
// buffer, so the fill was pure waste (10% of the primary's CPU at 1 MiB
// writes, docs/PERFORMANCE.md round 3). The buffer is moved, never copied,
// until gRPC frees it after sending (common/wire/stream_codec).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/types/span.h"

namespace blockrepl {

class Payload {
 public:
  Payload() = default;
  Payload(Payload&& other) noexcept
      : bytes_(std::move(other.bytes_)), size_(std::exchange(other.size_, 0)) {}
  Payload& operator=(Payload&& other) noexcept {
    bytes_ = std::move(other.bytes_);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  // `size` bytes of unspecified content, to be overwritten (e.g. by recv).
  static Payload ForOverwrite(size_t size) {
    Payload p;
    if (size != 0) p.bytes_.reset(new char[size]);
    p.size_ = size;
    return p;
  }
  static Payload CopyOf(std::string_view bytes) {
    Payload p = ForOverwrite(bytes.size());
    if (!bytes.empty()) std::memcpy(p.data(), bytes.data(), bytes.size());
    return p;
  }

  char* data() { return bytes_.get(); }
  const char* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {bytes_.get(), size_}; }
  absl::Span<char> span() { return {bytes_.get(), size_}; }
  absl::Span<const char> span() const { return {bytes_.get(), size_}; }

  // Hands the buffer over (to be freed with delete[]); leaves this empty.
  char* Release() {
    size_ = 0;
    return bytes_.release();
  }

 private:
  std::unique_ptr<char[]> bytes_;
  size_t size_ = 0;
};

}  // namespace blockrepl
