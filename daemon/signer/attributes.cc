#include "daemon/signer/attributes.h"

#include <memory>

#include <openssl/asn1.h>
#include <openssl/ess.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "base/civil_time.h"

namespace sealpost::signer {
namespace {

struct AttrStackDeleter {
  void operator()(STACK_OF(X509_ATTRIBUTE)* s) const {
    if (s) sk_X509_ATTRIBUTE_pop_free(s, X509_ATTRIBUTE_free);
  }
};
using AttrStackPtr = std::unique_ptr<STACK_OF(X509_ATTRIBUTE), AttrStackDeleter>;
using EssV2Ptr = std::unique_ptr<ESS_SIGNING_CERT_V2, OsslDeleter<ESS_SIGNING_CERT_V2_free>>;

Status Bad(const std::string& why) { return Status::DataError("signed attributes: " + why); }

std::string Bytes(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

}  // namespace

Result<SignedAttributes> ParseSignedAttributes(std::string_view der, crypto::DigestAlg alg) {
  if (der.empty() || der.size() > 64 * 1024) return Err(Bad("empty or too large"));
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  AttrStackPtr attrs(reinterpret_cast<STACK_OF(X509_ATTRIBUTE)*>(ASN1_item_d2i(
      nullptr, &p, static_cast<long>(der.size()), ASN1_ITEM_rptr(PKCS7_ATTR_SIGN))));
  ClearOpenSslErrors();
  if (!attrs) return Err(Bad("not a DER SET OF Attribute"));
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return Err(Bad("trailing bytes after the SET"));
  }
  // The signature covers these exact bytes; a verifier re-encodes them as
  // DER. Anything not in canonical DER (order, lengths) is refused.
  unsigned char* out = nullptr;
  int len = ASN1_item_i2d(reinterpret_cast<ASN1_VALUE*>(attrs.get()), &out,
                          ASN1_ITEM_rptr(PKCS7_ATTR_SIGN));
  OpenSslBytesPtr owned(out);
  if (len <= 0 || static_cast<size_t>(len) != der.size() ||
      std::string_view(reinterpret_cast<const char*>(out), static_cast<size_t>(len)) != der) {
    ClearOpenSslErrors();
    return Err(Bad("not in DER (canonical) form"));
  }

  SignedAttributes result;
  bool have_ct = false, have_md = false, have_st = false, have_sc = false;
  int n = sk_X509_ATTRIBUTE_num(attrs.get());
  for (int i = 0; i < n; ++i) {
    X509_ATTRIBUTE* a = sk_X509_ATTRIBUTE_value(attrs.get(), i);
    int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
    std::string name = "attribute #" + std::to_string(i + 1);
    if (X509_ATTRIBUTE_count(a) != 1) return Err(Bad(name + " does not have exactly one value"));
    ASN1_TYPE* v = X509_ATTRIBUTE_get0_type(a, 0);
    if (v == nullptr) return Err(Bad(name + " has no value"));
    switch (nid) {
      case NID_pkcs9_contentType:
        if (have_ct) return Err(Bad("content-type appears twice"));
        have_ct = true;
        if (v->type != V_ASN1_OBJECT || OBJ_obj2nid(v->value.object) != NID_pkcs7_data) {
          return Err(Bad("content-type is not id-data"));
        }
        break;
      case NID_pkcs9_messageDigest:
        if (have_md) return Err(Bad("message-digest appears twice"));
        have_md = true;
        if (v->type != V_ASN1_OCTET_STRING) return Err(Bad("message-digest is not an OCTET STRING"));
        result.message_digest = Bytes(v->value.octet_string);
        if (result.message_digest.size() != crypto::DigestAlgSize(alg)) {
          return Err(Bad("message-digest is " + std::to_string(result.message_digest.size()) +
                         " bytes, " + std::string(crypto::DigestAlgName(alg)) + " needs " +
                         std::to_string(crypto::DigestAlgSize(alg))));
        }
        break;
      case NID_pkcs9_signingTime: {
        if (have_st) return Err(Bad("signing-time appears twice"));
        have_st = true;
        if (v->type != V_ASN1_UTCTIME && v->type != V_ASN1_GENERALIZEDTIME) {
          return Err(Bad("signing-time is neither UTCTime nor GeneralizedTime"));
        }
        const ASN1_TIME* t = v->type == V_ASN1_UTCTIME ? v->value.utctime : v->value.generalizedtime;
        struct tm tm {};
        if (ASN1_TIME_check(t) != 1 || ASN1_TIME_to_tm(t, &tm) != 1) {
          ClearOpenSslErrors();
          return Err(Bad("signing-time is not a valid time"));
        }
        int64_t days = DaysFromCivil(tm.tm_year + 1900LL, static_cast<unsigned>(tm.tm_mon + 1),
                                     static_cast<unsigned>(tm.tm_mday));
        result.signing_time =
            static_cast<std::time_t>(days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
        break;
      }
      case NID_id_smime_aa_signingCertificateV2: {
        if (have_sc) return Err(Bad("signing-certificate-v2 appears twice"));
        have_sc = true;
        if (v->type != V_ASN1_SEQUENCE) return Err(Bad("signing-certificate-v2 is not a SEQUENCE"));
        result.signing_certificate_v2 = Bytes(v->value.sequence);
        const auto* q = reinterpret_cast<const unsigned char*>(result.signing_certificate_v2.data());
        EssV2Ptr ess(d2i_ESS_SIGNING_CERT_V2(nullptr, &q,
                                             static_cast<long>(result.signing_certificate_v2.size())));
        ClearOpenSslErrors();
        if (!ess) return Err(Bad("signing-certificate-v2 is not a SigningCertificateV2"));
        break;
      }
      default: {
        char oid[80];
        OBJ_obj2txt(oid, sizeof oid, X509_ATTRIBUTE_get0_object(a), 1);
        return Err(Bad("unexpected attribute " + std::string(oid) +
                       " (only content-type, message-digest, signing-time and "
                       "signing-certificate-v2 are signed)"));
      }
    }
  }
  if (!have_ct) return Err(Bad("content-type is missing"));
  if (!have_md) return Err(Bad("message-digest is missing"));
  if (!have_st) return Err(Bad("signing-time is missing"));
  if (!have_sc) return Err(Bad("signing-certificate-v2 is missing"));
  return result;
}

Status CheckSignedAttributes(const SignedAttributes& attrs, X509* cert, std::time_t now,
                             std::chrono::seconds max_skew) {
  if (cert == nullptr) return Status::Internal("no certificate to check the attributes against");
  long long skew = static_cast<long long>(attrs.signing_time) - static_cast<long long>(now);
  if (skew > max_skew.count() || -skew > max_skew.count()) {
    return Status::PermissionDenied("refused: signing-time is " + std::to_string(skew < 0 ? -skew : skew) +
                                    " s " + (skew < 0 ? "in the past" : "in the future") +
                                    " (at most " + std::to_string(max_skew.count()) + " s allowed)");
  }
  const auto* q = reinterpret_cast<const unsigned char*>(attrs.signing_certificate_v2.data());
  EssV2Ptr ess(d2i_ESS_SIGNING_CERT_V2(nullptr, &q, static_cast<long>(attrs.signing_certificate_v2.size())));
  if (!ess) {
    ClearOpenSslErrors();
    return Status::PermissionDenied("refused: signing-certificate-v2 cannot be read");
  }
  X509StackPtr chain(sk_X509_new_null());
  if (!chain || sk_X509_push(chain.get(), cert) <= 0) {
    return OpenSslStatus(Code::kInternal, "out of memory");
  }
  X509_up_ref(cert);
  int ok = OSSL_ESS_check_signing_certs(nullptr, ess.get(), chain.get(), 1);
  ClearOpenSslErrors();
  if (ok != 1) {
    return Status::PermissionDenied(
        "refused: signing-certificate-v2 does not name this signer's certificate");
  }
  return Status::Ok();
}

}  // namespace sealpost::signer
