#include <gtest/gtest.h>

#include "server/stop_strings.h"

namespace bitnet::server {
namespace {

TEST(StopMatcher, NoStopsPassesEverything) {
  StopMatcher m;
  EXPECT_EQ(m.push("hello"), "hello");
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, HoldsAPossibleStartAndReleasesItWhenRuledOut) {
  StopMatcher m({"Hello"});
  EXPECT_EQ(m.push("say Hel"), "say ");
  EXPECT_EQ(m.push("p"), "Help");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, MatchAcrossPiecesCutsBeforeIt) {
  StopMatcher m({"\n\nUser:"});
  EXPECT_EQ(m.push("Yes.\n"), "Yes.");
  EXPECT_EQ(m.push("\nUs"), "");
  EXPECT_EQ(m.push("er: more"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.push("anything"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  EXPECT_EQ(m.push("abcd"), "a");
  EXPECT_TRUE(m.matched());
}

TEST(StopMatcher, FlushReleasesTheHeldTail) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("the end ST"), "the end ");
  EXPECT_EQ(m.flush(), "ST");
}

TEST(StopMatcher, MultiByteStop) {
  StopMatcher m({"é!"});
  EXPECT_EQ(m.push("caf\xC3\xA9"), "caf");
  EXPECT_EQ(m.push("!"), "");
  EXPECT_TRUE(m.matched());
}

}  // namespace
}  // namespace bitnet::server
