// Hex and base64.
#ifndef SEALPOST_BASE_ENCODING_H_
#define SEALPOST_BASE_ENCODING_H_

#include <string>
#include <string_view>

#include "base/status.h"

namespace sealpost {

std::string HexEncode(std::string_view bytes, bool upper = false);
Result<std::string> HexDecode(std::string_view hex);
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view b64);

}  // namespace sealpost

#endif  // SEALPOST_BASE_ENCODING_H_
