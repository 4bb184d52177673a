#include "base/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sealpost {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kWarn};

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  out += '"';
  return out;
}

// systemd.exec(5): "JOURNAL_STREAM=<device>:<inode>" of the stream stderr was
// connected to; compare with fstat(2) so a redirected stderr is not prefixed.
bool DetectJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }

bool StderrIsJournal() {
  static const bool journal = DetectJournal();
  return journal;
}

std::string FormatLogLine(LogLevel level, std::string_view msg, std::string_view kv, bool journal) {
  static const char* const kNames[] = {"debug", "info", "warn", "error"};
  // sd-daemon(3): SD_DEBUG 7, SD_INFO 6, SD_WARNING 4, SD_ERR 3.
  static const char* const kPrefixes[] = {"<7>", "<6>", "<4>", "<3>"};
  std::string line;
  if (journal) line = kPrefixes[static_cast<int>(level)];
  line += "level=";
  line += kNames[static_cast<int>(level)];
  line += " msg=" + Quote(msg);
  if (!kv.empty()) {
    line += ' ';
    // A newline inside kv would split the event over two journal entries.
    for (char c : kv) line += c == '\n' ? ' ' : c;
  }
  line += '\n';
  return line;
}

void Log(LogLevel level, std::string_view msg, std::string_view kv) {
  if (level < g_level.load()) return;
  std::string line = FormatLogLine(level, msg, kv, StderrIsJournal());
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sealpost
