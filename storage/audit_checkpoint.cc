// The trusted-checkpoint file reader of the audit.
#include "base/encoding.h"
#include "crypto/verify.h"
#include "storage/audit.h"

namespace sealpost::storage {
Result<TrustedCheckpoint> ParseTrustedCheckpoint(std::string_view data,
                                                 std::optional<std::string_view> signature,
                                                 std::string_view source) {
  TrustedCheckpoint t;
  t.source = std::string(source);
  size_t armor = data.find("-----BEGIN ");
  std::string_view body = armor == std::string_view::npos ? data : data.substr(0, armor);
  // A blank line may separate the body from its armored signature.
  while (body.size() >= 2 && body.substr(body.size() - 2) == "\n\n") body.remove_suffix(1);
  t.body = std::string(body);
  auto cp = crypto::ParseCheckpoint(t.body, source);
  if (!cp) return Err(cp.error());
  if (armor != std::string_view::npos) {
    auto der = crypto::DecodeSignature(data.substr(armor), source);
    if (!der) return Err(der.error());
    t.signature_der = std::move(*der);
  } else if (signature.has_value()) {
    auto der = crypto::DecodeSignature(*signature, std::string(source) + ".p7s");
    if (!der) return Err(der.error());
    t.signature_der = std::move(*der);
  }
  return t;
}

}  // namespace sealpost::storage
