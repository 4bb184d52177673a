// Reference numbers of issued documents, e.g. "15/2025/CĐ-BC" from the
// pattern "{seq}/{year}/CĐ-{union}". Numbers run per union, per document
// type, per year; keeping the counters (durably, gap-free) is the daemon's
// job (its sequence store), not this module's: here only the pattern is
// checked and filled in.
#ifndef SEALPOST_POLICIES_REFERENCE_H_
#define SEALPOST_POLICIES_REFERENCE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sealpost::policies {

// Placeholders: {seq} (required), {year} (required), {union} (the issuing
// union's code), {type} (the document type's id). Literal braces are not
// allowed. On error, *error_offset (if given) is the byte offset in
// `pattern` of the offending character.
[[nodiscard]] Status ValidateReferencePattern(std::string_view pattern,
                                              size_t* error_offset = nullptr);

// Fills in a pattern that passed ValidateReferencePattern; InvalidArgument
// if it did not, or if seq is 0.
[[nodiscard]] Result<std::string> FormatReference(std::string_view pattern, uint64_t seq, int year,
                                                  std::string_view union_code,
                                                  std::string_view type_id);

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_REFERENCE_H_
