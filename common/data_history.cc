#include "common/data_history.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace blockrepl {

void DataHistory::Diverge(const std::string& new_id) {
  if (diverged()) return;
  diverged_from = current;
  if (!current.empty()) older.insert(older.begin(), current);
  if (older.size() > kMaxOlder) older.resize(kMaxOlder);
  current = new_id;
}

void DataHistory::Follow(const std::string& primary_current) {
  if (current != primary_current && !current.empty()) {
    older.insert(older.begin(), current);
    if (older.size() > kMaxOlder) older.resize(kMaxOlder);
  }
  current = primary_current;
  diverged_from.clear();
}

std::string DataHistory::Describe() const {
  return absl::StrCat("current ", current.empty() ? "(none)" : current,
                      diverged() ? absl::StrCat(", written on its own since ", diverged_from)
                                 : std::string(", nothing written on its own"));
}

std::string DataHistory::OlderList() const { return absl::StrJoin(older, ","); }

void DataHistory::SetOlderList(const std::string& list) {
  older.clear();
  for (absl::string_view id : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (older.size() < kMaxOlder) older.emplace_back(id);
  }
}

namespace {

SyncDecision Make(SyncDecision::Kind kind, std::string reason, bool split_brain = false) {
  SyncDecision d;
  d.kind = kind;
  d.reason = std::move(reason);
  d.split_brain = split_brain;
  return d;
}

bool Contains(const std::vector<std::string>& ids, const std::string& id) {
  return !id.empty() && std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

SyncDecision DecideSync(const DataHistory& p, const DataHistory& s, DiscardChoice discard,
                        bool assume_clean) {
  using Kind = SyncDecision::Kind;
  if (s.current.empty()) {
    return assume_clean ? Make(Kind::kBitmapResync, "new secondary, operator asserts it is equal")
                        : Make(Kind::kFullSync, "the secondary holds no history yet");
  }
  if (!s.diverged()) {
    if (s.current == p.current) {
      return Make(Kind::kBitmapResync, "same history: the chunks either bitmap flags");
    }
    if (s.current == p.diverged_from) {
      // The primary wrote on its own since the secondary last followed it
      // (a reconnect, or a promoted replica meeting its old primary): its
      // bitmap counts from exactly there.
      return Make(Kind::kBitmapResync,
                  "the primary is newer (wrote since the secondary's point): the chunks either "
                  "bitmap flags");
    }
    if (Contains(p.older, s.current)) {
      return Make(Kind::kFullSync, absl::StrCat("the secondary follows an older history (",
                                                s.current, ") than the primary's bitmap covers"));
    }
    return Make(Kind::kFullSync,
                absl::StrCat("the secondary follows another history (", s.current, ")"));
  }

  // The secondary wrote on its own (it was promoted, or it was a primary).
  const bool secondary_is_newer = !p.diverged() && s.diverged_from == p.current;
  const bool common_point = s.diverged_from == p.current || s.diverged_from == p.diverged_from;
  const std::string both = absl::StrCat("primary: ", p.Describe(), "; secondary: ", s.Describe());
  if (discard == DiscardChoice::kSecondary) {
    // Both bitmaps count from the common point: their union is everything
    // either side changed since.
    return common_point
               ? Make(Kind::kBitmapResync,
                      absl::StrCat("operator discards the secondary's writes (", both,
                                   "): the chunks either bitmap flags"))
               : Make(Kind::kFullSync,
                      absl::StrCat("operator discards the secondary's writes (", both,
                                   "): no common point, every chunk"));
  }
  if (discard == DiscardChoice::kPrimary) {
    return Make(Kind::kRefuse,
                absl::StrCat("the operator chose to discard this primary's writes (", both,
                             "), so the data must flow the other way: run `replctl demote` on "
                             "this primary and `replctl promote` on the other side"),
                !secondary_is_newer);
  }
  if (secondary_is_newer) {
    return Make(Kind::kRefuse,
                absl::StrCat("the secondary holds newer data than this primary (", both,
                             "): promote it instead (`replctl demote` here, `replctl promote` "
                             "there), or overwrite its writes with `replctl resolve VOLUME "
                             "--discard=remote` on this primary"));
  }
  return Make(Kind::kRefuse,
              absl::StrCat("split brain: both sides wrote on their own since they were last in "
                           "sync (",
                           both,
                           "). Choose whose writes survive: `replctl resolve VOLUME "
                           "--discard=local` on the side to overwrite, or --discard=remote on "
                           "the side to keep"),
              /*split_brain=*/true);
}

}  // namespace blockrepl
