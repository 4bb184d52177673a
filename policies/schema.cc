#include "base/civil_time.h"
#include "policies/schema.h"

#include <charconv>
#include <unordered_map>

namespace sealpost::policies::internal {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

template <typename Pred>
bool AllOf(std::string_view s, Pred p) {
  for (char c : s) {
    if (!p(c)) return false;
  }
  return true;
}

bool IsBoolWord(std::string_view s) {
  static constexpr std::string_view kWords[] = {
      "y",   "Y",   "yes",  "Yes",  "YES",  "n",     "N",     "no",    "No",  "NO", "true",
      "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF"};
  for (std::string_view w : kWords) {
    if (s == w) return true;
  }
  return false;
}

bool IsNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// YAML 1.1 float: [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)? (sign
// already stripped), and the 1.2 form 1e5.
bool LooksLikeFloat(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && (IsDigit(t[i]) || t[i] == '_')) ++i;
  size_t int_digits = i;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && (IsDigit(t[i]) || t[i] == '.')) ++i;
  } else if (int_digits == 0 || i == t.size()) {
    return false;
  }
  if (i == t.size()) return int_digits > 0 || t.size() > 1;
  if (t[i] != 'e' && t[i] != 'E') return false;
  ++i;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  return i < t.size() && AllOf(t.substr(i), IsDigit);
}

// [0-9][0-9_]*(:[0-5]?[0-9])+ (YAML 1.1 base 60).
bool LooksSexagesimal(std::string_view t) {
  size_t colon = t.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  if (!AllOf(t.substr(0, colon), [](char c) { return IsDigit(c) || c == '_'; })) return false;
  std::string_view rest = t.substr(colon);
  while (!rest.empty()) {
    if (rest[0] != ':') return false;
    size_t n = 1;
    while (n < rest.size() && IsDigit(rest[n])) ++n;
    if (n == 1 || n > 3 || (n == 3 && rest[1] > '5')) return false;
    rest = rest.substr(n);
  }
  return true;
}

std::string Shorten(std::string_view s) {
  if (s.size() <= 60) return std::string(s);
  size_t cut = 57;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

bool HasControl(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}


bool ScalarOrReport(const Reporter& r, const YamlNode& n, std::string_view what,
                    std::string_view expected) {
  if (n.reported) return false;
  if (!n.IsScalar()) {
    r.Error(n.mark, std::string(what) + " must be " + std::string(expected) + ", not " + Describe(n));
    return false;
  }
  if (n.IsNull()) {
    r.Error(n.mark, std::string(what) +
                        " has no value (null); give a value or leave the key out");
    return false;
  }
  return true;
}

}  // namespace

std::string Describe(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kMap:
      return "a mapping";
    case YamlNode::Kind::kSeq:
      return "a list";
    case YamlNode::Kind::kScalar:
      break;
  }
  if (node.style == ScalarStyle::kQuoted) return "quoted text \"" + Shorten(node.value) + "\"";
  return "'" + Shorten(node.value) + "'";
}

std::optional<std::string_view> Yaml11NonStringType(std::string_view s) {
  if (IsNullWord(s)) return "null";
  if (IsBoolWord(s)) return "a boolean";
  std::string_view t = s;
  bool sign = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    t.remove_prefix(1);
    sign = true;
  }
  if (t.empty()) return std::nullopt;
  if (t[0] != '.' && !IsDigit(t[0])) return std::nullopt;  // fast path: names, ids
  if (t == ".inf" || t == ".Inf" || t == ".INF" || t == ".nan" || t == ".NaN" || t == ".NAN") {
    return "a number";
  }
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'b' || t[1] == 'x' || t[1] == 'o')) {
    std::string_view digits = t.substr(2);
    bool all = t[1] == 'x' ? AllOf(digits, [](char c) { return IsHex(c) || c == '_'; })
               : t[1] == 'b' ? AllOf(digits, [](char c) { return c == '0' || c == '1' || c == '_'; })
                             : AllOf(digits, [](char c) { return (c >= '0' && c <= '7') || c == '_'; });
    if (all) return "a number";
  }
  if (AllOf(t, [](char c) { return IsDigit(c) || c == '_'; })) {
    bool plain_decimal = !sign && t.find('_') == std::string_view::npos && (t == "0" || t[0] != '0');
    if (plain_decimal) return std::nullopt;  // every reader keeps "123" as the text 123
    return "a number";
  }
  if (LooksSexagesimal(t) || LooksLikeFloat(t)) return "a number";
  return std::nullopt;
}

MapView::MapView(const Reporter& r, const YamlNode& node, std::string_view what,
                 std::initializer_list<std::string_view> allowed)
    : r_(r), what_(what), mark_(node.mark) {
  if (node.reported) return;
  if (!node.IsMap()) {
    r.Error(node.mark, std::string(what) + " must be a mapping, not " + Describe(node));
    return;
  }
  map_ = &node;
  for (const YamlMapEntry& e : node.entries) {
    bool known = false;
    for (std::string_view a : allowed) known = known || a == e.key;
    if (known) continue;
    std::string list;
    for (std::string_view a : allowed) {
      if (!list.empty()) list += ", ";
      list += a;
    }
    r.Error(e.key_mark, "unknown key '" + Shorten(e.key) + "' in " + what_ + "; expected one of: " + list);
  }
}

const YamlNode* MapView::Get(std::string_view key) const {
  if (map_ == nullptr) return nullptr;
  for (const YamlMapEntry& e : map_->entries) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

const YamlNode* MapView::Require(std::string_view key) const {
  if (map_ == nullptr) return nullptr;
  const YamlNode* n = Get(key);
  if (n == nullptr) r_.Error(mark_, what_ + " is missing required key '" + std::string(key) + "'");
  return n;
}

std::optional<std::string> ReadString(const Reporter& r, const YamlNode& n, std::string_view what) {
  if (!ScalarOrReport(r, n, what, "text")) return std::nullopt;
  if (n.style == ScalarStyle::kPlain) {
    if (auto type = Yaml11NonStringType(n.value)) {
      r.Error(n.mark, std::string(what) + ": plain '" + Shorten(n.value) + "' is read by YAML 1.1 as " +
                          std::string(*type) + "; quote it (\"" + Shorten(n.value) +
                          "\") if you mean the text");
      return std::nullopt;
    }
  }
  return n.value;
}

std::optional<std::string> ReadNonEmptyString(const Reporter& r, const YamlNode& n,
                                              std::string_view what, size_t max_bytes) {
  auto s = ReadString(r, n, what);
  if (!s) return std::nullopt;
  if (s->empty()) {
    r.Error(n.mark, std::string(what) + " must not be empty");
    return std::nullopt;
  }
  if (s->size() > max_bytes) {
    r.Error(n.mark, std::string(what) + " is longer than " + std::to_string(max_bytes) + " bytes");
    return std::nullopt;
  }
  if (HasControl(*s)) {
    r.Error(n.mark, std::string(what) + " contains a control character (line break, tab, ...)");
    return std::nullopt;
  }
  return s;
}

std::optional<std::string> ReadId(const Reporter& r, const YamlNode& n, std::string_view what) {
  auto s = ReadString(r, n, what);
  if (!s) return std::nullopt;
  bool ok = !s->empty() && s->size() <= 64 && (IsDigit((*s)[0]) || ((*s)[0] >= 'a' && (*s)[0] <= 'z')) &&
            AllOf(*s, [](char c) {
              return IsDigit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_' || c == '.';
            });
  if (!ok) {
    r.Error(n.mark, std::string(what) + " '" + Shorten(*s) +
                        "' is not a valid id (1-64 characters of a-z, 0-9, '.', '_', '-', "
                        "starting with a letter or digit)");
    return std::nullopt;
  }
  return s;
}

std::optional<uint64_t> ReadUint(const Reporter& r, const YamlNode& n, std::string_view what,
                                 uint64_t min, uint64_t max) {
  if (!ScalarOrReport(r, n, what, "an integer")) return std::nullopt;
  const std::string& v = n.value;
  if (n.style != ScalarStyle::kPlain) {
    r.Error(n.mark, std::string(what) + " must be a plain integer, not " + Describe(n));
    return std::nullopt;
  }
  if (v.size() > 1 && v[0] == '0' && AllOf(v, IsDigit)) {
    r.Error(n.mark, std::string(what) + ": '" + Shorten(v) +
                        "' has a leading zero (YAML 1.1 reads it as octal); write the number "
                        "without leading zeros");
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (v.empty() || !IsDigit(v[0]) || end != v.data() + v.size()) {
    r.Error(n.mark, std::string(what) + " must be a non-negative decimal integer, not " + Describe(n));
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    r.Error(n.mark, std::string(what) + " must be between " + std::to_string(min) + " and " +
                        std::to_string(max) + ", not " + Shorten(v));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ReadBool(const Reporter& r, const YamlNode& n, std::string_view what) {
  if (!ScalarOrReport(r, n, what, "true or false")) return std::nullopt;
  if (n.style == ScalarStyle::kPlain && n.value == "true") return true;
  if (n.style == ScalarStyle::kPlain && n.value == "false") return false;
  if (n.style == ScalarStyle::kPlain && IsBoolWord(n.value)) {
    r.Error(n.mark, std::string(what) + " must be true or false; '" + n.value +
                        "' is refused (YAML 1.1 reads yes/no/on/off/y/n as booleans, other tools "
                        "do not)");
  } else {
    r.Error(n.mark, std::string(what) + " must be plain true or false, not " + Describe(n));
  }
  return std::nullopt;
}

std::optional<size_t> ReadEnum(const Reporter& r, const YamlNode& n, std::string_view what,
                               std::span<const std::string_view> names) {
  auto s = ReadString(r, n, what);
  if (!s) return std::nullopt;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == *s) return i;
  }
  std::string list;
  for (std::string_view name : names) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  r.Error(n.mark, std::string(what) + " '" + Shorten(*s) + "' is not one of: " + list);
  return std::nullopt;
}

std::optional<int64_t> ReadDate(const Reporter& r, const YamlNode& n, std::string_view what) {
  if (!ScalarOrReport(r, n, what, "a date (YYYY-MM-DD)")) return std::nullopt;
  const std::string& v = n.value;
  bool shape = v.size() == 10 && v[4] == '-' && v[7] == '-' &&
               AllOf(std::string_view(v).substr(0, 4), IsDigit) &&
               AllOf(std::string_view(v).substr(5, 2), IsDigit) &&
               AllOf(std::string_view(v).substr(8, 2), IsDigit);
  if (shape) {
    int y = std::stoi(v.substr(0, 4));
    unsigned m = static_cast<unsigned>(std::stoi(v.substr(5, 2)));
    unsigned d = static_cast<unsigned>(std::stoi(v.substr(8, 2)));
    static constexpr unsigned kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y >= 1970 && m >= 1 && m <= 12 && d >= 1 && d <= kDays[m - 1] && (m != 2 || d <= 28 || leap)) {
      return DaysFromCivil(y, m, d);
    }
  }
  r.Error(n.mark, std::string(what) + " must be a date YYYY-MM-DD (from 1970), not " + Describe(n));
  return std::nullopt;
}

std::optional<std::string> ReadUrl(const Reporter& r, const YamlNode& n, std::string_view what,
                                   std::initializer_list<std::string_view> schemes) {
  auto s = ReadNonEmptyString(r, n, what, 2048);
  if (!s) return std::nullopt;
  for (std::string_view scheme : schemes) {
    if (s->starts_with(scheme) && s->size() > scheme.size() && (*s)[scheme.size()] != '/' &&
        s->find(' ') == std::string::npos) {
      return s;
    }
  }
  std::string list;
  for (std::string_view scheme : schemes) {
    if (!list.empty()) list += " or ";
    list += scheme;
  }
  r.Error(n.mark, std::string(what) + " must be a URL starting with " + list + ", not " + Describe(n));
  return std::nullopt;
}

std::optional<std::string> ReadEmail(const Reporter& r, const YamlNode& n, std::string_view what) {
  auto s = ReadNonEmptyString(r, n, what, 254);
  if (!s) return std::nullopt;
  size_t at = s->find('@');
  bool ok = at != std::string::npos && at > 0 && s->find('@', at + 1) == std::string::npos &&
            s->find('.', at) != std::string::npos && s->back() != '.' &&
            s->find(' ') == std::string::npos;
  if (!ok) {
    r.Error(n.mark, std::string(what) + " '" + Shorten(*s) + "' is not an e-mail address");
    return std::nullopt;
  }
  return s;
}

std::optional<std::string> ReadHex(const Reporter& r, const YamlNode& n, std::string_view what,
                                   size_t bytes) {
  auto s = ReadString(r, n, what);
  if (!s) return std::nullopt;
  std::string hex;
  bool ok = true;
  for (char c : *s) {
    if (c == ':') continue;
    if (!IsHex(c)) ok = false;
    hex += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  }
  if (bytes != 0) {
    ok = ok && hex.size() == 2 * bytes;
  } else {
    ok = ok && !hex.empty() && hex.size() <= 40;
  }
  if (!ok) {
    r.Error(n.mark, std::string(what) + " must be " +
                        (bytes != 0 ? std::to_string(2 * bytes) + " hex digits" : std::string("1-40 hex digits")) +
                        ", not " + Describe(n));
    return std::nullopt;
  }
  return hex;
}

std::optional<std::string> ReadMediaType(const Reporter& r, const YamlNode& n,
                                         std::string_view what) {
  auto s = ReadNonEmptyString(r, n, what, 255);
  if (!s) return std::nullopt;
  std::string lower;
  for (char c : *s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  auto token = [](std::string_view t) {
    return !t.empty() && (IsDigit(t[0]) || (t[0] >= 'a' && t[0] <= 'z')) && AllOf(t, [](char c) {
      return IsDigit(c) || (c >= 'a' && c <= 'z') || std::string_view("!#$&^_.+-").find(c) != std::string_view::npos;
    });
  };
  size_t slash = lower.find('/');
  if (slash == std::string::npos || !token(std::string_view(lower).substr(0, slash)) ||
      !token(std::string_view(lower).substr(slash + 1))) {
    r.Error(n.mark, std::string(what) + " '" + Shorten(*s) +
                        "' is not a media type (type/subtype, e.g. application/pdf)");
    return std::nullopt;
  }
  return lower;
}

std::vector<ListItem> ReadList(
    const Reporter& r, const YamlNode& n, std::string_view what, bool allow_empty,
    const std::function<std::optional<std::string>(const YamlNode&)>& item) {
  std::vector<ListItem> out;
  if (n.reported) return out;
  if (!n.IsSeq()) {
    if (n.IsNull()) {
      r.Error(n.mark, std::string(what) + " has no value (null); give a list or leave the key out");
    } else {
      r.Error(n.mark, std::string(what) + " must be a list, not " + Describe(n));
    }
    return out;
  }
  if (n.items.empty() && !allow_empty) {
    r.Error(n.mark, std::string(what) + " must not be empty");
    return out;
  }
  std::unordered_map<std::string, Mark> seen;
  for (const YamlNode& it : n.items) {
    auto key = item(it);
    if (!key) continue;
    auto [pos, inserted] = seen.try_emplace(*key, it.mark);
    if (!inserted) {
      r.Error(it.mark, std::string(what) + ": '" + Shorten(*key) + "' is listed twice (first at line " +
                           std::to_string(pos->second.line) + ", column " +
                           std::to_string(pos->second.column) + ")");
      continue;
    }
    out.push_back(ListItem{std::move(*key), it.mark});
  }
  return out;
}

}  // namespace sealpost::policies::internal
