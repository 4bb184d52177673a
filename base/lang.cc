#include "base/lang.h"

#include <cstdlib>
#include <string>

namespace sealpost {

Result<Lang> SelectLang(std::optional<std::string_view> flag) {
  if (flag) {
    if (*flag == "vi") return Lang::kVi;
    if (*flag == "en") return Lang::kEn;
    return Err(Status::InvalidArgument("--lang: expected 'vi' or 'en', got '" + std::string(*flag) + "'"));
  }
  for (const char* var : {"LC_ALL", "LC_MESSAGES", "LANG"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') {
      return std::string_view(v).starts_with("vi") ? Lang::kVi : Lang::kEn;
    }
  }
  return Lang::kEn;
}

}  // namespace sealpost
