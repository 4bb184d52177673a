#include "crypto/cades_sign.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "crypto/certs.h"
#include "crypto/digest.h"

namespace sealpost::crypto {
namespace {

// A non-owning stack of attributes: the elements belong to the SignerInfo.
struct AttrStackDeleter {
  void operator()(STACK_OF(X509_ATTRIBUTE)* s) const { sk_X509_ATTRIBUTE_free(s); }
};
using AttrStackPtr = std::unique_ptr<STACK_OF(X509_ATTRIBUTE), AttrStackDeleter>;

struct OpenSslFree {
  void operator()(unsigned char* p) const { OPENSSL_free(p); }
};

std::string ToString(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

Result<std::string> EncodeCms(CMS_ContentInfo* cms) {
  unsigned char* out = nullptr;
  int len = i2d_CMS_ContentInfo(cms, &out);
  std::unique_ptr<unsigned char, OpenSslFree> owned(out);
  if (len <= 0) return Err(OpenSslStatus(Code::kInternal, "cannot encode the CMS signature"));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(len));
}

Result<CmsPtr> DecodeCms(std::string_view der, std::string_view source) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  if (der.size() > static_cast<size_t>(INT32_MAX)) {
    return Err(Status::DataError(std::string(source) + ": too large for a signature"));
  }
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms) {
    return Err(OpenSslStatus(Code::kDataError,
                             std::string(source) + ": not a DER/BER CMS signature"));
  }
  if (p != end) {
    return Err(Status::DataError(std::string(source) + ": " + std::to_string(end - p) +
                                 " bytes of trailing data after the CMS signature"));
  }
  return cms;
}

// The signatureAlgorithm we write: rsaEncryption (PKCS#1 v1.5, NULL
// parameters) as RFC 3370 and every peer expect, ecdsa-with-SHAxxx with
// absent parameters for EC (RFC 5753/5758).
Result<int> SignatureNid(const EVP_PKEY* pub, DigestAlg alg) {
  if (EVP_PKEY_is_a(pub, "RSA")) return NID_rsaEncryption;
  if (EVP_PKEY_is_a(pub, "EC")) {
    switch (alg) {
      case DigestAlg::kSha256: return NID_ecdsa_with_SHA256;
      case DigestAlg::kSha384: return NID_ecdsa_with_SHA384;
      case DigestAlg::kSha512: return NID_ecdsa_with_SHA512;
    }
  }
  return Err(Status::InvalidArgument("signer key is neither RSA nor EC"));
}

Status CheckSigningCert(X509* cert, std::time_t at) {
  std::string name = DisplayName(cert);
  if (X509_get_extension_flags(cert) & EXFLAG_KUSAGE) {
    if ((X509_get_key_usage(cert) & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0) {
      return Status::InvalidArgument("certificate of '" + name +
                                     "' does not allow signing (key usage has neither "
                                     "digitalSignature nor nonRepudiation)");
    }
  }
  if (X509_cmp_time(X509_get0_notBefore(cert), &at) >= 0) {
    return Status::InvalidArgument("certificate of '" + name + "' is not yet valid");
  }
  if (X509_cmp_time(X509_get0_notAfter(cert), &at) <= 0) {
    return Status::InvalidArgument("certificate of '" + name + "' has expired");
  }
  return Status::Ok();
}

// The DER SET OF the signed attributes, as the signature covers them
// (RFC 5652, 5.4): tag SET, elements sorted by their encodings. OpenSSL's
// PKCS7_ATTR_SIGN template sorts exactly as the SignerInfo encoder does, so
// these are the bytes that end up in the file (re-checked after encoding).
Result<std::string> EncodeSignedAttrs(CMS_SignerInfo* si) {
  AttrStackPtr attrs(sk_X509_ATTRIBUTE_new_null());
  if (!attrs) return Err(OpenSslStatus(Code::kInternal, "out of memory"));
  int n = CMS_signed_get_attr_count(si);
  for (int i = 0; i < n; ++i) {
    if (sk_X509_ATTRIBUTE_push(attrs.get(), CMS_signed_get_attr(si, i)) <= 0) {
      return Err(OpenSslStatus(Code::kInternal, "out of memory"));
    }
  }
  unsigned char* out = nullptr;
  int len = ASN1_item_i2d(reinterpret_cast<ASN1_VALUE*>(attrs.get()), &out,
                          ASN1_ITEM_rptr(PKCS7_ATTR_SIGN));
  std::unique_ptr<unsigned char, OpenSslFree> owned(out);
  if (len <= 0) return Err(OpenSslStatus(Code::kInternal, "cannot encode the signed attributes"));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(len));
}

// Re-reads `der` and checks the one SignerInfo of `cert` in it: the four
// B-B attributes and nothing else, message-digest == content_digest, the
// expected algorithms, and a signature that verifies over the encoded bytes.
Status VerifyOwnSignerInfo(std::string_view der, X509* cert, DigestAlg alg,
                           std::string_view content_digest) {
  auto cms = DecodeCms(der, "new signature");
  if (!cms) return cms.error().WithContext("internal check");
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms->get());
  CMS_SignerInfo* mine = nullptr;
  for (int i = 0; i < sk_CMS_SignerInfo_num(sis); ++i) {
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(sis, i);
    if (CMS_SignerInfo_cert_cmp(si, cert) == 0) {
      if (mine) return Status::Internal("internal check: two SignerInfos for one certificate");
      mine = si;
    }
  }
  if (!mine) return Status::Internal("internal check: the new SignerInfo is missing");
  X509_ALGOR* dig = nullptr;
  X509_ALGOR* sig = nullptr;
  CMS_SignerInfo_get0_algs(mine, nullptr, nullptr, &dig, &sig);
  if (OBJ_obj2nid(dig->algorithm) != EVP_MD_get_type(DigestAlgMd(alg))) {
    return Status::Internal("internal check: wrong digestAlgorithm in the SignerInfo");
  }
  auto want_sig = SignatureNid(X509_get0_pubkey(cert), alg);
  if (!want_sig) return want_sig.error();
  if (OBJ_obj2nid(sig->algorithm) != *want_sig) {
    return Status::Internal("internal check: wrong signatureAlgorithm in the SignerInfo");
  }
  static constexpr int kAttrs[] = {NID_pkcs9_contentType, NID_pkcs9_messageDigest,
                                   NID_pkcs9_signingTime, NID_id_smime_aa_signingCertificateV2};
  if (CMS_signed_get_attr_count(mine) != 4) {
    return Status::Internal("internal check: the SignerInfo does not carry exactly 4 attributes");
  }
  for (int nid : kAttrs) {
    if (CMS_signed_get_attr_by_NID(mine, nid, -1) < 0) {
      return Status::Internal(std::string("internal check: attribute missing: ") +
                              OBJ_nid2sn(nid));
    }
  }
  const auto* md = static_cast<const ASN1_OCTET_STRING*>(CMS_signed_get0_data_by_OBJ(
      mine, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING));
  if (!md || ToString(md) != content_digest) {
    return Status::Internal("internal check: message-digest differs from the content digest");
  }
  CMS_SignerInfo_set1_signer_cert(mine, cert);
  if (CMS_SignerInfo_verify(mine) != 1) {
    return OpenSslStatus(Code::kInternal,
                         "the signature returned by the signer does not verify with the "
                         "certificate of '" + DisplayName(cert) + "'");
  }
  return Status::Ok();
}

// ---- A small BER reader for re-assembling SignedData without re-encoding.

struct Tlv {
  std::string_view tag;      // identifier octets, as found
  std::string_view content;  // content octets (without an end-of-contents)
  std::string_view whole;    // everything, header to end
  bool constructed = false;
};

constexpr int kMaxDepth = 32;

Result<Tlv> ReadTlv(std::string_view in, int depth);

Result<std::vector<Tlv>> ReadElements(std::string_view in, int depth) {
  std::vector<Tlv> out;
  while (!in.empty()) {
    auto t = ReadTlv(in, depth);
    if (!t) return Err(t.error());
    in.remove_prefix(t->whole.size());
    out.push_back(*t);
  }
  return out;
}

Result<Tlv> ReadTlv(std::string_view in, int depth) {
  auto bad = [](const char* why) { return Err(Status::DataError(std::string("malformed ASN.1: ") + why)); };
  if (depth > kMaxDepth) return bad("nested too deeply");
  size_t pos = 0;
  if (in.size() < 2) return bad("truncated");
  unsigned char first = static_cast<unsigned char>(in[pos++]);
  if ((first & 0x1f) == 0x1f) {
    int n = 0;
    for (;;) {
      if (pos >= in.size() || ++n > 4) return bad("bad tag");
      if ((static_cast<unsigned char>(in[pos++]) & 0x80) == 0) break;
    }
  }
  Tlv t;
  t.tag = in.substr(0, pos);
  t.constructed = (first & 0x20) != 0;
  if (pos >= in.size()) return bad("truncated");
  unsigned char l0 = static_cast<unsigned char>(in[pos++]);
  if (l0 == 0x80) {
    if (!t.constructed) return bad("indefinite length on a primitive");
    // Indefinite length: children until an end-of-contents (00 00).
    size_t start = pos;
    for (;;) {
      if (pos + 2 > in.size()) return bad("missing end-of-contents");
      if (in[pos] == 0 && in[pos + 1] == 0) break;
      auto child = ReadTlv(in.substr(pos), depth + 1);
      if (!child) return Err(child.error());
      pos += child->whole.size();
    }
    t.content = in.substr(start, pos - start);
    t.whole = in.substr(0, pos + 2);
    return t;
  }
  size_t len = 0;
  if (l0 < 0x80) {
    len = l0;
  } else {
    int n = l0 & 0x7f;
    if (n > 4) return bad("length too large");
    for (int i = 0; i < n; ++i) {
      if (pos >= in.size()) return bad("truncated length");
      len = (len << 8) | static_cast<unsigned char>(in[pos++]);
    }
  }
  if (len > in.size() - pos) return bad("element longer than its container");
  t.content = in.substr(pos, len);
  t.whole = in.substr(0, pos + len);
  return t;
}

void AppendLength(std::string& out, size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<char>(len));
    return;
  }
  char buf[sizeof(size_t)];
  int n = 0;
  for (size_t l = len; l; l >>= 8) buf[n++] = static_cast<char>(l & 0xff);
  out.push_back(static_cast<char>(0x80 | n));
  while (n) out.push_back(buf[--n]);
}

std::string EncodeTlv(unsigned char tag, std::string_view content) {
  std::string out;
  out.push_back(static_cast<char>(tag));
  AppendLength(out, content.size());
  out.append(content);
  return out;
}

// X.690 11.6: SET OF elements in ascending order of their encodings, the
// shorter one padded with zero octets for the comparison.
bool DerSetLess(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  int c = std::memcmp(a.data(), b.data(), n);
  if (c != 0) return c < 0;
  // One is a prefix of the other: the zero padding never makes the longer
  // one smaller, so the shorter comes first (equal when the tail is zeros).
  return a.size() < b.size();
}

std::string EncodeSet(unsigned char tag, std::vector<std::string_view> elems) {
  std::stable_sort(elems.begin(), elems.end(), DerSetLess);
  std::string content;
  for (auto e : elems) content.append(e);
  return EncodeTlv(tag, content);
}

// The parts of a SignedData (RFC 5652, 5.1), each element's bytes as found.
struct SignedDataParts {
  std::string_view version;  // INTEGER, whole
  std::vector<std::string_view> digest_algs;
  std::string_view content_type;  // eContentType OID, whole
  bool has_econtent = false;
  std::vector<std::string_view> certs;
  std::vector<std::string_view> crls;
  std::vector<std::string_view> signer_infos;
};

// id-signedData, DER.
constexpr unsigned char kSignedDataOid[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                            0xf7, 0x0d, 0x01, 0x07, 0x02};

Result<SignedDataParts> SplitSignedData(std::string_view der, std::string_view source) {
  auto fail = [&](const std::string& why) {
    return Err(Status::DataError(std::string(source) + ": " + why));
  };
  auto ci = ReadTlv(der, 0);
  if (!ci) return Err(ci.error().WithContext(source));
  if (ci->whole.size() != der.size()) return fail("trailing data after the signature");
  if (ci->tag != "\x30") return fail("not a CMS ContentInfo");
  auto ci_kids = ReadElements(ci->content, 1);
  if (!ci_kids) return Err(ci_kids.error().WithContext(source));
  std::string_view oid(reinterpret_cast<const char*>(kSignedDataOid), sizeof(kSignedDataOid));
  if (ci_kids->size() != 2 || (*ci_kids)[0].whole != oid || (*ci_kids)[1].tag != "\xa0") {
    return fail("not a CMS SignedData");
  }
  auto sd_outer = ReadElements((*ci_kids)[1].content, 2);
  if (!sd_outer) return Err(sd_outer.error().WithContext(source));
  if (sd_outer->size() != 1 || (*sd_outer)[0].tag != "\x30") return fail("malformed SignedData");
  auto sd = ReadElements((*sd_outer)[0].content, 3);
  if (!sd) return Err(sd.error().WithContext(source));

  SignedDataParts parts;
  size_t i = 0;
  auto at = [&](std::string_view tag) { return i < sd->size() && (*sd)[i].tag == tag; };
  if (!at("\x02")) return fail("SignedData has no version");
  parts.version = (*sd)[i++].whole;
  if (!at("\x31")) return fail("SignedData has no digestAlgorithms");
  auto algs = ReadElements((*sd)[i++].content, 4);
  if (!algs) return Err(algs.error().WithContext(source));
  for (auto& a : *algs) parts.digest_algs.push_back(a.whole);
  if (!at("\x30")) return fail("SignedData has no encapContentInfo");
  auto encap = ReadElements((*sd)[i++].content, 4);
  if (!encap) return Err(encap.error().WithContext(source));
  if (encap->empty() || (*encap)[0].tag != "\x06") return fail("encapContentInfo has no type");
  parts.content_type = (*encap)[0].whole;
  parts.has_econtent = encap->size() > 1;
  if (at("\xa0")) {
    auto certs = ReadElements((*sd)[i++].content, 4);
    if (!certs) return Err(certs.error().WithContext(source));
    for (auto& c : *certs) parts.certs.push_back(c.whole);
  }
  if (at("\xa1")) {
    auto crls = ReadElements((*sd)[i++].content, 4);
    if (!crls) return Err(crls.error().WithContext(source));
    for (auto& c : *crls) parts.crls.push_back(c.whole);
  }
  if (!at("\x31")) return fail("SignedData has no signerInfos");
  auto sis = ReadElements((*sd)[i++].content, 4);
  if (!sis) return Err(sis.error().WithContext(source));
  for (auto& s : *sis) parts.signer_infos.push_back(s.whole);
  if (i != sd->size()) return fail("unexpected fields after signerInfos");
  return parts;
}

long SmallInteger(std::string_view integer_tlv) {
  auto t = ReadTlv(integer_tlv, 0);
  if (!t || t->content.empty() || t->content.size() > 2) return -1;
  long v = 0;
  for (char c : t->content) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

// The OID element inside an AlgorithmIdentifier, for comparing algorithms
// regardless of how their (absent or NULL) parameters were written.
std::string_view AlgorithmOid(std::string_view alg_id) {
  auto t = ReadTlv(alg_id, 0);
  if (!t) return alg_id;
  auto kids = ReadElements(t->content, 1);
  if (!kids || kids->empty()) return alg_id;
  return (*kids)[0].whole;
}

// DER of an OBJECT IDENTIFIER element for `nid` (empty if unknown).
std::string OidDer(int nid) {
  const ASN1_OBJECT* obj = OBJ_nid2obj(nid);
  if (!obj) return {};
  unsigned char* out = nullptr;
  int len = i2d_ASN1_OBJECT(obj, &out);
  std::unique_ptr<unsigned char, OpenSslFree> owned(out);
  if (len <= 0) return {};
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(len));
}

// The check of the SignerInfo BuildDetachedSignature has just encoded: the
// same properties VerifyOwnSignerInfo checks, without re-decoding the CMS
// through OpenSSL (d2i_CMS_ContentInfo decodes the embedded certificate,
// whose key costs an OSSL_DECODER set-up: measured ~3/4 of the CPU of a
// P-256 signature made with a software key). The DER is walked with the
// BER reader above and must hold exactly one SignerInfo whose identifier is
// `cert`'s issuer and serial number, whose digestAlgorithm and
// signatureAlgorithm are the chosen ones, whose signedAttrs are byte for
// byte `attrs` (the SET OF that was signed, under the [0] IMPLICIT tag) -
// the four B-B attributes and nothing else, message-digest ==
// content_digest - and whose signature value is `sig`; then `sig` must
// verify with the certificate's public key over `attrs`.
Status CheckNewSignerInfo(std::string_view der, X509* cert, DigestAlg alg, int sig_nid,
                          std::string_view content_digest, std::string_view attrs,
                          std::string_view sig) {
  auto internal = [](const std::string& why) { return Status::Internal("internal check: " + why); };
  auto parts = SplitSignedData(der, "new signature");
  if (!parts) return parts.error().WithContext("internal check");
  if (parts->signer_infos.size() != 1) return internal("the new signature has not exactly one SignerInfo");
  auto si = ReadTlv(parts->signer_infos[0], 0);
  if (!si || si->tag != "\x30") return internal("malformed SignerInfo");
  auto f = ReadElements(si->content, 1);
  if (!f || f->size() != 6 || (*f)[0].tag != "\x02" || (*f)[1].tag != "\x30" ||
      (*f)[2].tag != "\x30" || (*f)[3].tag != "\xa0" || (*f)[4].tag != "\x30" ||
      (*f)[5].tag != "\x04") {
    return internal("the SignerInfo does not have the fields written");
  }
  // sid: IssuerAndSerialNumber of `cert`.
  {
    unsigned char* name = nullptr;
    int name_len = i2d_X509_NAME(X509_get_issuer_name(cert), &name);
    std::unique_ptr<unsigned char, OpenSslFree> name_owned(name);
    unsigned char* serial = nullptr;
    int serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);
    std::unique_ptr<unsigned char, OpenSslFree> serial_owned(serial);
    if (name_len <= 0 || serial_len <= 0) return internal("cannot encode the certificate's issuer");
    std::string ias(reinterpret_cast<char*>(name), static_cast<size_t>(name_len));
    ias.append(reinterpret_cast<char*>(serial), static_cast<size_t>(serial_len));
    if ((*f)[1].whole != EncodeTlv(0x30, ias)) return internal("the SignerInfo names another certificate");
  }
  if (AlgorithmOid((*f)[2].whole) != OidDer(EVP_MD_get_type(DigestAlgMd(alg)))) {
    return internal("wrong digestAlgorithm in the SignerInfo");
  }
  if (AlgorithmOid((*f)[4].whole) != OidDer(sig_nid)) {
    return internal("wrong signatureAlgorithm in the SignerInfo");
  }
  if (attrs.empty() || attrs[0] != '\x31' || (*f)[3].whole.substr(1) != attrs.substr(1)) {
    return internal("the signed attributes in the file are not the bytes signed");
  }
  auto list = ReadElements((*f)[3].content, 2);
  if (!list || list->size() != 4) {
    return internal("the SignerInfo does not carry exactly 4 attributes");
  }
  static constexpr int kAttrs[] = {NID_pkcs9_contentType, NID_pkcs9_messageDigest,
                                   NID_pkcs9_signingTime, NID_id_smime_aa_signingCertificateV2};
  const std::string md_oid = OidDer(NID_pkcs9_messageDigest);
  for (int nid : kAttrs) {
    const std::string oid = OidDer(nid);
    int found = 0;
    for (const Tlv& a : *list) {
      auto kids = ReadElements(a.content, 3);
      if (!kids || kids->size() != 2 || (*kids)[0].whole != oid) continue;
      ++found;
      if (oid != md_oid) continue;
      auto values = ReadElements((*kids)[1].content, 4);
      if (!values || values->size() != 1 || (*values)[0].tag != "\x04" ||
          (*values)[0].content != content_digest) {
        return internal("message-digest differs from the content digest");
      }
    }
    if (found != 1) return internal(std::string("attribute missing: ") + OBJ_nid2sn(nid));
  }
  if ((*f)[5].content != sig) return internal("the signature in the file is not the signer's");
  std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
  if (!ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, DigestAlgMd(alg), nullptr, X509_get0_pubkey(cert)) != 1 ||
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(attrs.data()), attrs.size()) != 1) {
    return OpenSslStatus(Code::kInternal,
                         "the signature returned by the signer does not verify with the "
                         "certificate of '" + DisplayName(cert) + "'");
  }
  return Status::Ok();
}

}  // namespace

Result<DigestAlg> DigestAlgForKey(const EVP_PKEY* public_key) {
  if (!public_key) return Err(Status::InvalidArgument("no public key"));
  if (EVP_PKEY_is_a(public_key, "RSA")) return DigestAlg::kSha256;
  if (EVP_PKEY_is_a(public_key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(public_key, "group", group, sizeof(group), &len) != 1) {
      return Err(OpenSslStatus(Code::kInvalidArgument, "EC key without a named curve"));
    }
    std::string_view g(group, len);
    if (g == "prime256v1" || g == "P-256") return DigestAlg::kSha256;
    if (g == "secp384r1" || g == "P-384") return DigestAlg::kSha384;
    if (g == "secp521r1" || g == "P-521") return DigestAlg::kSha512;
    return Err(Status::InvalidArgument("unsupported EC curve " + std::string(g) +
                                       " (P-256, P-384 or P-521 are supported)"));
  }
  return Err(Status::InvalidArgument("unsupported signer key type (RSA or EC are supported)"));
}

Result<std::string> BuildDetachedSignature(Signer& signer, const KeyRef& key, X509* cert,
                                           DigestAlg alg, std::string_view content_digest,
                                           const CadesSignOptions& opts) {
  if (!cert) return Err(Status::InvalidArgument("no signer certificate"));
  if (content_digest.size() != DigestAlgSize(alg)) {
    return Err(Status::InvalidArgument("content digest has the wrong length for " +
                                       std::string(DigestAlgName(alg))));
  }
  std::time_t when = opts.signing_time.value_or(std::time(nullptr));
  SP_RETURN_IF_ERROR(CheckSigningCert(cert, when));
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (!pub) return Err(OpenSslStatus(Code::kInvalidArgument, "cannot read the certificate's key"));
  auto sig_nid = SignatureNid(pub, alg);
  if (!sig_nid) return Err(sig_nid.error());
  const EVP_MD* md = DigestAlgMd(alg);

  // No key and no content: an empty detached SignedData to add a signer to.
  CmsPtr cms(CMS_sign(nullptr, nullptr, nullptr, nullptr,
                      CMS_PARTIAL | CMS_DETACHED | CMS_BINARY));
  if (!cms) return Err(OpenSslStatus(Code::kInternal, "cannot create a CMS SignedData"));

  // CMS_add1_signer wants "the private key" only to check it matches the
  // certificate (public parts) and to pick algorithm identifiers; the public
  // key serves. CMS_CADES adds signing-certificate-v2 (ESSCertIDv2 with the
  // certificate's hash under `md` and its issuer/serial).
  CMS_SignerInfo* si = CMS_add1_signer(
      cms.get(), cert, pub, md, CMS_PARTIAL | CMS_BINARY | CMS_CADES | CMS_NOSMIMECAP | CMS_NOCERTS);
  if (!si) return Err(OpenSslStatus(Code::kInternal, "cannot add a SignerInfo"));

  std::vector<X509*> embed{cert};
  for (X509* c : opts.chain) {
    if (!c) continue;
    bool dup = std::any_of(embed.begin(), embed.end(), [&](X509* e) { return X509_cmp(e, c) == 0; });
    if (!dup) embed.push_back(c);
  }
  for (X509* c : embed) {
    if (CMS_add1_cert(cms.get(), c) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "cannot embed certificate '" + DisplayName(c) + "'"));
    }
  }

  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
                                  OBJ_nid2obj(NID_pkcs7_data), -1) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot add content-type"));
  }
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING,
                                  content_digest.data(),
                                  static_cast<int>(content_digest.size())) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot add message-digest"));
  }
  // ASN1_TIME_set picks UTCTime for 1950..2049 and GeneralizedTime outside,
  // which is what RFC 5652 11.3 requires.
  Asn1TimePtr t(ASN1_TIME_set(nullptr, when));
  if (!t) return Err(OpenSslStatus(Code::kInvalidArgument, "signing time out of range"));
  if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, ASN1_STRING_type(t.get()), t.get(),
                                  -1) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot add signing-time"));
  }

  X509_ALGOR* sig_alg = nullptr;
  CMS_SignerInfo_get0_algs(si, nullptr, nullptr, nullptr, &sig_alg);
  bool rsa = *sig_nid == NID_rsaEncryption;
  if (X509_ALGOR_set0(sig_alg, OBJ_nid2obj(*sig_nid), rsa ? V_ASN1_NULL : V_ASN1_UNDEF,
                      nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot set signatureAlgorithm"));
  }

  auto attrs = EncodeSignedAttrs(si);
  if (!attrs) return Err(attrs.error());
  // The signer gets the attributes themselves, not only their digest, so a
  // signer process can check what it signs (daemon/signer/).
  auto sig = signer.SignSignedAttributes(key, alg, *attrs);
  if (!sig) return Err(sig.error());
  if (sig->empty()) return Err(Status::Internal("the signer returned an empty signature"));
  if (ASN1_STRING_set(CMS_SignerInfo_get0_signature(si), sig->data(),
                      static_cast<int>(sig->size())) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "cannot store the signature"));
  }
  auto der = EncodeCms(cms.get());
  if (!der) return Err(der.error());
  SP_RETURN_IF_ERROR(CheckNewSignerInfo(*der, cert, alg, *sig_nid, content_digest, *attrs, *sig));
  return der;
}

Result<std::string> SignFile(Signer& signer, const KeyRef& key, const std::string& content_path,
                             const CadesSignOptions& opts) {
  auto cert = signer.Certificate(key);
  if (!cert) return Err(cert.error());
  auto alg = DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg) return Err(alg.error());
  auto digests = DigestFile(content_path, {DigestAlgMd(*alg)});
  if (!digests) return Err(digests.error());
  return BuildDetachedSignature(signer, key, cert->get(), *alg, (*digests)[0], opts);
}

Result<ExistingSignature> ExistingSignature::Parse(std::string der, std::string source) {
  auto cms = DecodeCms(der, source);
  if (!cms) return Err(cms.error());
  auto fail = [&](const std::string& why) { return Err(Status::DataError(source + ": " + why)); };
  if (OBJ_obj2nid(CMS_get0_type(cms->get())) != NID_pkcs7_signed) {
    return fail("not a CMS SignedData");
  }
  if (OBJ_obj2nid(CMS_get0_eContentType(cms->get())) != NID_pkcs7_data) {
    return fail("the signed content type is not id-data");
  }
  if (CMS_is_detached(cms->get()) != 1) {
    return fail("not a detached signature (it carries its content)");
  }
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms->get());
  int n = sk_CMS_SignerInfo_num(sis);
  if (n <= 0) return fail("has no signer");
  X509StackPtr certs(CMS_get1_certs(cms->get()));
  ExistingSignature out;
  for (int i = 0; i < n; ++i) {
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(sis, i);
    SignedDigest sd;
    sd.signer = "signer #" + std::to_string(i + 1);
    for (int j = 0; certs && j < sk_X509_num(certs.get()); ++j) {
      X509* c = sk_X509_value(certs.get(), j);
      if (CMS_SignerInfo_cert_cmp(si, c) == 0) {
        X509_up_ref(c);
        sd.cert.reset(c);
        sd.signer = DisplayName(c);
        break;
      }
    }
    X509_ALGOR* dig = nullptr;
    CMS_SignerInfo_get0_algs(si, nullptr, nullptr, &dig, nullptr);
    sd.md = dig ? EVP_get_digestbyobj(dig->algorithm) : nullptr;
    if (!sd.md) return fail(sd.signer + " uses an unknown digest algorithm");
    sd.digest_name = OBJ_nid2sn(EVP_MD_get_type(sd.md));
    if (CMS_signed_get_attr_count(si) <= 0) {
      return fail(sd.signer + " has no signed attributes; cannot tell which content it signed");
    }
    const auto* md = static_cast<const ASN1_OCTET_STRING*>(CMS_signed_get0_data_by_OBJ(
        si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING));
    if (!md) return fail(sd.signer + " has no (single) message-digest attribute");
    sd.message_digest = ToString(md);
    if (sd.message_digest.size() != static_cast<size_t>(EVP_MD_get_size(sd.md))) {
      return fail(sd.signer + "'s message-digest has the wrong length for " + sd.digest_name);
    }
    out.signers_.push_back(std::move(sd));
  }
  ClearOpenSslErrors();
  out.der_ = std::move(der);
  out.source_ = std::move(source);
  return out;
}

std::vector<const EVP_MD*> ExistingSignature::DigestMds() const {
  std::vector<const EVP_MD*> mds;
  for (const auto& s : signers_) {
    bool seen = std::any_of(mds.begin(), mds.end(), [&](const EVP_MD* m) {
      return EVP_MD_get_type(m) == EVP_MD_get_type(s.md);
    });
    if (!seen) mds.push_back(s.md);
  }
  return mds;
}

Status ExistingSignature::CheckCovers(const std::vector<const EVP_MD*>& mds,
                                      const std::vector<std::string>& digests,
                                      std::string_view content_name) const {
  for (const auto& s : signers_) {
    const std::string* have = nullptr;
    for (size_t i = 0; i < mds.size() && i < digests.size(); ++i) {
      if (EVP_MD_get_type(mds[i]) == EVP_MD_get_type(s.md)) have = &digests[i];
    }
    if (!have) return Status::Internal("no " + s.digest_name + " digest of the content computed");
    if (have->size() != s.message_digest.size() ||
        CRYPTO_memcmp(have->data(), s.message_digest.data(), have->size()) != 0) {
      return Status::DataError(source_ + ": the signature of '" + s.signer +
                               "' is over other content, not " + std::string(content_name) + " (" +
                               s.digest_name + " differs)");
    }
  }
  return Status::Ok();
}

Status ExistingSignature::CheckNotSignedBy(X509* cert) const {
  auto cms = DecodeCms(der_, source_);
  if (!cms) return cms.error();
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms->get());
  for (int i = 0; i < sk_CMS_SignerInfo_num(sis); ++i) {
    if (CMS_SignerInfo_cert_cmp(sk_CMS_SignerInfo_value(sis, i), cert) == 0) {
      return Status::FailedPrecondition(source_ + ": already signed by '" + DisplayName(cert) +
                                        "' with this certificate");
    }
  }
  return Status::Ok();
}

Result<std::string> MergeSignedData(std::string_view existing, std::string_view existing_source,
                                    std::string_view addition) {
  auto a = SplitSignedData(existing, existing_source);
  if (!a) return Err(a.error());
  auto b = SplitSignedData(addition, "new signature");
  if (!b) return Err(b.error().WithContext("internal"));
  if (a->has_econtent) {
    return Err(Status::DataError(std::string(existing_source) +
                                 ": not a detached signature (it carries its content)"));
  }
  if (a->content_type != b->content_type) {
    return Err(Status::DataError(std::string(existing_source) + ": signs another content type"));
  }

  std::vector<std::string_view> algs = a->digest_algs;
  for (auto alg : b->digest_algs) {
    bool have = std::any_of(algs.begin(), algs.end(),
                            [&](std::string_view x) { return AlgorithmOid(x) == AlgorithmOid(alg); });
    if (!have) algs.push_back(alg);
  }
  std::vector<std::string_view> certs = a->certs;
  for (auto c : b->certs) {
    if (std::find(certs.begin(), certs.end(), c) == certs.end()) certs.push_back(c);
  }
  std::vector<std::string_view> crls = a->crls;
  for (auto c : b->crls) {
    if (std::find(crls.begin(), crls.end(), c) == crls.end()) crls.push_back(c);
  }
  std::vector<std::string_view> sis = a->signer_infos;
  sis.insert(sis.end(), b->signer_infos.begin(), b->signer_infos.end());

  std::string_view version = SmallInteger(b->version) > SmallInteger(a->version) ? b->version
                                                                                  : a->version;
  std::string sd;
  sd.append(version);
  sd.append(EncodeSet(0x31, algs));
  sd.append(EncodeTlv(0x30, a->content_type));  // detached: the type alone
  if (!certs.empty()) sd.append(EncodeSet(0xa0, certs));
  if (!crls.empty()) sd.append(EncodeSet(0xa1, crls));
  sd.append(EncodeSet(0x31, sis));
  std::string ci(reinterpret_cast<const char*>(kSignedDataOid), sizeof(kSignedDataOid));
  ci.append(EncodeTlv(0xa0, EncodeTlv(0x30, sd)));
  return EncodeTlv(0x30, ci);
}

Result<std::string> AppendSignature(Signer& signer, const KeyRef& key, X509* cert,
                                    DigestAlg alg, std::string_view content_digest,
                                    const ExistingSignature& existing,
                                    const CadesSignOptions& opts) {
  SP_RETURN_IF_ERROR(existing.CheckNotSignedBy(cert));
  // Signers that used our digest algorithm can be checked here; the others
  // were checked by the caller (AppendSignatureForFile or the CLI).
  for (const auto& s : existing.signers()) {
    if (EVP_MD_get_type(s.md) != EVP_MD_get_type(DigestAlgMd(alg))) continue;
    if (s.message_digest.size() != content_digest.size() ||
        CRYPTO_memcmp(s.message_digest.data(), content_digest.data(), content_digest.size()) != 0) {
      return Err(Status::DataError(existing.source() + ": the signature of '" + s.signer +
                                   "' is over other content (" + s.digest_name + " differs)"));
    }
  }
  auto addition = BuildDetachedSignature(signer, key, cert, alg, content_digest, opts);
  if (!addition) return Err(addition.error());
  auto merged = MergeSignedData(existing.der(), existing.source(), *addition);
  if (!merged) return Err(merged.error());
  // The merged file must still be what we meant: every old signer plus ours.
  auto reread = ExistingSignature::Parse(*merged, "merged signature");
  if (!reread) return Err(reread.error().WithContext("internal check"));
  if (reread->signers().size() != existing.signers().size() + 1) {
    return Err(Status::Internal("internal check: merged signature has the wrong signer count"));
  }
  SP_RETURN_IF_ERROR(VerifyOwnSignerInfo(*merged, cert, alg, content_digest));
  return merged;
}

Result<std::string> AppendSignatureForFile(Signer& signer, const KeyRef& key,
                                           const ExistingSignature& existing,
                                           const std::string& content_path,
                                           const CadesSignOptions& opts) {
  auto cert = signer.Certificate(key);
  if (!cert) return Err(cert.error());
  auto alg = DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg) return Err(alg.error());
  std::vector<const EVP_MD*> mds = existing.DigestMds();
  size_t mine = mds.size();
  for (size_t i = 0; i < mds.size(); ++i) {
    if (EVP_MD_get_type(mds[i]) == EVP_MD_get_type(DigestAlgMd(*alg))) mine = i;
  }
  if (mine == mds.size()) mds.push_back(DigestAlgMd(*alg));
  auto digests = DigestFile(content_path, mds);
  if (!digests) return Err(digests.error());
  SP_RETURN_IF_ERROR(existing.CheckCovers(mds, *digests, content_path));
  return AppendSignature(signer, key, cert->get(), *alg, (*digests)[mine], existing, opts);
}

}  // namespace sealpost::crypto
