#include "crypto/software_signer.h"

#include <openssl/rsa.h>

namespace sealpost::crypto {

Result<std::unique_ptr<SoftwareKeySigner>> SoftwareKeySigner::CreateForTesting(std::string label,
                                                                             EvpPkeyPtr key,
                                                                             X509Ptr cert) {
  if (!key || !cert) return Err(Status::InvalidArgument("software signer: key or certificate missing"));
  if (!EVP_PKEY_is_a(key.get(), "RSA") && !EVP_PKEY_is_a(key.get(), "EC")) {
    return Err(Status::InvalidArgument("software signer: only RSA and EC keys are supported"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return Err(OpenSslStatus(Code::kInvalidArgument,
                             "software signer: the key does not belong to the certificate"));
  }
  return std::unique_ptr<SoftwareKeySigner>(
      new SoftwareKeySigner(std::move(label), std::move(key), std::move(cert)));
}

Result<X509Ptr> SoftwareKeySigner::Certificate(const KeyRef& key) {
  if (key.id != label_) return Err(Status::NotFound("software signer: no key '" + key.id + "'"));
  X509_up_ref(cert_.get());
  return X509Ptr(cert_.get());
}

Result<std::string> SoftwareKeySigner::Sign(const KeyRef& key, DigestAlg alg,
                                            std::string_view digest) {
  if (key.id != label_) return Err(Status::NotFound("software signer: no key '" + key.id + "'"));
  if (digest.size() != DigestAlgSize(alg)) {
    return Err(Status::InvalidArgument("software signer: digest is " +
                                       std::to_string(digest.size()) + " bytes, " +
                                       std::string(DigestAlgName(alg)) + " needs " +
                                       std::to_string(DigestAlgSize(alg))));
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) <= 0) {
    return Err(OpenSslStatus(Code::kInternal, "software signer: cannot start signing"));
  }
  // Setting the md makes OpenSSL wrap an RSA digest in DigestInfo (PKCS#1
  // v1.5) and check the digest length for both key kinds.
  if (EVP_PKEY_is_a(key_.get(), "RSA") &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) <= 0) {
    return Err(OpenSslStatus(Code::kInternal, "software signer: cannot select PKCS#1 v1.5"));
  }
  if (EVP_PKEY_CTX_set_signature_md(ctx.get(), DigestAlgMd(alg)) <= 0) {
    return Err(OpenSslStatus(Code::kInternal, "software signer: cannot select the digest"));
  }
  const auto* in = reinterpret_cast<const unsigned char*>(digest.data());
  size_t len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &len, in, digest.size()) <= 0) {
    return Err(OpenSslStatus(Code::kInternal, "software signer: cannot size the signature"));
  }
  std::string sig(len, '\0');
  if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                    digest.size()) <= 0) {
    return Err(OpenSslStatus(Code::kInternal, "software signer: signing failed"));
  }
  sig.resize(len);
  ++sign_count_;
  return sig;
}

}  // namespace sealpost::crypto
