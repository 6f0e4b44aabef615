#include "common/bitmap/write_intent_bitmap.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "common/bitmap/bitmap_rescale.h"
#include "common/completion_batch.h"

namespace blockrepl {

WriteIntentBitmap::WriteIntentBitmap(uint64_t volume_size, uint32_t chunk_size,
                                     std::unique_ptr<BitmapStore> store)
    : volume_size_(volume_size),
      chunk_size_(chunk_size),
      chunk_count_((volume_size + chunk_size - 1) / chunk_size),
      store_(store ? std::move(store) : std::make_unique<MemoryBitmapStore>()) {
  assert(chunk_size >= 4096 && (chunk_size & (chunk_size - 1)) == 0);
  absl::MutexLock lock(&mu_);
  AllocateLocked();
}

void WriteIntentBitmap::AllocateLocked() {
  const uint64_t pages = (chunk_count_ + kBitsPerPage - 1) / kBitsPerPage;
  state_.assign(chunk_count_, 0);
  bits_.assign(pages * kWordsPerPage, 0);
  page_bits_set_.assign(pages, 0);
  page_dirty_.assign(pages, false);
  page_version_.assign(pages, 0);
  unflushed_sets_.clear();
  dirty_chunks_ = bits_set_ = 0;
  needs_sync_chunks_.store(0, std::memory_order_release);
}

std::string WriteIntentBitmap::store_description() const {
  absl::MutexLock lock(&mu_);
  return store_->Description();
}

absl::Status WriteIntentBitmap::Relayout(uint32_t new_chunk, const StoreFactory& make_store) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](bool* flushing) { return !*flushing; }, &flushing_));
  const uint32_t old_chunk = chunk_size_;
  for (uint64_t chunk = 0; chunk < chunk_count_; ++chunk) {
    if (state_[chunk] & kCountMask) {
      return absl::FailedPreconditionError(
          absl::StrCat("chunk ", chunk, " has writes in flight; the bitmap cannot be rescaled now"));
    }
  }
  std::vector<uint64_t> needs(bits_.size(), 0);
  for (uint64_t chunk = 0; chunk < chunk_count_; ++chunk) {
    if (state_[chunk] & kNeedsSync) needs[chunk / 64] |= uint64_t{1} << (chunk % 64);
  }
  std::vector<uint64_t> new_bits = RescaleBits(bits_, volume_size_, old_chunk, new_chunk);
  std::vector<uint64_t> new_needs = RescaleBits(needs, volume_size_, old_chunk, new_chunk);
  auto store = make_store(new_chunk, new_bits);
  if (!store.ok()) return store.status();
  store_ = std::move(store).value();
  chunk_size_ = new_chunk;
  chunk_count_ = (volume_size_ + new_chunk - 1) / new_chunk;
  AllocateLocked();
  bits_ = std::move(new_bits);
  for (uint64_t chunk = 0; chunk < chunk_count_; ++chunk) {
    if (BitIsSet(chunk)) {
      ++page_bits_set_[chunk / kBitsPerPage];
      ++bits_set_;
    }
    if ((new_needs[chunk / 64] >> (chunk % 64)) & 1) UpdateState(chunk, kNeedsSync);
  }
  durable_version_ = changed_version_;  // the new store holds exactly these bits
  layout_version_++;
  return absl::OkStatus();
}

ChunkRange WriteIntentBitmap::ChunksFor(uint64_t offset, uint64_t length) const {
  if (length == 0) return ChunkRange{offset / chunk_size_, offset / chunk_size_};
  return ChunkRange{offset / chunk_size_, (offset + length - 1) / chunk_size_ + 1};
}

uint64_t WriteIntentBitmap::ChunkLength(uint64_t chunk) const {
  uint64_t start = ChunkOffset(chunk);
  return std::min<uint64_t>(chunk_size_, volume_size_ - start);
}

bool WriteIntentBitmap::SetBit(uint64_t chunk) {
  if (BitIsSet(chunk)) return false;
  bits_[chunk / 64] |= uint64_t{1} << (chunk % 64);
  const uint64_t page = chunk / kBitsPerPage;
  ++page_bits_set_[page];
  ++bits_set_;
  page_dirty_[page] = true;
  page_version_[page] = ++changed_version_;
  state_[chunk] |= kSetUnflushed;
  unflushed_sets_.push_back(chunk);
  return true;
}

void WriteIntentBitmap::SetAheadAround(ChunkRange range) {
  const uint64_t group = set_ahead_bytes_.load() / chunk_size_;
  if (group <= 1 || range.empty()) return;
  const uint64_t end = std::min<uint64_t>(chunk_count_, (range.end + group - 1) / group * group);
  for (uint64_t chunk = range.first / group * group; chunk < end; ++chunk) SetBit(chunk);
}

void WriteIntentBitmap::ClearBit(uint64_t chunk) {
  if (!BitIsSet(chunk)) return;
  bits_[chunk / 64] &= ~(uint64_t{1} << (chunk % 64));
  const uint64_t page = chunk / kBitsPerPage;
  --page_bits_set_[page];
  --bits_set_;
  page_dirty_[page] = true;
  page_version_[page] = ++changed_version_;
}

void WriteIntentBitmap::UpdateState(uint64_t chunk, uint32_t new_state) {
  const uint32_t old_state = state_[chunk];
  dirty_chunks_ += static_cast<int64_t>(IsDirty(new_state)) - static_cast<int64_t>(IsDirty(old_state));
  const bool was = (old_state & kNeedsSync) != 0, is = (new_state & kNeedsSync) != 0;
  if (is != was) needs_sync_chunks_.fetch_add(is ? 1 : ~uint64_t{0}, std::memory_order_release);
  state_[chunk] = new_state;
}

uint64_t WriteIntentBitmap::RequiredVersion(ChunkRange range) const {
  uint64_t required = 0;
  for (uint64_t chunk = range.first; chunk < range.end; ++chunk) {
    if (state_[chunk] & kSetUnflushed) {
      required = std::max(required, page_version_[chunk / kBitsPerPage]);
    }
  }
  return required;
}

absl::Status WriteIntentBitmap::PersistUpTo(uint64_t version) {
  while (durable_version_ < version) {
    // About to wait for the bitmap file: replies this thread holds back (an
    // NBD worker's run of writes) go first. Another writer may have made
    // `version` durable meanwhile: look again.
    if (CompletionBatch::RunDeferredOutside(&mu_)) continue;
    if (flushing_) {
      // Someone else is writing pages; their flush may cover our change.
      mu_.Await(absl::Condition(
          +[](bool* flushing) { return !*flushing; }, &flushing_));
      continue;
    }
    // Become the flusher: snapshot every dirty page, write without the lock.
    flushing_ = true;
    const uint64_t snapshot_version = changed_version_;
    std::vector<uint64_t> sets;  // the bits this flush makes durable
    sets.swap(unflushed_sets_);
    std::vector<BitmapPage> pages;
    for (uint64_t page = 0; page < page_dirty_.size(); ++page) {
      if (!page_dirty_[page]) continue;
      page_dirty_[page] = false;
      const auto begin = bits_.begin() + page * (kBitmapPageBytes / 8);
      pages.push_back(BitmapPage{page, std::vector<uint64_t>(begin, begin + kBitmapPageBytes / 8)});
    }
    mu_.Unlock();
    absl::Status status = store_->WritePages(pages);
    mu_.Lock();
    flushing_ = false;
    // Counts real I/O only: a memory store writes nothing, a failed flush
    // is retried (and counted) by the next writer.
    if (status.ok() && !store_->Description().empty()) ++flushes_total_;
    if (!status.ok()) {
      // The pages are not durable: keep them dirty so the next writer retries,
      // and fail this writer's request (its data must not be written).
      for (const BitmapPage& page : pages) page_dirty_[page.index] = true;
      unflushed_sets_.insert(unflushed_sets_.end(), sets.begin(), sets.end());
      return status;
    }
    durable_version_ = std::max(durable_version_, snapshot_version);
    // A set bit is not cleared before a flush made it durable (its writer
    // holds the chunk dirty, the clearing passes skip kSetUnflushed), so each
    // of these is still set by the change this flush wrote.
    for (uint64_t chunk : sets) state_[chunk] &= ~kSetUnflushed;
  }
  return absl::OkStatus();
}

void WriteIntentBitmap::LoadPersistedBits(const std::vector<uint64_t>& words) {
  absl::MutexLock lock(&mu_);
  for (uint64_t chunk = 0; chunk < chunk_count_ && chunk / 64 < words.size(); ++chunk) {
    if (!((words[chunk / 64] >> (chunk % 64)) & 1)) continue;
    UpdateState(chunk, state_[chunk] | kNeedsSync);
    if (!BitIsSet(chunk)) {
      bits_[chunk / 64] |= uint64_t{1} << (chunk % 64);
      ++page_bits_set_[chunk / kBitsPerPage];
      ++bits_set_;
    }
  }
}

absl::Status WriteIntentBitmap::StartWrite(ChunkRange range) {
  absl::MutexLock lock(&mu_);
  bool flush_needed = false;
  for (uint64_t chunk = range.first; chunk < range.end; ++chunk) {
    uint32_t state = state_[chunk];
    assert((state & kCountMask) < kCountMask);
    UpdateState(chunk, (state + 1) & ~kClearPending);
    flush_needed |= SetBit(chunk);
  }
  // The neighbours ride on the flush this write pays for anyway.
  if (flush_needed) SetAheadAround(range);
  // Fast path: bits already set and durable cost nothing.
  return PersistUpTo(RequiredVersion(range));
}

void WriteIntentBitmap::EndWrite(ChunkRange range, bool replicated) {
  absl::MutexLock lock(&mu_);
  for (uint64_t chunk = range.first; chunk < range.end; ++chunk) {
    uint32_t state = state_[chunk];
    assert((state & kCountMask) > 0);
    state -= 1;
    if (!replicated) state |= kNeedsSync;
    UpdateState(chunk, state);
  }
}

absl::Status WriteIntentBitmap::MarkNeedsSync(ChunkRange range) {
  absl::MutexLock lock(&mu_);
  for (uint64_t chunk = range.first; chunk < range.end; ++chunk) {
    UpdateState(chunk, (state_[chunk] | kNeedsSync) & ~kClearPending);
    SetBit(chunk);
  }
  return PersistUpTo(RequiredVersion(range));
}

std::optional<uint64_t> WriteIntentBitmap::NextNeedsSync(uint64_t from) const {
  absl::MutexLock lock(&mu_);
  if (needs_sync_chunks_.load(std::memory_order_relaxed) == 0) return std::nullopt;
  for (uint64_t chunk = from; chunk < chunk_count_; ++chunk) {
    // Needs-sync chunks always have their bit set: skip clean words fast.
    if (chunk % 64 == 0 && bits_[chunk / 64] == 0) {
      chunk += 63;
      continue;
    }
    if (state_[chunk] & kNeedsSync) return chunk;
  }
  return std::nullopt;
}

bool WriteIntentBitmap::TakeForResync(uint64_t chunk) {
  absl::MutexLock lock(&mu_);
  uint32_t state = state_[chunk];
  if (!(state & kNeedsSync)) return false;
  UpdateState(chunk, ((state & ~kNeedsSync) + 1) & ~kClearPending);
  return true;
}

absl::Status WriteIntentBitmap::ClearingPass() {
  absl::MutexLock lock(&mu_);
  if (bits_set_ == 0) return absl::OkStatus();
  for (uint64_t word = 0; word < bits_.size(); ++word) {
    if (bits_[word] == 0) continue;
    for (uint64_t chunk = word * 64; chunk < std::min<uint64_t>(chunk_count_, word * 64 + 64); ++chunk) {
      if (!BitIsSet(chunk)) continue;
      const uint32_t state = state_[chunk];
      if (!IsClearable(state)) continue;
      if (state & kClearPending) {
        // Clean for a whole period: the bit may go.
        UpdateState(chunk, state & ~kClearPending);
        ClearBit(chunk);
      } else {
        UpdateState(chunk, state | kClearPending);
      }
    }
  }
  return PersistUpTo(changed_version_);
}

absl::Status WriteIntentBitmap::ClearAllClearable() {
  absl::MutexLock lock(&mu_);
  for (uint64_t chunk = 0; chunk < chunk_count_; ++chunk) {
    if (BitIsSet(chunk) && IsClearable(state_[chunk])) {
      UpdateState(chunk, state_[chunk] & ~kClearPending);
      ClearBit(chunk);
    }
  }
  return PersistUpTo(changed_version_);
}

WriteIntentBitmap::Counts WriteIntentBitmap::counts() const {
  absl::MutexLock lock(&mu_);
  Counts counts;
  counts.dirty_chunks = dirty_chunks_;
  counts.needs_sync_chunks = needs_sync_chunks_.load(std::memory_order_relaxed);
  counts.bits_set = bits_set_;
  counts.total_pages = page_bits_set_.size();
  counts.dirty_pages = std::count_if(page_bits_set_.begin(), page_bits_set_.end(),
                                     [](uint32_t n) { return n > 0; });
  counts.flushes_total = flushes_total_;
  return counts;
}

}  // namespace blockrepl
