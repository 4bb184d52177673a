// One line per event, key=value, to stderr. Never pass a secret.
#ifndef SEALPOST_BASE_LOG_H_
#define SEALPOST_BASE_LOG_H_

#include <string_view>

namespace sealpost {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void SetLogLevel(LogLevel level);
// Writes "level=<l> msg=<quoted msg>" and the given key=value text.
void Log(LogLevel level, std::string_view msg, std::string_view kv = {});

}  // namespace sealpost

#endif  // SEALPOST_BASE_LOG_H_
