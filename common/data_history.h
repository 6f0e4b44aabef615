// DataHistory: which data an image holds, as DRBD's data generation UUIDs,
// and the one rule both agents apply at every handshake to decide what the
// secondary must receive.
//
// Each side keeps a record (a primary in its bitmap file header, a replica
// in its meta file):
//   current        the history its data belongs to. A replica takes its
//                  primary's. It changes when a side starts writing on its
//                  own: a primary's first write while no peer follows it,
//                  or a promoted replica's first write.
//   diverged_from  "" while the side has not written on its own since it
//                  was last in sync with its peer; else `current` as it was
//                  then: the point its bitmap counts from.
//   older          earlier `current`s, newest first (at most kMaxOlder).
// Two sides that both diverged from the same point wrote without each other:
// a split brain, which no bitmap can merge. Only the operator can say whose
// writes to keep (`replctl resolve --discard=local|remote`).
// Thread-compatible value types and pure functions.
#pragma once

#include <string>
#include <vector>

namespace blockrepl {

struct DataHistory {
  static constexpr size_t kMaxOlder = 2;

  std::string current;
  std::string diverged_from;
  std::vector<std::string> older;

  bool diverged() const { return !diverged_from.empty(); }
  bool operator==(const DataHistory&) const = default;
  // The first write on our own: a new `current`, remembering where we left
  // the peer. No-op when already diverged.
  void Diverge(const std::string& new_id);
  // The peer now holds exactly our `current`: nothing is ours alone.
  void Converge() { diverged_from.clear(); }
  // A replica's record after a handshake: it follows `primary_current`.
  void Follow(const std::string& primary_current);
  // One line for logs and errors: "current=..., diverged from ...".
  std::string Describe() const;
  // `older` as stored in files: ids joined by ','.
  std::string OlderList() const;
  void SetOlderList(const std::string& list);
};

// Whose writes the operator gave up (`replctl resolve`), as seen by the
// primary of the handshake.
enum class DiscardChoice { kNone, kSecondary, kPrimary };

struct SyncDecision {
  enum class Kind {
    // Resync the chunks either side flags: the primary's bitmap plus the
    // chunks the secondary wrote on its own (its bitmap, sent in the reply).
    kBitmapResync,
    kFullSync,  // the bitmaps cannot describe the difference: every chunk
    kRefuse,    // split brain, or the secondary holds newer data
  };
  Kind kind = Kind::kFullSync;
  bool split_brain = false;
  std::string reason;  // for logs; for kRefuse, the operator's error
};

// `assume_clean`: the operator vouches that a secondary with no history
// already equals the primary. Both agents call this with the same inputs
// and so reach the same answer.
SyncDecision DecideSync(const DataHistory& primary, const DataHistory& secondary,
                        DiscardChoice discard, bool assume_clean);

}  // namespace blockrepl
