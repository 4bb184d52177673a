#include "policies/reference.h"

namespace sealpost::policies {
namespace {

constexpr std::string_view kPlaceholders[] = {"seq", "year", "union", "type"};

// Calls fn(placeholder_name) or fn_literal(text) in pattern order; returns
// the first error.
template <typename Placeholder, typename Literal>
Status Walk(std::string_view pattern, size_t* error_offset, Placeholder on_placeholder,
            Literal on_literal) {
  auto fail = [&](size_t at, std::string msg) {
    if (error_offset != nullptr) *error_offset = at;
    return Status::InvalidArgument(std::move(msg));
  };
  size_t i = 0;
  while (i < pattern.size()) {
    char c = pattern[i];
    if (c == '}') return fail(i, "unmatched '}' in reference pattern");
    if (c != '{') {
      size_t j = pattern.find_first_of("{}", i);
      if (j == std::string_view::npos) j = pattern.size();
      on_literal(pattern.substr(i, j - i));
      i = j;
      continue;
    }
    size_t close = pattern.find_first_of("{}", i + 1);
    if (close == std::string_view::npos || pattern[close] != '}') {
      return fail(i, "unclosed '{' in reference pattern");
    }
    std::string_view name = pattern.substr(i + 1, close - i - 1);
    bool known = false;
    for (std::string_view p : kPlaceholders) known = known || p == name;
    if (!known) {
      return fail(i, "unknown placeholder '{" + std::string(name) +
                         "}' in reference pattern; known: {seq}, {year}, {union}, {type}");
    }
    on_placeholder(name);
    i = close + 1;
  }
  return Status::Ok();
}

}  // namespace

Status ValidateReferencePattern(std::string_view pattern, size_t* error_offset) {
  int seq = 0;
  int year = 0;
  Status s = Walk(
      pattern, error_offset,
      [&](std::string_view name) {
        if (name == "seq") ++seq;
        if (name == "year") ++year;
      },
      [](std::string_view) {});
  if (!s.ok()) return s;
  if (error_offset != nullptr) *error_offset = 0;
  if (seq != 1) {
    return Status::InvalidArgument(seq == 0 ? "reference pattern lacks {seq}"
                                            : "reference pattern has {seq} more than once");
  }
  if (year == 0) {
    return Status::InvalidArgument(
        "reference pattern lacks {year} (numbers run per year, so the year must be in it)");
  }
  return Status::Ok();
}

Result<std::string> FormatReference(std::string_view pattern, uint64_t seq, int year,
                                    std::string_view union_code, std::string_view type_id) {
  SP_RETURN_IF_ERROR(ValidateReferencePattern(pattern));
  if (seq == 0) return Err(Status::InvalidArgument("reference sequence numbers start at 1"));
  std::string out;
  Status s = Walk(
      pattern, nullptr,
      [&](std::string_view name) {
        if (name == "seq") out += std::to_string(seq);
        if (name == "year") out += std::to_string(year);
        if (name == "union") out += union_code;
        if (name == "type") out += type_id;
      },
      [&](std::string_view lit) { out += lit; });
  if (!s.ok()) return Err(s);
  return out;
}

}  // namespace sealpost::policies
