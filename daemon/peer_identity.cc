#include "daemon/peer_identity.h"

#include <algorithm>

#include <openssl/x509_vfy.h>

#include "crypto/certs.h"
#include "policies/verdict.h"

namespace sealpost::daemon {

Result<PeerIdentifier> PeerIdentifier::Create(const std::string& ca_file) {
  auto certs = crypto::LoadCertificates(ca_file);
  if (!certs) return Err(certs.error());
  X509StorePtr store(X509_STORE_new());
  if (!store) return Err(OpenSslStatus(Code::kInternal, "X509_STORE_new"));
  for (int i = 0; i < sk_X509_num(certs->get()); ++i) {
    if (X509_STORE_add_cert(store.get(), sk_X509_value(certs->get(), i)) != 1) {
      return Err(OpenSslStatus(Code::kDataError, "peer CA bundle " + ca_file));
    }
  }
  return PeerIdentifier(std::move(store));
}

Result<std::string> PeerIdentifier::UnionOf(X509* cert, const policies::Policy& policy) const {
  // The chain as the TLS layer saw it: rebuilt against the same CA bundle.
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), cert, nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "X509_STORE_CTX_init"));
  }
  STACK_OF(X509)* chain = nullptr;
  if (X509_verify_cert(ctx.get()) == 1) chain = X509_STORE_CTX_get0_chain(ctx.get());
  ClearOpenSslErrors();
  auto id = policies::IdentityFromCertificate(cert, chain);
  if (!id) return Err(id.error());

  std::string found;
  for (const policies::Union& u : policy.unions) {
    if (!u.has_tls_identity) continue;
    const policies::CertIdentity& t = u.tls_identity;
    bool match = false;
    switch (t.kind) {
      case policies::CertIdentity::Kind::kIssuerSerial:
        match = t.issuer == id->issuer && t.serial == id->serial;
        break;
      case policies::CertIdentity::Kind::kSpkiSha256:
        match = t.spki_sha256 == id->spki_sha256;
        break;
      case policies::CertIdentity::Kind::kSubjectUnderCa: {
        auto it = policy.anchor_index.find(t.ca);
        match = t.subject == id->subject && it != policy.anchor_index.end() &&
                std::find(id->chain_sha256.begin(), id->chain_sha256.end(),
                          policy.anchors[it->second].sha256) != id->chain_sha256.end();
        break;
      }
    }
    if (!match) continue;
    if (!found.empty()) {
      return Err(Status::DataError("certificate " + id->subject + " is the TLS identity of both " +
                                   found + " and " + u.id));
    }
    found = u.id;
  }
  if (found.empty()) {
    return Err(Status::PermissionDenied("certificate '" + id->subject + "' (SPKI SHA-256 " +
                                        id->spki_sha256 +
                                        ") is not the TLS identity of any union in the registry"));
  }
  return found;
}

}  // namespace sealpost::daemon
