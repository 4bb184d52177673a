// JSON string literals for machine output (reports, manifests, --json).
#ifndef SEALPOST_BASE_JSON_H_
#define SEALPOST_BASE_JSON_H_

#include <string>
#include <string_view>

namespace sealpost {

// The JSON string literal (quotes included) of UTF-8 text: '"', '\\' and
// control characters escaped (\n, \t, ..., else \u00XX; DEL as \u007f),
// other characters copied; ill-formed UTF-8 bytes are replaced by U+FFFD, so
// the output is always valid JSON.
std::string JsonString(std::string_view s);

}  // namespace sealpost

#endif  // SEALPOST_BASE_JSON_H_
