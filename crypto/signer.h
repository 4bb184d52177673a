// The one interface everything signs through. A Signer holds (or reaches)
// private keys; callers name a key and hand over a digest they computed.
// Implementations: pkcs11::TokenSigner (a PKCS#11 token, in-process),
// crypto::SoftwareKeySigner (tests and benchmarks only), and later the
// daemon's client of `sealpost-signer`.
#ifndef SEALPOST_CRYPTO_SIGNER_H_
#define SEALPOST_CRYPTO_SIGNER_H_

#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"

namespace sealpost::crypto {

enum class DigestAlg { kSha256, kSha384, kSha512 };

std::string_view DigestAlgName(DigestAlg alg);  // "SHA-256", ...
const EVP_MD* DigestAlgMd(DigestAlg alg);       // static, never freed
size_t DigestAlgSize(DigestAlg alg);

// Names a key the Signer can use: a PKCS#11 URI for tokens, any label for
// software keys.
struct KeyRef {
  std::string id;
};

class Signer {
 public:
  virtual ~Signer() = default;

  // The certificate that belongs to `key`, owned by the caller.
  virtual Result<X509Ptr> Certificate(const KeyRef& key) = 0;

  // Signs a digest that the caller computed with `alg`.
  //  - RSA keys: PKCS#1 v1.5 over DigestInfo(alg, digest).
  //  - EC keys: ECDSA; the result is a DER Ecdsa-Sig-Value.
  // REQUIRES: digest.size() == DigestAlgSize(alg).
  // Errors: kUnavailable (token gone, timed out), kPermissionDenied (not
  // logged in, PIN locked), kInvalidArgument (digest size).
  virtual Result<std::string> Sign(const KeyRef& key, DigestAlg alg, std::string_view digest) = 0;
};

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_SIGNER_H_
