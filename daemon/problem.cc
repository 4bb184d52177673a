#include "daemon/problem.h"

#include <cctype>
#include <cstdlib>

#include "base/json.h"

namespace sealpost::daemon {

std::string ProblemJson(const Problem& p, Lang lang, std::string_view request_id) {
  std::string out = "{\"type\":" + JsonString(std::string(kProblemBase) + p.slug);
  out += ",\"title\":" + JsonString(Tr(lang, p.title_en, p.title_vi));
  out += ",\"status\":" + std::to_string(p.status);
  out += ",\"detail\":" + JsonString(Tr(lang, p.detail_en, p.detail_vi));
  if (!request_id.empty()) out += ",\"request_id\":" + JsonString(request_id);
  if (!p.extension_members.empty()) out += "," + p.extension_members;
  out += "}\n";
  return out;
}

Lang LangFromAcceptLanguage(std::string_view header, Lang fallback) {
  // Ranges in the order the client listed them; the first vi/en with q>0
  // wins (clients list their preference first; q-sorting is not needed for
  // two languages).
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t comma = header.find(',', pos);
    std::string_view item =
        header.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? header.size() + 1 : comma + 1;
    size_t semi = item.find(';');
    std::string_view range = item.substr(0, semi);
    while (!range.empty() && range.front() == ' ') range.remove_prefix(1);
    while (!range.empty() && range.back() == ' ') range.remove_suffix(1);
    bool zero_q = false;
    if (semi != std::string_view::npos) {
      std::string_view params = item.substr(semi + 1);
      size_t q = params.find("q=");
      if (q != std::string_view::npos) {
        std::string v(params.substr(q + 2));
        zero_q = std::strtod(v.c_str(), nullptr) <= 0.0;
      }
    }
    if (zero_q || range.size() < 2) continue;
    std::string primary;
    for (char c : range.substr(0, range.find('-'))) primary += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (primary == "vi") return Lang::kVi;
    if (primary == "en") return Lang::kEn;
  }
  return fallback;
}

}  // namespace sealpost::daemon
