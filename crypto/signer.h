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

// Declared in crypto/digest.h (which includes this header).
Result<std::string> DigestBytes(const EVP_MD* md, std::string_view data);

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

  // Signs the DER encoding of a CMS SignerInfo's signed attributes (the SET
  // OF Attribute as RFC 5652 5.4 digests it) with `alg`. The default digests
  // `der` and calls Sign(). A signer that must see what it signs (the
  // daemon's client of `sealpost-signer`) overrides this and may refuse a
  // bare Sign(). Errors as Sign(), plus kPermissionDenied when the holder of
  // the key refuses these attributes.
  virtual Result<std::string> SignSignedAttributes(const KeyRef& key, DigestAlg alg,
                                                   std::string_view der) {
    auto digest = DigestBytes(DigestAlgMd(alg), der);
    if (!digest) return Err(digest.error());
    return Sign(key, alg, *digest);
  }
};

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_SIGNER_H_
