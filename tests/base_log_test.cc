// base/log: key=value lines; under systemd (JOURNAL_STREAM matching stderr)
// the sd-daemon(3) priority prefix, checked in a child process whose stderr
// is a file, as journald's stream would be.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "base/log.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

// Runs Log() at every level in a child whose stderr is `path`; with
// `journal_env` set to "match" JOURNAL_STREAM names that file, else the
// given text (empty: unset).
std::string LogInChild(const std::string& path, const std::string& journal_env) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::dup2(fd, STDERR_FILENO) < 0) ::_exit(3);
    struct stat st {};
    ::fstat(STDERR_FILENO, &st);
    if (journal_env == "match") {
      std::string v = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
      ::setenv("JOURNAL_STREAM", v.c_str(), 1);
    } else if (!journal_env.empty()) {
      ::setenv("JOURNAL_STREAM", journal_env.c_str(), 1);
    } else {
      ::unsetenv("JOURNAL_STREAM");
    }
    SetLogLevel(LogLevel::kDebug);
    Log(LogLevel::kDebug, "d");
    Log(LogLevel::kInfo, "started", "port=1");
    Log(LogLevel::kWarn, "slow");
    Log(LogLevel::kError, "broken", "error=\"x\"\nlevel=info msg=\"forged\"");
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return testing::ReadTestFile(path);
}

TEST(LogTest, UnderJournalStreamEveryLineCarriesItsSdDaemonPriority) {
  testing::TempDir dir;
  std::string out = LogInChild(dir.file("stderr"), "match");
  EXPECT_EQ(out,
            "<7>level=debug msg=\"d\"\n"
            "<6>level=info msg=\"started\" port=1\n"
            "<4>level=warn msg=\"slow\"\n"
            "<3>level=error msg=\"broken\" error=\"x\" level=info msg=\"forged\"\n");
}

TEST(LogTest, StderrNotTheJournalsStreamGetsNoPrefix) {
  testing::TempDir dir;
  // JOURNAL_STREAM inherited from a parent whose stderr was the journal, but
  // ours was redirected: no prefix.
  std::string out = LogInChild(dir.file("stderr"), "1:2");
  EXPECT_EQ(out.rfind("level=debug msg=\"d\"\n", 0), 0u) << out;
  EXPECT_EQ(out.find('<'), std::string::npos) << out;
  EXPECT_EQ(LogInChild(dir.file("stderr2"), ""), out);
}

TEST(LogTest, FormatKeepsOneEventOnOneLine) {
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "a\nb", "k=1\nk=2", false),
            "level=info msg=\"a\\nb\" k=1 k=2\n");
}

}  // namespace
}  // namespace sealpost
