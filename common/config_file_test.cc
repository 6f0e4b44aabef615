#include "common/config_file.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockrepl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ConfigFileTest, AgentKeysThenVolumeSectionsInFileOrder) {
  auto file = ParseConfigText("a.conf",
                              "# comment\n"
                              "admin-socket = /run/a.sock\n"
                              "  ; another comment\n"
                              "\n"
                              "[volume db]\n"
                              "store=/dev/vg/db\n"
                              "sync = true\n"
                              "[ volume  logs ]\n"
                              "store = /srv/logs.img  \n");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->agent.size(), 1u);
  EXPECT_EQ(file->agent[0].key, "admin-socket");
  EXPECT_EQ(file->agent[0].value, "/run/a.sock");
  EXPECT_EQ(file->agent[0].line, 2);
  ASSERT_EQ(file->volumes.size(), 2u);
  EXPECT_EQ(file->volumes[0].volume, "db");
  EXPECT_EQ(file->volumes[1].volume, "logs");
  EXPECT_EQ(file->volumes[1].entries[0].value, "/srv/logs.img");
  EXPECT_THAT(ConfigArgs("repl-primary", *file, file->volumes[0]),
              ElementsAre("repl-primary", "--admin-socket=/run/a.sock", "--volume=db",
                          "--store=/dev/vg/db", "--sync=true"));
}

TEST(ConfigFileTest, ErrorsNameTheFileAndLine) {
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"[volume a]\nstore\n", "x.conf:2: expected KEY = VALUE"},
      {"[volume a\n", "x.conf:1: unclosed '['"},
      {"[disk a]\n", "x.conf:1: expected a section [volume NAME]"},
      {"[volume]\n", "x.conf:1: expected a section [volume NAME]"},
      {"[volume a]\n[volume a]\n", "x.conf:2: volume 'a' appears twice"},
      {"[volume a]\n--store = x\n", "x.conf:2: bad key '--store'"},
      {"[volume a]\nvolume = b\n", "x.conf:2: 'volume' cannot be set here"},
      {"admin-socket = /x\n", "x.conf: no [volume NAME] section"},
  };
  for (const Case& c : cases) {
    auto file = ParseConfigText("x.conf", c.text);
    ASSERT_FALSE(file.ok()) << c.text;
    EXPECT_THAT(std::string(file.status().message()), HasSubstr(c.error)) << c.text;
  }
}

TEST(ConfigFileTest, MissingFileIsNotFound) {
  auto file = LoadConfigFile("/nonexistent/blockrepl.conf");
  EXPECT_TRUE(absl::IsNotFound(file.status()));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("/nonexistent/blockrepl.conf"));
}

}  // namespace
}  // namespace blockrepl
