#include "common/data_history.h"

#include <gtest/gtest.h>

namespace blockrepl {
namespace {

using Kind = SyncDecision::Kind;

DataHistory Following(const std::string& id) {
  DataHistory h;
  h.current = id;
  return h;
}

DataHistory DivergedFrom(const std::string& from, const std::string& now) {
  DataHistory h = Following(from);
  h.Diverge(now);
  return h;
}

TEST(DataHistoryTest, DivergeRemembersThePointAndOlderIds) {
  DataHistory h = Following("g1");
  h.Diverge("g2");
  EXPECT_EQ(h.current, "g2");
  EXPECT_EQ(h.diverged_from, "g1");
  EXPECT_EQ(h.older, std::vector<std::string>{"g1"});
  h.Diverge("g3");  // already on its own: nothing changes
  EXPECT_EQ(h.current, "g2");
  h.Converge();
  h.Diverge("g3");
  h.Converge();
  h.Diverge("g4");
  EXPECT_EQ(h.older, (std::vector<std::string>{"g3", "g2"}));  // at most kMaxOlder
}

TEST(DataHistoryTest, OlderListRoundTrips) {
  DataHistory h;
  h.SetOlderList("a,b,c");
  EXPECT_EQ(h.older, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(h.OlderList(), "a,b");
  h.SetOlderList("");
  EXPECT_TRUE(h.older.empty());
}

TEST(DataHistoryTest, FollowClearsDivergence) {
  DataHistory h = DivergedFrom("g1", "g2");
  h.Follow("g9");
  EXPECT_EQ(h.current, "g9");
  EXPECT_FALSE(h.diverged());
  EXPECT_EQ(h.older.front(), "g2");
}

TEST(DecideSyncTest, NewSecondaryGetsAFullSyncUnlessAssumedClean) {
  EXPECT_EQ(DecideSync(Following("g1"), DataHistory{}, DiscardChoice::kNone, false).kind,
            Kind::kFullSync);
  EXPECT_EQ(DecideSync(Following("g1"), DataHistory{}, DiscardChoice::kNone, true).kind,
            Kind::kBitmapResync);
}

TEST(DecideSyncTest, SameHistoryIsABitmapResync) {
  EXPECT_EQ(DecideSync(Following("g1"), Following("g1"), DiscardChoice::kNone, false).kind,
            Kind::kBitmapResync);
}

TEST(DecideSyncTest, PrimaryWroteAloneSinceTheSecondarysPoint) {
  // A reconnect after writes without the peer; also a promoted replica
  // meeting its crashed old primary (which never noticed it was alone).
  EXPECT_EQ(DecideSync(DivergedFrom("g1", "g2"), Following("g1"), DiscardChoice::kNone, false).kind,
            Kind::kBitmapResync);
}

TEST(DecideSyncTest, UnknownOrOlderHistoryIsAFullSync) {
  DataHistory p = DivergedFrom("g1", "g2");
  p.Converge();
  p.Diverge("g3");  // older = g2, g1; bits count from g2
  SyncDecision older = DecideSync(p, Following("g1"), DiscardChoice::kNone, false);
  EXPECT_EQ(older.kind, Kind::kFullSync);
  EXPECT_NE(older.reason.find("older history"), std::string::npos);
  EXPECT_EQ(DecideSync(p, Following("zz"), DiscardChoice::kNone, false).kind, Kind::kFullSync);
}

TEST(DecideSyncTest, BothWroteAloneFromTheSamePointIsSplitBrain) {
  const DataHistory p = DivergedFrom("g1", "p2");
  const DataHistory s = DivergedFrom("g1", "s2");
  SyncDecision d = DecideSync(p, s, DiscardChoice::kNone, false);
  EXPECT_EQ(d.kind, Kind::kRefuse);
  EXPECT_TRUE(d.split_brain);
  EXPECT_NE(d.reason.find("split brain"), std::string::npos);
  EXPECT_NE(d.reason.find("p2"), std::string::npos);
  EXPECT_NE(d.reason.find("s2"), std::string::npos);
  EXPECT_NE(d.reason.find("replctl resolve"), std::string::npos);
}

TEST(DecideSyncTest, SplitBrainWithoutACommonPointIsStillRefused) {
  SyncDecision d =
      DecideSync(DivergedFrom("g1", "p2"), DivergedFrom("x1", "s2"), DiscardChoice::kNone, false);
  EXPECT_EQ(d.kind, Kind::kRefuse);
  EXPECT_TRUE(d.split_brain);
}

TEST(DecideSyncTest, DiscardingTheSecondaryResyncsTheUnionOrEverything) {
  EXPECT_EQ(DecideSync(DivergedFrom("g1", "p2"), DivergedFrom("g1", "s2"),
                       DiscardChoice::kSecondary, false)
                .kind,
            Kind::kBitmapResync);
  EXPECT_EQ(DecideSync(DivergedFrom("g1", "p2"), DivergedFrom("x1", "s2"),
                       DiscardChoice::kSecondary, false)
                .kind,
            Kind::kFullSync);
}

TEST(DecideSyncTest, DiscardingThePrimaryNeedsTheRolesSwapped) {
  SyncDecision d = DecideSync(DivergedFrom("g1", "p2"), DivergedFrom("g1", "s2"),
                              DiscardChoice::kPrimary, false);
  EXPECT_EQ(d.kind, Kind::kRefuse);
  EXPECT_NE(d.reason.find("replctl demote"), std::string::npos);
}

TEST(DecideSyncTest, SecondaryNewerIsRefusedUnlessDiscarded) {
  // The secondary was promoted and wrote; this primary never wrote since.
  const DataHistory p = Following("g1");
  const DataHistory s = DivergedFrom("g1", "s2");
  SyncDecision d = DecideSync(p, s, DiscardChoice::kNone, false);
  EXPECT_EQ(d.kind, Kind::kRefuse);
  EXPECT_FALSE(d.split_brain);
  EXPECT_NE(d.reason.find("newer data"), std::string::npos);
  EXPECT_EQ(DecideSync(p, s, DiscardChoice::kSecondary, false).kind, Kind::kBitmapResync);
}

TEST(DecideSyncTest, AnswerDoesNotDependOnAssumeCleanOnceThereIsHistory) {
  for (bool assume_clean : {false, true}) {
    EXPECT_EQ(
        DecideSync(DivergedFrom("g1", "p2"), DivergedFrom("g1", "s2"), DiscardChoice::kNone,
                   assume_clean)
            .kind,
        Kind::kRefuse);
  }
}

}  // namespace
}  // namespace blockrepl
