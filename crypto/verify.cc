#include "crypto/verify.h"

#include <algorithm>
#include <cstring>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"
#include "crypto/algorithms.h"
#include "crypto/certs.h"
#include "crypto/digest.h"

namespace sealpost::crypto {
namespace {

using X509AlgorPtr = std::unique_ptr<X509_ALGOR, OsslDeleter<X509_ALGOR_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslDeleter<GENERAL_NAMES_free>>;

// Where the signed content comes from.
struct Content {
  const std::string* path = nullptr;  // a file to stream, or
  std::string_view bytes;             // bytes in memory
};

// One SignerInfo while it is being checked.
struct SignerWork {
  CMS_SignerInfo* si = nullptr;  // borrowed from the CMS
  X509* cert = nullptr;          // borrowed from the candidate stacks
  const EVP_MD* md = nullptr;    // static (legacy lookup), never freed
  size_t digest_index = 0;       // into the computed digests
  SignerReport report;
  bool done = false;  // the outcome is decided (a format failure, ...)
};

void Decide(SignerWork& w, SubIndication sub, Reason reason, std::string detail = {}) {
  w.report.indication = IndicationOf(sub);
  w.report.sub_indication = sub;
  w.report.reason = reason;
  w.report.detail = std::move(detail);
  w.done = true;
}

std::string OrganizationOf(X509* cert) {
  X509_NAME* subj = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subj, NID_organizationName, -1);
  if (idx < 0) return "";
  return Asn1StringToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
}

// Finds the certificate a SignerInfo names among `stacks`.
X509* FindSignerCert(CMS_SignerInfo* si, std::initializer_list<STACK_OF(X509)*> stacks) {
  for (STACK_OF(X509)* sk : stacks) {
    if (sk == nullptr) continue;
    for (int i = 0; i < sk_X509_num(sk); ++i) {
      X509* c = sk_X509_value(sk, i);
      if (CMS_SignerInfo_cert_cmp(si, c) == 0) return c;
    }
  }
  return nullptr;
}

// Occurrences of attribute `nid` among the signed (or unsigned) attributes.
int CountAttr(CMS_SignerInfo* si, int nid, bool is_signed) {
  int count = 0;
  int pos = -1;
  for (;;) {
    pos = is_signed ? CMS_signed_get_attr_by_NID(si, nid, pos)
                    : CMS_unsigned_get_attr_by_NID(si, nid, pos);
    if (pos < 0) return count;
    ++count;
  }
}

// The single value of the single signed attribute `nid`, or null.
ASN1_TYPE* SingleSignedValue(CMS_SignerInfo* si, int nid) {
  int pos = CMS_signed_get_attr_by_NID(si, nid, -1);
  if (pos < 0) return nullptr;
  X509_ATTRIBUTE* attr = CMS_signed_get_attr(si, pos);
  if (attr == nullptr || X509_ATTRIBUTE_count(attr) != 1) return nullptr;
  return X509_ATTRIBUTE_get0_type(attr, 0);
}

bool TimeFromAsn1(const ASN1_TIME* t, std::time_t* out) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return false;
  int64_t y = tm.tm_year + 1900;
  unsigned m = static_cast<unsigned>(tm.tm_mon + 1), d = static_cast<unsigned>(tm.tm_mday);
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = era * 146097 + static_cast<int64_t>(doe) - 719468;
  *out = static_cast<std::time_t>(days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
  return true;
}

// Reads one DER TLV header at *p (within `end`); on success *p points at the
// contents and *len is their length.
bool ReadTlv(const unsigned char** p, const unsigned char* end, int want_tag, long* len) {
  if (*p >= end) return false;
  int tag = 0, xclass = 0;
  const unsigned char* q = *p;
  int rc = ASN1_get_object(&q, len, &tag, &xclass, end - *p);
  if ((rc & 0x80) != 0 || xclass != V_ASN1_UNIVERSAL || tag != want_tag) return false;
  if (*len < 0 || *len > end - q) return false;
  *p = q;
  return true;
}

enum class EssCheck { kMatch, kMismatch, kMalformed };

// Checks the first ESSCertID(v2) of a signing-certificate(-v2) attribute
// value against `cert` (RFC 5035 5.4: the first one names the signer's
// certificate). `v2` selects ESSCertIDv2 (hash algorithm, default SHA-256)
// over ESSCertID (SHA-1).
EssCheck CheckEssCertId(const ASN1_TYPE* value, X509* cert, bool v2, std::string* detail) {
  if (value == nullptr || value->type != V_ASN1_SEQUENCE) return EssCheck::kMalformed;
  const ASN1_STRING* seq = value->value.sequence;
  const unsigned char* p = ASN1_STRING_get0_data(seq);
  const unsigned char* end = p + ASN1_STRING_length(seq);
  long len = 0;
  // SigningCertificate(V2) ::= SEQUENCE { certs SEQUENCE OF ESSCertID(v2), ... }
  if (!ReadTlv(&p, end, V_ASN1_SEQUENCE, &len)) return EssCheck::kMalformed;
  end = p + len;
  if (!ReadTlv(&p, end, V_ASN1_SEQUENCE, &len) || len == 0) return EssCheck::kMalformed;
  const unsigned char* certs_end = p + len;
  if (!ReadTlv(&p, certs_end, V_ASN1_SEQUENCE, &len)) return EssCheck::kMalformed;
  const unsigned char* id_end = p + len;
  // ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash, issuerSerial OPTIONAL }
  const EVP_MD* md = EVP_sha1();
  if (v2) {
    md = EVP_sha256();
    if (p < id_end && *p == (V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED)) {
      X509AlgorPtr alg(d2i_X509_ALGOR(nullptr, &p, id_end - p));
      if (!alg) return EssCheck::kMalformed;
      md = EVP_get_digestbyobj(alg->algorithm);
      if (md == nullptr) {
        *detail = "unknown hash algorithm in signing-certificate-v2";
        return EssCheck::kMalformed;
      }
    }
  }
  if (!ReadTlv(&p, id_end, V_ASN1_OCTET_STRING, &len)) return EssCheck::kMalformed;
  std::string_view cert_hash(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  p += len;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (X509_digest(cert, md, digest, &dlen) != 1) {
    ClearOpenSslErrors();
    return EssCheck::kMalformed;
  }
  if (cert_hash != std::string_view(reinterpret_cast<const char*>(digest), dlen)) {
    *detail = "certificate hash differs";
    return EssCheck::kMismatch;
  }
  if (p < id_end) {
    // IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber INTEGER }
    if (!ReadTlv(&p, id_end, V_ASN1_SEQUENCE, &len)) return EssCheck::kMalformed;
    const unsigned char* is_end = p + len;
    GeneralNamesPtr names(d2i_GENERAL_NAMES(nullptr, &p, is_end - p));
    if (!names) return EssCheck::kMalformed;
    Asn1IntegerPtr serial(d2i_ASN1_INTEGER(nullptr, &p, is_end - p));
    if (!serial || p != is_end) return EssCheck::kMalformed;
    bool issuer_ok = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_DIRNAME &&
          X509_NAME_cmp(gn->d.directoryName, X509_get_issuer_name(cert)) == 0) {
        issuer_ok = true;
      }
    }
    if (!issuer_ok || ASN1_INTEGER_cmp(serial.get(), X509_get0_serialNumber(cert)) != 0) {
      *detail = "issuer and serial number differ";
      return EssCheck::kMismatch;
    }
  }
  return EssCheck::kMatch;
}

// Checks the signed attributes (RFC 5652 5.3, 11; RFC 5035). Sets the
// outcome on a format failure; fills signing time and level.
void CheckAttributes(SignerWork& w, const ASN1_OBJECT* econtent_type) {
  CMS_SignerInfo* si = w.si;
  // Attributes that RFC 5652 requires to be signed must not appear unsigned.
  if (CountAttr(si, NID_pkcs9_signingTime, false) > 0) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kSigningTimeMalformed,
                  "signing-time is an unsigned attribute");
  }
  if (CountAttr(si, NID_pkcs9_contentType, false) > 0 ||
      CountAttr(si, NID_pkcs9_messageDigest, false) > 0) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kAttributeMalformed,
                  "content-type or message-digest is an unsigned attribute");
  }
  if (CMS_signed_get_attr_count(si) <= 0) return;  // signature over the content itself

  int ct = CountAttr(si, NID_pkcs9_contentType, true);
  if (ct == 0) return Decide(w, SubIndication::kFormatFailure, Reason::kContentTypeMissing);
  if (ct > 1) return Decide(w, SubIndication::kFormatFailure, Reason::kContentTypeDuplicate);
  ASN1_TYPE* ct_value = SingleSignedValue(si, NID_pkcs9_contentType);
  if (ct_value == nullptr || ct_value->type != V_ASN1_OBJECT) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kAttributeMalformed,
                  "content-type attribute must hold exactly one OID");
  }
  if (OBJ_obj2nid(ct_value->value.object) != NID_pkcs7_data ||
      OBJ_cmp(ct_value->value.object, econtent_type) != 0) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kContentTypeNotData);
  }

  int md = CountAttr(si, NID_pkcs9_messageDigest, true);
  if (md == 0) return Decide(w, SubIndication::kFormatFailure, Reason::kMessageDigestMissing);
  ASN1_TYPE* md_value = SingleSignedValue(si, NID_pkcs9_messageDigest);
  if (md > 1 || md_value == nullptr || md_value->type != V_ASN1_OCTET_STRING) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kMessageDigestDuplicate);
  }

  int st = CountAttr(si, NID_pkcs9_signingTime, true);
  if (st > 1) {
    return Decide(w, SubIndication::kFormatFailure, Reason::kSigningTimeMalformed,
                  "signing-time appears more than once");
  }
  if (st == 1) {
    ASN1_TYPE* v = SingleSignedValue(si, NID_pkcs9_signingTime);
    std::time_t t = 0;
    if (v == nullptr || (v->type != V_ASN1_UTCTIME && v->type != V_ASN1_GENERALIZEDTIME) ||
        ASN1_TIME_check(v->value.utctime) != 1 || !TimeFromAsn1(v->value.utctime, &t)) {
      ClearOpenSslErrors();
      return Decide(w, SubIndication::kFormatFailure, Reason::kSigningTimeMalformed);
    }
    w.report.signing_time = t;
  }
}

// The signing-certificate(-v2) attributes against the signer's certificate.
void CheckSigningCertificate(SignerWork& w) {
  bool has_v2 = false;
  for (auto [nid, v2] : {std::pair{NID_id_smime_aa_signingCertificateV2, true},
                         std::pair{NID_id_smime_aa_signingCertificate, false}}) {
    int count = CountAttr(w.si, nid, true);
    if (count == 0) continue;
    ASN1_TYPE* value = count == 1 ? SingleSignedValue(w.si, nid) : nullptr;
    std::string detail;
    EssCheck r = value ? CheckEssCertId(value, w.cert, v2, &detail) : EssCheck::kMalformed;
    const char* name = v2 ? "signing-certificate-v2" : "signing-certificate";
    if (r == EssCheck::kMalformed) {
      return Decide(w, SubIndication::kFormatFailure, Reason::kAttributeMalformed,
                    std::string(name) + " attribute is malformed" +
                        (detail.empty() ? "" : ": " + detail));
    }
    if (r == EssCheck::kMismatch) {
      return Decide(w, SubIndication::kFormatFailure, Reason::kSigningCertificateMismatch,
                    std::string(name) + ": " + detail);
    }
    if (v2) has_v2 = true;
  }
  // CAdES baseline B-B: signing-certificate-v2 and signing-time, signed.
  if (has_v2 && w.report.signing_time) w.report.level = Level::kCadesBB;
}

// Verifies a signature made directly over the content digest (no signed
// attributes), as CMS does: RSA PKCS#1 v1.5 with DigestInfo, (EC)DSA raw.
bool VerifyOverDigest(SignerWork& w, std::string_view digest) {
  X509_ALGOR* sig_alg = nullptr;
  CMS_SignerInfo_get0_algs(w.si, nullptr, nullptr, nullptr, &sig_alg);
  if (sig_alg != nullptr && OBJ_obj2nid(sig_alg->algorithm) == NID_rsassaPss) return false;
  ASN1_OCTET_STRING* sig = CMS_SignerInfo_get0_signature(w.si);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(X509_get0_pubkey(w.cert), nullptr));
  bool ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx.get(), w.md) == 1 &&
            EVP_PKEY_verify(ctx.get(), ASN1_STRING_get0_data(sig),
                            static_cast<size_t>(ASN1_STRING_length(sig)),
                            reinterpret_cast<const unsigned char*>(digest.data()),
                            digest.size()) == 1;
  ClearOpenSslErrors();
  return ok;
}

Result<CmsPtr> ParseSignedData(std::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms) {
    return Err(OpenSslStatus(Code::kDataError, "signature is not CMS (malformed or truncated DER)"));
  }
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return Err(Status::DataError("signature has trailing bytes after the CMS structure"));
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) {
    return Err(Status::DataError(std::string("signature is CMS but not SignedData (") +
                                 OBJ_nid2sn(OBJ_obj2nid(CMS_get0_type(cms.get()))) + ")"));
  }
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms.get());
  if (sis == nullptr || sk_CMS_SignerInfo_num(sis) == 0) {
    return Err(Status::DataError("signature has no SignerInfo"));
  }
  return cms;
}

bool HasEmbeddedContent(CMS_ContentInfo* cms) {
  ASN1_OCTET_STRING** pos = CMS_get0_content(cms);
  return pos != nullptr && *pos != nullptr;
}

}  // namespace

Result<TrustStore> LoadTrustStore(const TrustFiles& files, const TrustOptions& options) {
  if (files.anchors.empty()) return Err(Status::InvalidArgument("no trust anchor file given"));
  X509StackPtr anchors(sk_X509_new_null());
  X509StackPtr untrusted(sk_X509_new_null());
  X509CrlStackPtr crls(sk_X509_CRL_new_null());
  if (!anchors || !untrusted || !crls) return Err(Status::Internal("out of memory"));
  auto move_certs = [](X509StackPtr& from, STACK_OF(X509)* to) {
    while (sk_X509_num(from.get()) > 0) sk_X509_push(to, sk_X509_shift(from.get()));
  };
  for (const std::string& f : files.anchors) {
    auto certs = LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("trust anchors"));
    move_certs(*certs, anchors.get());
  }
  for (const std::string& f : files.untrusted) {
    auto certs = LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("untrusted certificates"));
    move_certs(*certs, untrusted.get());
  }
  for (const std::string& f : files.crls) {
    auto loaded = LoadCrls(f);
    if (!loaded) return Err(loaded.error().WithContext("CRL"));
    while (sk_X509_CRL_num(loaded->get()) > 0) {
      sk_X509_CRL_push(crls.get(), sk_X509_CRL_shift(loaded->get()));
    }
  }
  return TrustStore::Create(std::move(anchors), std::move(untrusted), std::move(crls), options);
}

Result<std::string> DecodeSignature(std::string_view data, std::string_view source) {
  // PEM only when the file starts with a PEM header (after blank space):
  // DER that happens to contain the text elsewhere stays DER.
  size_t begin = data.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos || data.compare(begin, 11, "-----BEGIN ") != 0) {
    if (data.empty()) return Err(Status::DataError(std::string(source) + ": empty signature file"));
    return std::string(data);
  }
  size_t line_end = data.find('\n', begin);
  size_t end = data.find("-----END ", begin);
  if (line_end == std::string_view::npos || end == std::string_view::npos || end < line_end) {
    return Err(Status::DataError(std::string(source) + ": malformed PEM signature"));
  }
  std::string_view label = data.substr(begin + 11, data.find("-----", begin + 11) - begin - 11);
  if (label != "CMS" && label != "PKCS7" && label != "SIGNED MESSAGE" && label != "PKCS #7 SIGNED DATA") {
    return Err(Status::DataError(std::string(source) + ": PEM block '" + std::string(label) +
                                 "' is not a CMS signature"));
  }
  std::string b64;
  for (char c : data.substr(line_end + 1, end - line_end - 1)) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') b64 += c;
  }
  auto der = Base64Decode(b64);
  if (!der) return Err(Status::DataError(std::string(source) + ": malformed base64 in PEM signature"));
  return std::move(*der);
}

Result<Verifier> Verifier::Create(TrustStore trust) { return Verifier(std::move(trust)); }

namespace {

Result<Report> VerifyImpl(const TrustStore& trust, CMS_ContentInfo* cms, const Content& content,
                          std::optional<std::time_t> at) {
  Report report;
  report.validation_time = at ? *at : std::time(nullptr);
  X509StackPtr cms_certs(CMS_get1_certs(cms));  // null when there are none
  const ASN1_OBJECT* econtent_type = CMS_get0_eContentType(cms);
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms);

  std::vector<SignerWork> work(static_cast<size_t>(sk_CMS_SignerInfo_num(sis)));
  std::vector<const EVP_MD*> mds;
  for (size_t i = 0; i < work.size(); ++i) {
    SignerWork& w = work[i];
    w.si = sk_CMS_SignerInfo_value(sis, static_cast<int>(i));
    w.cert = FindSignerCert(w.si, {cms_certs.get(), trust.untrusted()});
    if (w.cert != nullptr) {
      X509_up_ref(w.cert);
      w.report.certificate = std::shared_ptr<X509>(w.cert, X509_free);
      w.report.name = DisplayName(w.cert);
      w.report.organization = OrganizationOf(w.cert);
      w.report.subject = NameToUtf8(X509_get_subject_name(w.cert));
      w.report.issuer = NameToUtf8(X509_get_issuer_name(w.cert));
      w.report.serial = SerialHex(w.cert);
      w.report.signature_algorithm = KeyDescription(X509_get0_pubkey(w.cert));
    }
    X509_ALGOR* dig_alg = nullptr;
    CMS_SignerInfo_get0_algs(w.si, nullptr, nullptr, &dig_alg, nullptr);
    w.md = dig_alg ? EVP_get_digestbyobj(dig_alg->algorithm) : nullptr;
    CheckAttributes(w, econtent_type);
    if (w.done) continue;
    if (w.md == nullptr) {
      Decide(w, SubIndication::kCryptoConstraintsFailure, Reason::kUnsupportedAlgorithm,
             "unknown digest algorithm");
      continue;
    }
    w.report.digest_algorithm = DigestNameForNid(EVP_MD_get_type(w.md));
    if (w.cert == nullptr) {
      Decide(w, SubIndication::kNoSigningCertificateFound, Reason::kSignerCertNotFound);
      continue;
    }
    auto it = std::find(mds.begin(), mds.end(), w.md);
    w.digest_index = static_cast<size_t>(it - mds.begin());
    if (it == mds.end()) mds.push_back(w.md);
  }

  // One pass over the content for every digest algorithm in use.
  std::vector<std::string> digests;
  if (!mds.empty()) {
    if (content.path != nullptr) {
      auto d = DigestFile(*content.path, mds);
      if (!d) return Err(d.error());
      digests = std::move(*d);
    } else {
      for (const EVP_MD* md : mds) {
        auto d = DigestBytes(md, content.bytes);
        if (!d) return Err(d.error());
        digests.push_back(std::move(*d));
      }
    }
  }

  for (SignerWork& w : work) {
    if (!w.done) {
      const std::string& digest = digests[w.digest_index];
      if (CMS_signed_get_attr_count(w.si) > 0) {
        ASN1_TYPE* md_value = SingleSignedValue(w.si, NID_pkcs9_messageDigest);
        const ASN1_OCTET_STRING* os = md_value->value.octet_string;
        std::string_view claimed(reinterpret_cast<const char*>(ASN1_STRING_get0_data(os)),
                                 static_cast<size_t>(ASN1_STRING_length(os)));
        if (claimed != digest) {
          Decide(w, SubIndication::kHashFailure, Reason::kDigestMismatch);
        } else {
          CMS_SignerInfo_set1_signer_cert(w.si, w.cert);
          if (CMS_SignerInfo_verify(w.si) != 1) {
            ClearOpenSslErrors();
            Decide(w, SubIndication::kSigCryptoFailure, Reason::kSignatureInvalid);
          } else {
            CheckSigningCertificate(w);
          }
        }
      } else if (!VerifyOverDigest(w, digest)) {
        // Without signed attributes the signature covers the content digest:
        // a changed file and a bad signature cannot be told apart.
        Decide(w, SubIndication::kSigCryptoFailure, Reason::kSignatureInvalid,
               "no signed attributes: the signature covers the content directly");
      }
    }
    if (!w.done) {
      AlgorithmRefusal refusal;
      if (!trust.options().allow_legacy) {
        refusal = CheckDigestNid(EVP_MD_get_type(w.md));
        if (!refusal.refused()) refusal = CheckKey(X509_get0_pubkey(w.cert));
      }
      PathResult path = trust.Validate(w.cert, cms_certs.get(), report.validation_time,
                                       Usage::kDocumentSigning);
      w.report.revocation = path.revocation;
      if (path.ok()) w.report.chain = path.chain;
      if (!path.ok() && IndicationOf(path.sub_indication) == Indication::kFailed) {
        Decide(w, path.sub_indication, path.reason, path.detail);
      } else if (refusal.refused()) {
        Decide(w, SubIndication::kCryptoConstraintsFailure, refusal.reason,
               refusal.detail + " in the signature");
      } else if (!path.ok()) {
        Decide(w, path.sub_indication, path.reason, path.detail);
      }
    }
    report.signers.push_back(std::move(w.report));
  }
  Summarize(report);
  return report;
}

}  // namespace

// A SignedData that must be detached (its content comes from elsewhere).
static Result<CmsPtr> ParseDetachedSignedData(std::string_view cms_der) {
  auto cms = ParseSignedData(cms_der);
  if (!cms) return Err(cms.error());
  if (HasEmbeddedContent(cms->get())) {
    return Err(Status::DataError(
        "signature carries its content (encapsulated); a detached signature is expected"));
  }
  return std::move(*cms);
}

Result<Report> Verifier::VerifyFile(const std::string& content_path, std::string_view cms_der,
                                    std::optional<std::time_t> at) const {
  auto cms = ParseDetachedSignedData(cms_der);
  if (!cms) return Err(cms.error());
  Content content;
  content.path = &content_path;
  return VerifyImpl(trust_, cms->get(), content, at);
}

Result<Report> Verifier::VerifyBytes(std::string_view bytes, std::string_view cms_der,
                                     std::optional<std::time_t> at) const {
  auto cms = ParseDetachedSignedData(cms_der);
  if (!cms) return Err(cms.error());
  Content content;
  content.bytes = bytes;
  return VerifyImpl(trust_, cms->get(), content, at);
}

Result<Report> Verifier::VerifyEmbedded(std::string_view cms_der,
                                        std::optional<std::time_t> at) const {
  auto cms = ParseSignedData(cms_der);
  if (!cms) return Err(cms.error());
  if (!HasEmbeddedContent(cms->get())) {
    return Err(Status::DataError("signature is detached: it carries no content"));
  }
  const ASN1_OCTET_STRING* os = *CMS_get0_content(cms->get());
  Content content;
  content.bytes = std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(os)),
                                   static_cast<size_t>(ASN1_STRING_length(os)));
  return VerifyImpl(trust_, cms->get(), content, at);
}

}  // namespace sealpost::crypto
