#include "base/utf8.h"
#include "pkcs11/uri.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

namespace sealpost::pkcs11 {
namespace {

constexpr std::string_view kScheme = "pkcs11:";

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// RFC 7512 pk11-res-avail.
bool IsResAvail(unsigned char c) {
  return std::string_view(":[]@!$'()*+,=").find(static_cast<char>(c)) != std::string_view::npos;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status UriError(std::string_view attr, const std::string& what) {
  std::string m = "PKCS#11 URI: ";
  if (!attr.empty()) m += "attribute '" + std::string(attr) + "': ";
  return Status::InvalidArgument(m + what);
}

std::string Printable(unsigned char c) {
  if (c == ' ') return "' ' (space)";
  if (c < 0x20 || c >= 0x7f) {
    static const char* kHex = "0123456789ABCDEF";
    return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
  }
  return std::string("'") + static_cast<char>(c) + "'";
}

// Decodes one value. `in_query` selects the query's extra allowed characters.
Result<std::string> Decode(std::string_view attr, std::string_view raw, bool in_query) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == '%') {
      int hi = i + 1 < raw.size() ? HexValue(raw[i + 1]) : -1;
      int lo = i + 2 < raw.size() ? HexValue(raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return Err(UriError(attr, "bad percent-encoding \"" +
                                      std::string(raw.substr(i, std::min<size_t>(3, raw.size() - i))) +
                                      "\" (expected % and two hex digits)"));
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
      continue;
    }
    bool ok = IsUnreserved(c) || IsResAvail(c) || (!in_query && c == '&') ||
              (in_query && (c == '/' || c == '?' || c == '|'));
    if (!ok) {
      return Err(UriError(attr, Printable(c) + " is not allowed here; percent-encode it (%" +
                                    std::string(1, "0123456789ABCDEF"[c >> 4]) +
                                    std::string(1, "0123456789ABCDEF"[c & 15]) + ")"));
    }
    out += static_cast<char>(c);
  }
  return out;
}

struct TextAttr {
  std::string_view name;
  std::optional<std::string> Uri::*field;
  size_t max_len;  // 0: no limit
};

const std::vector<TextAttr>& PathTextAttrs() {
  // Limits are the fixed field sizes of CK_TOKEN_INFO / CK_SLOT_INFO / CK_INFO:
  // a longer value can never match, so it is an error rather than a silent miss.
  static const std::vector<TextAttr> attrs = {
      {"token", &Uri::token, 32},
      {"manufacturer", &Uri::manufacturer, 32},
      {"serial", &Uri::serial, 16},
      {"model", &Uri::model, 16},
      {"object", &Uri::object, 0},
      {"library-manufacturer", &Uri::library_manufacturer, 32},
      {"library-description", &Uri::library_description, 32},
      {"slot-description", &Uri::slot_description, 64},
      {"slot-manufacturer", &Uri::slot_manufacturer, 32},
  };
  return attrs;
}

Status SetOnce(std::string_view name, bool already) {
  if (already) return UriError(name, "appears more than once");
  return Status::Ok();
}

Status ParsePathAttr(std::string_view name, std::string_view raw, Uri* uri) {
  for (const auto& a : PathTextAttrs()) {
    if (name != a.name) continue;
    Status s = SetOnce(name, (uri->*a.field).has_value());
    if (!s.ok()) return s;
    auto v = Decode(name, raw, false);
    if (!v) return v.error();
    if (!IsValidUtf8(*v)) return UriError(name, "value is not valid UTF-8");
    if (a.max_len != 0 && v->size() > a.max_len) {
      return UriError(name, "value is " + std::to_string(v->size()) + " bytes, longer than the " +
                                std::to_string(a.max_len) + " bytes PKCS#11 allows");
    }
    uri->*a.field = std::move(*v);
    return Status::Ok();
  }
  if (name == "id") {
    Status s = SetOnce(name, uri->id.has_value());
    if (!s.ok()) return s;
    auto v = Decode(name, raw, false);
    if (!v) return v.error();
    if (v->empty()) return UriError(name, "value is empty");
    uri->id = std::move(*v);
    return Status::Ok();
  }
  if (name == "type") {
    Status s = SetOnce(name, uri->type.has_value());
    if (!s.ok()) return s;
    auto v = Decode(name, raw, false);
    if (!v) return v.error();
    if (*v == "private") uri->type = ObjectType::kPrivate;
    else if (*v == "public") uri->type = ObjectType::kPublic;
    else if (*v == "cert") uri->type = ObjectType::kCert;
    else if (*v == "secret-key") uri->type = ObjectType::kSecretKey;
    else if (*v == "data") uri->type = ObjectType::kData;
    else return UriError(name, "\"" + *v + "\" is not one of private, public, cert, secret-key, data");
    return Status::Ok();
  }
  if (name == "slot-id") {
    Status s = SetOnce(name, uri->slot_id.has_value());
    if (!s.ok()) return s;
    auto v = Decode(name, raw, false);
    if (!v) return v.error();
    if (v->empty() || v->size() > 19 || v->find_first_not_of("0123456789") != std::string::npos) {
      return UriError(name, "\"" + *v + "\" is not a decimal slot number");
    }
    uri->slot_id = std::stoul(*v);
    return Status::Ok();
  }
  if (name == "library-version") {
    Status s = SetOnce(name, uri->library_version.has_value());
    if (!s.ok()) return s;
    auto v = Decode(name, raw, false);
    if (!v) return v.error();
    size_t dot = v->find('.');
    std::string major = v->substr(0, dot);
    std::string minor = dot == std::string::npos ? "0" : v->substr(dot + 1);
    auto digits = [](const std::string& x) {
      return !x.empty() && x.size() <= 3 && x.find_first_not_of("0123456789") == std::string::npos;
    };
    if (!digits(major) || !digits(minor)) {
      return UriError(name, "\"" + *v + "\" is not a version of the form M or M.N");
    }
    uri->library_version = std::move(*v);
    return Status::Ok();
  }
  if (name == "pin-value" || name == "pin-source" || name == "module-path" ||
      name == "module-name") {
    return UriError(name, "is a query attribute: put it after '?'");
  }
  return UriError("", "unknown path attribute '" + std::string(name) + "'");
}

Status ParseQueryAttr(std::string_view name, std::string_view raw, Uri* uri) {
  if (name == "pin-value") {
    // Deliberately says nothing about the value.
    return UriError(name, "is refused: a PIN is never taken from a URI or a command line; "
                          "use --pin-file, pin-source=file:/path, or the systemd credential");
  }
  std::optional<std::string>* field = nullptr;
  if (name == "module-path") field = &uri->module_path;
  else if (name == "module-name") field = &uri->module_name;
  else if (name == "pin-source") field = &uri->pin_source;
  if (field == nullptr) {
    if (name == "token" || name == "object" || name == "id" || name == "type" ||
        name == "serial" || name == "slot-id") {
      return UriError(name, "is a path attribute: put it before '?'");
    }
    return UriError("", "unknown query attribute '" + std::string(name) + "'");
  }
  Status s = SetOnce(name, field->has_value());
  if (!s.ok()) return s;
  auto v = Decode(name, raw, true);
  if (!v) return v.error();
  if (v->empty()) return UriError(name, "value is empty");
  if (v->find('\0') != std::string::npos) return UriError(name, "value contains a NUL byte");
  if (name == "module-path" && (*v)[0] != '/') {
    return UriError(name, "\"" + *v + "\" is not an absolute path");
  }
  if (name == "module-name" && v->find('/') != std::string::npos) {
    return UriError(name, "must be a module name, not a path (use module-path)");
  }
  *field = std::move(*v);
  return Status::Ok();
}

// Splits "name=value" and checks the name's characters.
Status SplitAttr(std::string_view part, bool in_query, std::string_view* name,
                 std::string_view* value) {
  size_t eq = part.find('=');
  std::string_view where = in_query ? "query" : "path";
  if (eq == std::string_view::npos) {
    return UriError("", std::string(where) + " component \"" +
                            std::string(part.substr(0, 40)) + "\" has no '='");
  }
  *name = part.substr(0, eq);
  *value = part.substr(eq + 1);
  if (name->empty()) return UriError("", std::string(where) + " component with an empty name");
  for (char c : *name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return UriError("", "attribute name \"" + std::string(*name) + "\" is malformed");
  }
  return Status::Ok();
}

}  // namespace

std::string_view ObjectTypeName(ObjectType t) {
  switch (t) {
    case ObjectType::kPrivate: return "private";
    case ObjectType::kPublic: return "public";
    case ObjectType::kCert: return "cert";
    case ObjectType::kSecretKey: return "secret-key";
    case ObjectType::kData: return "data";
  }
  return "private";
}

bool Uri::SelectsToken() const {
  return token || manufacturer || serial || model || slot_id || slot_description ||
         slot_manufacturer;
}


Result<Uri> ParseUri(std::string_view text) {
  if (text.size() > 8192) return Err(UriError("", "longer than 8192 characters"));
  if (text.size() < kScheme.size() ||
      std::string(text.substr(0, kScheme.size())) != std::string(kScheme)) {
    // Scheme names are case-insensitive (RFC 3986).
    std::string head(text.substr(0, std::min(text.size(), kScheme.size())));
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head != kScheme) return Err(UriError("", "does not start with \"pkcs11:\""));
  }
  std::string_view rest = text.substr(kScheme.size());
  std::string_view path = rest, query;
  bool has_query = false;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    path = rest.substr(0, q);
    query = rest.substr(q + 1);
    has_query = true;
  }
  if (size_t h = rest.find('#'); h != std::string_view::npos) {
    return Err(UriError("", "a fragment ('#') is not allowed"));
  }
  Uri uri;
  auto each = [](std::string_view s, char sep, auto&& fn) -> Status {
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(sep, start);
      if (end == std::string_view::npos) end = s.size();
      std::string_view part = s.substr(start, end - start);
      if (part.empty()) {
        if (end == s.size() && start == end) break;  // trailing separator
        return UriError("", std::string("empty component between '") + sep + "' separators");
      }
      Status st = fn(part);
      if (!st.ok()) return st;
      start = end + 1;
    }
    return Status::Ok();
  };
  if (!path.empty()) {
    Status s = each(path, ';', [&](std::string_view part) {
      std::string_view name, value;
      Status st = SplitAttr(part, false, &name, &value);
      if (!st.ok()) return st;
      return ParsePathAttr(name, value, &uri);
    });
    if (!s.ok()) return Err(s);
  }
  if (has_query && !query.empty()) {
    Status s = each(query, '&', [&](std::string_view part) {
      std::string_view name, value;
      Status st = SplitAttr(part, true, &name, &value);
      if (!st.ok()) return st;
      return ParseQueryAttr(name, value, &uri);
    });
    if (!s.ok()) return Err(s);
  }
  if (uri.module_path && uri.module_name) {
    return Err(UriError("", "give module-path or module-name, not both"));
  }
  return uri;
}

std::string PercentEncode(std::string_view value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (IsUnreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string FormatUri(const Uri& uri) {
  std::vector<std::string> path;
  auto add = [&](std::string_view name, const std::optional<std::string>& v) {
    if (v) path.push_back(std::string(name) + "=" + PercentEncode(*v));
  };
  add("library-manufacturer", uri.library_manufacturer);
  add("library-description", uri.library_description);
  if (uri.library_version) path.push_back("library-version=" + *uri.library_version);
  add("slot-manufacturer", uri.slot_manufacturer);
  add("slot-description", uri.slot_description);
  if (uri.slot_id) path.push_back("slot-id=" + std::to_string(*uri.slot_id));
  add("manufacturer", uri.manufacturer);
  add("model", uri.model);
  add("serial", uri.serial);
  add("token", uri.token);
  add("object", uri.object);
  add("id", uri.id);
  if (uri.type) path.push_back("type=" + std::string(ObjectTypeName(*uri.type)));
  std::string out(kScheme);
  for (size_t i = 0; i < path.size(); ++i) {
    if (i) out += ';';
    out += path[i];
  }
  std::vector<std::string> query;
  if (uri.module_name) query.push_back("module-name=" + PercentEncode(*uri.module_name));
  if (uri.module_path) {
    // '/' may stay literal in a query value.
    std::string v;
    for (char c : *uri.module_path) {
      if (c == '/') v += '/';
      else v += PercentEncode(std::string_view(&c, 1));
    }
    query.push_back("module-path=" + v);
  }
  if (uri.pin_source) query.push_back("pin-source=" + PercentEncode(*uri.pin_source));
  for (size_t i = 0; i < query.size(); ++i) {
    out += i ? '&' : '?';
    out += query[i];
  }
  return out;
}

}  // namespace sealpost::pkcs11
