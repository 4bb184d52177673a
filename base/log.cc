#include "base/log.h"

#include <atomic>
#include <cstdio>
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
}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }

void Log(LogLevel level, std::string_view msg, std::string_view kv) {
  if (level < g_level.load()) return;
  const char* names[] = {"debug", "info", "warn", "error"};
  std::string line = "level=";
  line += names[static_cast<int>(level)];
  line += " msg=" + Quote(msg);
  if (!kv.empty()) { line += ' '; line += kv; }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sealpost
