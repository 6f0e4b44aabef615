#include "common/compression.h"

#include <lz4.h>
#include <zstd.h>

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace blockrepl {

using replication::Op;

absl::StatusOr<CompressionSpec> ParseCompressionSpec(const std::string& text) {
  CompressionSpec spec;
  if (text == "none") return spec;
  if (text == "lz4") {
    spec.codec = Op::CODEC_LZ4;
    return spec;
  }
  if (text == "zstd" || text.rfind("zstd:", 0) == 0) {
    spec.codec = Op::CODEC_ZSTD;
    if (text.size() > 4 && (!absl::SimpleAtoi(text.substr(5), &spec.level) || spec.level < 1 ||
                            spec.level > 19)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--compress=", text, ": the zstd level must be 1..19"));
    }
    return spec;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--compress=", text, ": expected none, lz4, zstd or zstd:LEVEL"));
}

std::string DescribeCompression(const CompressionSpec& spec) {
  switch (spec.codec) {
    case Op::CODEC_LZ4:
      return "lz4";
    case Op::CODEC_ZSTD:
      return absl::StrCat("zstd:", spec.level);
    default:
      return "none";
  }
}

bool CompressPayload(const CompressionSpec& spec, std::string_view raw, std::string* out) {
  if (spec.codec == Op::CODEC_NONE || raw.size() < 64) return false;
  // Only clear wins are worth the CPU on both sides (and the copy): data that
  // shrinks by less than a quarter travels raw.
  const size_t worth_it = raw.size() - raw.size() / 4;
  std::string buffer;
  size_t n = 0;
  if (spec.codec == Op::CODEC_LZ4) {
    buffer.resize(LZ4_compressBound(static_cast<int>(raw.size())));
    const int r = LZ4_compress_default(raw.data(), buffer.data(), static_cast<int>(raw.size()),
                                       static_cast<int>(buffer.size()));
    if (r <= 0) return false;
    n = static_cast<size_t>(r);
  } else {
    // One context per thread (freed with the thread): creating one per call
    // costs more than compressing a 4 KiB payload.
    thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> owned(ZSTD_createCCtx(),
                                                                         ZSTD_freeCCtx);
    ZSTD_CCtx* ctx = owned.get();
    ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, spec.level);
    // A frame checksum (4 bytes): corruption is caught even with --checksum=none.
    ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1);
    buffer.resize(ZSTD_compressBound(raw.size()));
    n = ZSTD_compress2(ctx, buffer.data(), buffer.size(), raw.data(), raw.size());
    if (ZSTD_isError(n)) return false;
  }
  if (n >= worth_it) return false;
  buffer.resize(n);
  *out = std::move(buffer);
  return true;
}

bool AdaptiveCompressor::Compress(std::string_view raw, std::string* out) {
  if (misses_.load(std::memory_order_relaxed) >= kMissesBeforeBackoff &&
      skipped_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery != 0) {
    return false;
  }
  if (CompressPayload(spec_, raw, out)) {
    misses_.store(0, std::memory_order_relaxed);
    return true;
  }
  if (misses_.load(std::memory_order_relaxed) < kMissesBeforeBackoff) {
    misses_.fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

absl::StatusOr<std::string> DecompressPayload(Op::Codec codec, const std::string& compressed,
                                              uint64_t raw_length, uint64_t max_raw_length) {
  if (raw_length > max_raw_length) {
    return absl::InvalidArgumentError(absl::StrCat("claims to expand to ", raw_length,
                                                   " bytes, more than ", max_raw_length));
  }
  std::string raw(raw_length, '\0');
  if (codec == Op::CODEC_LZ4) {
    const int n = LZ4_decompress_safe(compressed.data(), raw.data(),
                                      static_cast<int>(compressed.size()),
                                      static_cast<int>(raw.size()));
    if (n < 0 || static_cast<uint64_t>(n) != raw_length) {
      return absl::DataLossError("lz4 payload is corrupt or has the wrong length");
    }
    return raw;
  }
  if (codec == Op::CODEC_ZSTD) {
    thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> owned(ZSTD_createDCtx(),
                                                                         ZSTD_freeDCtx);
    ZSTD_DCtx* ctx = owned.get();
    const size_t n =
        ZSTD_decompressDCtx(ctx, raw.data(), raw.size(), compressed.data(), compressed.size());
    if (ZSTD_isError(n) || n != raw_length) {
      return absl::DataLossError(absl::StrCat("zstd payload is corrupt or has the wrong length",
                                              ZSTD_isError(n) ? absl::StrCat(" (", ZSTD_getErrorName(n), ")")
                                                              : std::string()));
    }
    return raw;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown codec ", static_cast<int>(codec)));
}

}  // namespace blockrepl
