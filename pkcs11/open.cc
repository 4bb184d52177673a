#include "pkcs11/open.h"

#include "pkcs11/token.h"
#include "pkcs11/uri.h"

namespace sealpost::pkcs11 {
namespace {

// The Signer over a logged-in Token. Thread-safety: calls may come from any
// thread; they are serialised on the module's thread.
class TokenSigner final : public crypto::Signer {
 public:
  explicit TokenSigner(std::unique_ptr<Token> token) : token_(std::move(token)) {}
  Result<X509Ptr> Certificate(const crypto::KeyRef& key) override { return token_->Certificate(key); }
  Result<std::string> Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                           std::string_view digest) override {
    return token_->Sign(key, alg, digest);
  }

 private:
  std::unique_ptr<Token> token_;
};

}  // namespace

Result<std::unique_ptr<crypto::Signer>> OpenTokenSigner(const std::string& key_uri,
                                                        const OpenOptions& opts) {
  auto token = Token::Open(key_uri, opts);
  if (!token) return Err(token.error());
  // Fail now, not at the first signature, when the URI names a key that is
  // not there.
  auto uri = ParseUri(key_uri);
  if (uri && (uri->object || uri->id)) {
    auto pub = (*token)->PublicKey(crypto::KeyRef{key_uri});
    if (!pub) return Err(pub.error());
  }
  return std::unique_ptr<crypto::Signer>(new TokenSigner(std::move(*token)));
}

}  // namespace sealpost::pkcs11
