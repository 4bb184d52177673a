#include "crypto/signer.h"

namespace sealpost::crypto {

std::string_view DigestAlgName(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha256: return "SHA-256";
    case DigestAlg::kSha384: return "SHA-384";
    case DigestAlg::kSha512: return "SHA-512";
  }
  return "?";
}

const EVP_MD* DigestAlgMd(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha256: return EVP_sha256();
    case DigestAlg::kSha384: return EVP_sha384();
    case DigestAlg::kSha512: return EVP_sha512();
  }
  return EVP_sha256();
}

size_t DigestAlgSize(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha256: return 32;
    case DigestAlg::kSha384: return 48;
    case DigestAlg::kSha512: return 64;
  }
  return 0;
}

}  // namespace sealpost::crypto
