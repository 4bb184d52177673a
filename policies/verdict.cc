#include "policies/verdict.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "base/openssl.h"
#include "crypto/certs.h"

namespace sealpost::policies {
namespace {

Result<std::string> CertSha256(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot hash a certificate"));
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

}  // namespace

Result<SignerIdentity> IdentityFromCertificate(X509* cert, STACK_OF(X509)* chain) {
  if (cert == nullptr) return Err(Status::InvalidArgument("no signer certificate"));
  SignerIdentity id;
  id.subject = NormalizeName(crypto::NameToUtf8(X509_get_subject_name(cert)));
  id.issuer = NormalizeName(crypto::NameToUtf8(X509_get_issuer_name(cert)));
  id.serial = crypto::SerialHex(cert);
  id.display_name = crypto::DisplayName(cert);
  // spki_sha256 is over the whole SubjectPublicKeyInfo DER, as
  // `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256`.
  // Encoded into our own buffer: no OpenSSL-allocated memory to free.
  X509_PUBKEY* pubkey = X509_get_X509_PUBKEY(cert);
  int der_len = i2d_X509_PUBKEY(pubkey, nullptr);
  if (der_len <= 0) return Err(OpenSslStatus(Code::kInternal, "cannot encode the signer's public key"));
  std::string spki(static_cast<size_t>(der_len), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(spki.data());
  if (i2d_X509_PUBKEY(pubkey, &out) != der_len) {
    return Err(OpenSslStatus(Code::kInternal, "cannot encode the signer's public key"));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(spki.data(), spki.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot hash the signer's public key"));
  }
  id.spki_sha256 = HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
  auto self = CertSha256(cert);
  if (!self) return Err(self.error());
  if (chain != nullptr) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      auto h = CertSha256(sk_X509_value(chain, i));
      if (!h) return Err(h.error());
      if (*h != *self) id.chain_sha256.push_back(std::move(*h));
    }
  }
  return id;
}

Result<Decision> EvaluateVerifiedDocument(const Policy& policy, const DocumentFacts& facts,
                                          std::span<const VerifiedSigner> signers) {
  std::vector<SignerIdentity> ids;
  for (const VerifiedSigner& s : signers) {
    auto id = IdentityFromCertificate(s.cert, s.chain);
    if (!id) return Err(id.error());
    ids.push_back(std::move(*id));
  }
  DecisionRequest req;
  req.issuer = facts.issuer;
  req.document_type = facts.type;
  req.recipients = facts.recipients;
  req.signers = ids;
  req.size = facts.size;
  req.media_type = facts.media_type;
  req.time = facts.time;
  req.timestamped = facts.timestamped;
  return Decide(policy, req);
}

}  // namespace sealpost::policies
