#include "daemon/request_target.h"

#include "base/utf8.h"

namespace sealpost::daemon {
namespace {

Problem BadTarget(std::string en, std::string vi) {
  return Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ", std::move(en),
                 std::move(vi)};
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

// Splits at '/' (after the leading one); "" -> {""}.
std::vector<std::string_view> SplitSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (true) {
    size_t e = path.find('/', i);
    if (e == std::string_view::npos) {
      out.push_back(path.substr(i));
      return out;
    }
    out.push_back(path.substr(i, e - i));
    i = e + 1;
  }
}

}  // namespace

std::expected<std::string, Problem> PercentDecode(std::string_view in, bool plus_is_space,
                                                  const std::string& what_en,
                                                  const std::string& what_vi) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 1 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return std::unexpected(BadTarget(
            "The " + what_en + " has a '%' not followed by two hexadecimal digits.",
            "Trong " + what_vi + " có ký tự '%' không theo sau bởi hai chữ số thập lục phân."));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  if (!IsCleanUtf8Text(out)) {
    return std::unexpected(BadTarget(
        "The " + what_en + " is not UTF-8 text (a control character such as %00, or "
            "ill-formed UTF-8).",
        "Trong " + what_vi + " có dữ liệu không phải văn bản UTF-8 (ký tự điều khiển như %00, "
            "hoặc UTF-8 sai dạng)."));
  }
  return out;
}

std::expected<RequestTarget, Problem> ParseRequestTarget(std::string_view target) {
  if (target.size() > kMaxTargetBytes) {
    return std::unexpected(BadTarget(
        "The request target is longer than " + std::to_string(kMaxTargetBytes) + " bytes.",
        "Đích của yêu cầu dài hơn " + std::to_string(kMaxTargetBytes) + " byte."));
  }
  if (target.find('#') != std::string_view::npos) {
    return std::unexpected(BadTarget("The request target has a fragment ('#').",
                                     "Đích của yêu cầu có phần phân đoạn ('#')."));
  }
  // absolute-form: the authority is the connection's business, not ours.
  std::string rooted;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!StartsWithNoCase(target, scheme)) continue;
    size_t slash = target.find_first_of("/?", scheme.size());
    if (slash == std::string_view::npos) {
      target = "/";
    } else if (target[slash] == '?') {
      rooted = "/" + std::string(target.substr(slash));
      target = rooted;
    } else {
      target = target.substr(slash);
    }
    break;
  }
  if (target.empty() || target.front() != '/') {
    return std::unexpected(BadTarget("The request target must start with '/'.",
                                     "Đích của yêu cầu phải bắt đầu bằng '/'."));
  }
  RequestTarget out;
  const size_t q = target.find('?');
  std::string_view raw_path = target.substr(1, q == std::string_view::npos ? target.npos : q - 1);
  size_t n = 0;
  for (std::string_view raw : SplitSegments(raw_path)) {
    ++n;
    auto seg = PercentDecode(raw, false, "path segment " + std::to_string(n),
                             "đoạn đường dẫn " + std::to_string(n));
    if (!seg) return std::unexpected(seg.error());
    if (seg->find('/') != std::string::npos) {
      return std::unexpected(BadTarget(
          "Path segment " + std::to_string(n) + " has an encoded '/' (%2F).",
          "Đoạn đường dẫn " + std::to_string(n) + " có ký tự '/' được mã hoá (%2F)."));
    }
    if (*seg == "." || *seg == "..") {
      return std::unexpected(BadTarget(
          "Path segment " + std::to_string(n) + " is '.' or '..'.",
          "Đoạn đường dẫn " + std::to_string(n) + " là '.' hoặc '..'."));
    }
    out.path += '/';
    out.path += *seg;
    out.segments.push_back(std::move(*seg));
  }
  if (q == std::string_view::npos) return out;
  std::string_view query = target.substr(q + 1);
  size_t i = 0;
  while (i <= query.size()) {
    size_t e = query.find('&', i);
    if (e == std::string_view::npos) e = query.size();
    std::string_view piece = query.substr(i, e - i);
    i = e + 1;
    if (piece.empty()) continue;
    if (out.query.size() == kMaxQueryParameters) {
      return std::unexpected(BadTarget(
          "The query has more than " + std::to_string(kMaxQueryParameters) + " parameters.",
          "Chuỗi truy vấn có hơn " + std::to_string(kMaxQueryParameters) + " tham số."));
    }
    const size_t eq = piece.find('=');
    const std::string pos = std::to_string(out.query.size() + 1);
    auto name = PercentDecode(piece.substr(0, eq), true, "name of query parameter " + pos,
                              "tên của tham số truy vấn " + pos);
    if (!name) return std::unexpected(name.error());
    std::string value;
    if (eq != std::string_view::npos) {
      auto v = PercentDecode(piece.substr(eq + 1), true, "value of query parameter '" + *name + "'",
                             "giá trị của tham số truy vấn '" + *name + "'");
      if (!v) return std::unexpected(v.error());
      value = std::move(*v);
    }
    out.query.emplace_back(std::move(*name), std::move(value));
  }
  return out;
}

bool MatchRoute(std::string_view pattern, const RequestTarget& target,
                std::vector<std::string>* params) {
  params->clear();
  if (pattern.empty() || pattern.front() != '/') return false;
  std::vector<std::string_view> ps = SplitSegments(pattern.substr(1));
  if (ps.size() != target.segments.size()) return false;
  std::vector<std::string> found;
  for (size_t i = 0; i < ps.size(); ++i) {
    const std::string& seg = target.segments[i];
    if (ps[i].size() >= 2 && ps[i].front() == '{' && ps[i].back() == '}') {
      if (seg.empty()) return false;
      found.push_back(seg);
    } else if (ps[i] != seg) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

std::expected<std::map<std::string, std::string>, Problem> QueryMap(
    const RequestTarget& target, const std::set<std::string>& allowed) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : target.query) {
    if (allowed.count(k) == 0) {
      return std::unexpected(BadTarget("Unknown query parameter '" + k + "'.",
                                       "Tham số truy vấn không hợp lệ '" + k + "'."));
    }
    if (!out.emplace(k, v).second) {
      return std::unexpected(BadTarget("The query parameter '" + k + "' is repeated.",
                                       "Tham số truy vấn '" + k + "' bị lặp lại."));
    }
  }
  return out;
}

}  // namespace sealpost::daemon
