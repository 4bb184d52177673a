// UTF-8 decoding and validation, shared by every parser of untrusted text
// (URIs, checkpoints, manifests, JSON output).
#ifndef SEALPOST_BASE_UTF8_H_
#define SEALPOST_BASE_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sealpost {

// Decodes the UTF-8 sequence starting at s[i]. Returns its length (1-4) and
// stores the code point in *cp, or returns 0 for an ill-formed sequence
// (truncated, stray continuation byte, overlong form, surrogate, beyond
// U+10FFFF). REQUIRES: i < s.size().
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp);

// Well-formed UTF-8 (RFC 3629), any code points.
bool IsValidUtf8(std::string_view s);

// Well-formed UTF-8 without C0 controls, DEL or C1 controls: text that is
// safe to show and to put on one line of a signed document.
bool IsCleanUtf8Text(std::string_view s);

}  // namespace sealpost

#endif  // SEALPOST_BASE_UTF8_H_
