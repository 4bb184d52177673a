#include "base/encoding.h"

#include <openssl/evp.h>

namespace sealpost {

std::string HexEncode(std::string_view bytes, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

static int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return Err(Status::DataError("hex string has an odd length"));
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexVal(hex[i]), lo = HexVal(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Err(Status::DataError("invalid hex digit at offset " + std::to_string(hi < 0 ? i : i + 1)));
    }
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n);
  return out;
}

Result<std::string> Base64Decode(std::string_view b64) {
  if (b64.size() % 4 != 0) return Err(Status::DataError("base64 length is not a multiple of 4"));
  std::string out(3 * (b64.size() / 4) + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return Err(Status::DataError("invalid base64"));
  size_t pad = 0;
  if (!b64.empty() && b64.back() == '=') pad++;
  if (b64.size() > 1 && b64[b64.size() - 2] == '=') pad++;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace sealpost
