#include "daemon/trust.h"

#include <cstdint>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"
#include "crypto/certs.h"

namespace sealpost::daemon {
namespace {

Result<X509StackPtr> CopyCerts(STACK_OF(X509)* in) {
  X509StackPtr out(sk_X509_new_null());
  if (!out) return Err(OpenSslStatus(Code::kInternal, "sk_X509_new_null"));
  for (int i = 0; i < sk_X509_num(in); ++i) {
    X509* c = sk_X509_value(in, i);
    if (X509_up_ref(c) != 1) return Err(OpenSslStatus(Code::kInternal, "X509_up_ref"));
    if (!sk_X509_push(out.get(), c)) {
      X509_free(c);
      return Err(OpenSslStatus(Code::kInternal, "sk_X509_push"));
    }
  }
  return out;
}

Status PushCrl(STACK_OF(X509_CRL)* out, X509_CRL* c) {
  if (X509_CRL_up_ref(c) != 1) return OpenSslStatus(Code::kInternal, "X509_CRL_up_ref");
  if (!sk_X509_CRL_push(out, c)) {
    X509_CRL_free(c);
    return OpenSslStatus(Code::kInternal, "sk_X509_CRL_push");
  }
  return Status::Ok();
}

Result<std::string> CrlPem(X509_CRL* c) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), c) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "PEM_write_bio_X509_CRL"));
  }
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

std::string CertSha256Hex(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), n));
}

Result<std::unique_ptr<SharedTrust>> SharedTrust::Create(
    const std::vector<std::string>& anchor_files, const std::vector<std::string>& crl_files,
    const std::vector<std::string>& intermediate_files) {
  if (anchor_files.empty()) return Err(Status::InvalidArgument("no trust anchor file"));
  std::unique_ptr<SharedTrust> t(new SharedTrust());
  t->anchors_.reset(sk_X509_new_null());
  t->intermediates_.reset(sk_X509_new_null());
  t->static_crls_.reset(sk_X509_CRL_new_null());
  if (!t->anchors_ || !t->intermediates_ || !t->static_crls_) {
    return Err(OpenSslStatus(Code::kInternal, "stack"));
  }
  for (const std::string& f : intermediate_files) {
    auto certs = crypto::LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("intermediate CA certificates"));
    for (int i = 0; i < sk_X509_num(certs->get()); ++i) {
      X509* c = sk_X509_value(certs->get(), i);
      if (X509_up_ref(c) != 1 || !sk_X509_push(t->intermediates_.get(), c)) {
        return Err(OpenSslStatus(Code::kInternal, "sk_X509_push"));
      }
    }
  }
  for (const std::string& f : anchor_files) {
    auto certs = crypto::LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("trust anchors"));
    for (int i = 0; i < sk_X509_num(certs->get()); ++i) {
      X509* c = sk_X509_value(certs->get(), i);
      if (X509_up_ref(c) != 1 || !sk_X509_push(t->anchors_.get(), c)) {
        return Err(OpenSslStatus(Code::kInternal, "sk_X509_push"));
      }
    }
  }
  for (const std::string& f : crl_files) {
    auto crls = crypto::LoadCrls(f);
    if (!crls) return Err(crls.error().WithContext("CRLs"));
    for (int i = 0; i < sk_X509_CRL_num(crls->get()); ++i) {
      SP_RETURN_IF_ERROR(PushCrl(t->static_crls_.get(), sk_X509_CRL_value(crls->get(), i)));
    }
  }
  SP_RETURN_IF_ERROR(t->Rebuild({}));
  return t;
}

std::shared_ptr<const TrustSnapshot> SharedTrust::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

Status SharedTrust::SetFetched(const std::vector<X509_CRL*>& fetched) { return Rebuild(fetched); }

Status SharedTrust::Rebuild(const std::vector<X509_CRL*>& fetched) {
  auto snap = std::make_shared<TrustSnapshot>();
  auto anchors = CopyCerts(anchors_.get());
  if (!anchors) return anchors.error();
  snap->anchors = std::move(*anchors);
  snap->crls.reset(sk_X509_CRL_new_null());
  X509CrlStackPtr for_store(sk_X509_CRL_new_null());
  if (!snap->crls || !for_store) return OpenSslStatus(Code::kInternal, "sk_X509_CRL_new_null");
  std::vector<X509_CRL*> all;
  for (int i = 0; i < sk_X509_CRL_num(static_crls_.get()); ++i) {
    all.push_back(sk_X509_CRL_value(static_crls_.get(), i));
  }
  all.insert(all.end(), fetched.begin(), fetched.end());
  for (X509_CRL* c : all) {
    if (Status p = PushCrl(snap->crls.get(), c); !p.ok()) return p;
    if (Status p = PushCrl(for_store.get(), c); !p.ok()) return p;
    auto pem = CrlPem(c);
    if (!pem) return pem.error();
    snap->crls_pem += *pem;
  }
  auto store_anchors = CopyCerts(anchors_.get());
  if (!store_anchors) return store_anchors.error();
  auto store_untrusted = CopyCerts(intermediates_.get());
  if (!store_untrusted) return store_untrusted.error();
  auto store = crypto::TrustStore::Create(std::move(*store_anchors), std::move(*store_untrusted),
                                          all.empty() ? nullptr : std::move(for_store),
                                          crypto::TrustOptions{});
  if (!store) return store.error();
  auto verifier = crypto::Verifier::Create(std::move(*store));
  if (!verifier) return verifier.error();
  snap->verifier.emplace(std::move(*verifier));
  std::lock_guard<std::mutex> lock(mu_);
  snap->generation = current_ ? ++generation_ : 0;
  current_ = std::move(snap);
  return Status::Ok();
}

X509* SharedTrust::AnchorBySha256(const std::string& sha256_hex) const {
  for (int i = 0; i < sk_X509_num(anchors_.get()); ++i) {
    X509* c = sk_X509_value(anchors_.get(), i);
    if (CertSha256Hex(c) == sha256_hex) return c;
  }
  return nullptr;
}

std::vector<X509*> SharedTrust::IssuedBy(X509* anchor) const {
  std::vector<X509*> out;
  EVP_PKEY* key = X509_get0_pubkey(anchor);
  for (int i = 0; i < sk_X509_num(anchors_.get()); ++i) {
    X509* c = sk_X509_value(anchors_.get(), i);
    if (c == anchor || key == nullptr) continue;
    if (X509_check_issued(anchor, c) == X509_V_OK && X509_verify(c, key) == 1) out.push_back(c);
  }
  return out;
}

X509* SharedTrust::CrlIssuerUnder(X509* anchor, const X509_NAME* issuer) const {
  if (anchor == nullptr || issuer == nullptr) return nullptr;
  if (X509_NAME_cmp(issuer, X509_get_subject_name(anchor)) == 0) return anchor;
  for (X509* c : IssuedBy(anchor)) {
    if (X509_NAME_cmp(issuer, X509_get_subject_name(c)) == 0) return c;
  }
  for (int i = 0; i < sk_X509_num(intermediates_.get()); ++i) {
    X509* c = sk_X509_value(intermediates_.get(), i);
    if (X509_NAME_cmp(issuer, X509_get_subject_name(c)) != 0) continue;
    if (X509_check_ca(c) == 0) continue;
    uint32_t ku = X509_get_key_usage(c);
    if (ku != UINT32_MAX && (ku & KU_CRL_SIGN) == 0) continue;
    // Its path must end at this anchor: a store holding `anchor` alone,
    // the other intermediates as untrusted candidates.
    X509StorePtr store(X509_STORE_new());
    X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!store || !ctx || X509_STORE_add_cert(store.get(), anchor) != 1 ||
        X509_STORE_CTX_init(ctx.get(), store.get(), c, intermediates_.get()) != 1) {
      ClearOpenSslErrors();
      continue;
    }
    X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_ANY);
    const bool ok = X509_verify_cert(ctx.get()) == 1;
    ClearOpenSslErrors();
    if (ok) return c;
  }
  return nullptr;
}

}  // namespace sealpost::daemon
