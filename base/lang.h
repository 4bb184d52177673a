// The language of messages a person reads: Vietnamese or English.
#ifndef SEALPOST_BASE_LANG_H_
#define SEALPOST_BASE_LANG_H_

#include <optional>
#include <string_view>

#include "base/status.h"

namespace sealpost {

enum class Lang { kEn, kVi };

// `--lang vi|en` wins; else LC_ALL, LC_MESSAGES, LANG (first one set and
// non-empty decides; a value starting with "vi" selects Vietnamese); else English.
Result<Lang> SelectLang(std::optional<std::string_view> flag);

// Picks the text for `lang`.
inline std::string_view Tr(Lang lang, std::string_view en, std::string_view vi) {
  return lang == Lang::kVi ? vi : en;
}

}  // namespace sealpost

#endif  // SEALPOST_BASE_LANG_H_
