// One line per event, key=value, to stderr. Never pass a secret.
//
// Under systemd (JOURNAL_STREAM names the device and inode of our stderr,
// systemd.exec(5)) each line starts with the sd-daemon(3) priority prefix
// ("<7>" debug, "<6>" info, "<4>" warn, "<3>" error) so journald keeps the
// level; stderr redirected elsewhere gets no prefix.
//
// Thread-safety: every function may be called from any thread; one line is
// one write(2).
#ifndef SEALPOST_BASE_LOG_H_
#define SEALPOST_BASE_LOG_H_

#include <string>
#include <string_view>

namespace sealpost {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void SetLogLevel(LogLevel level);
// Writes "level=<l> msg=<quoted msg>" and the given key=value text.
void Log(LogLevel level, std::string_view msg, std::string_view kv = {});

// The whole line Log() writes (with the newline); `journal`: with the
// sd-daemon priority prefix. Exposed for tests.
std::string FormatLogLine(LogLevel level, std::string_view msg, std::string_view kv, bool journal);

// True when JOURNAL_STREAM matches stderr's device and inode (read once).
bool StderrIsJournal();

}  // namespace sealpost

#endif  // SEALPOST_BASE_LOG_H_
