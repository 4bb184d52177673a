#include "pkcs11/csr.h"

#include <string>
#include <vector>

#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "pkcs11/uri.h"

namespace sealpost::pkcs11 {
namespace {

using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslDeleter<GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, OsslDeleter<GENERAL_NAME_free>>;
using Ia5StringPtr = std::unique_ptr<ASN1_IA5STRING, OsslDeleter<ASN1_IA5STRING_free>>;
using BitStringPtr = std::unique_ptr<ASN1_BIT_STRING, OsslDeleter<ASN1_BIT_STRING_free>>;
using AlgorPtr = std::unique_ptr<X509_ALGOR, OsslDeleter<X509_ALGOR_free>>;
struct ExtensionStackDeleter {
  void operator()(STACK_OF(X509_EXTENSION)* s) const {
    if (s) sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  }
};
using ExtensionStackPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackDeleter>;

Status CheckEmail(const std::string& e) {
  size_t at = e.find('@');
  bool ok = !e.empty() && e.size() <= 254 && at != std::string::npos && at > 0 &&
            at + 1 < e.size() && e.find('@', at + 1) == std::string::npos;
  for (unsigned char c : e) ok = ok && c > 0x20 && c < 0x7f && c != ',' && c != '<' && c != '>';
  if (!ok) return Status::InvalidArgument("--email: \"" + e + "\" is not an e-mail address (ASCII local@domain)");
  return Status::Ok();
}

}  // namespace

Result<X509NamePtr> ParseSubject(std::string_view s) {
  if (s.empty() || s[0] != '/') {
    return Err(Status::InvalidArgument("--subject must look like /CN=Name/O=Organisation/C=VN"));
  }
  X509NamePtr name(X509_NAME_new());
  if (!name) return Err(OpenSslStatus(Code::kInternal, "X509_NAME_new"));
  // Split on unescaped '/'.
  std::vector<std::string> parts;
  std::string cur;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '/' || s[i + 1] == '\\')) {
      cur += s[++i];
    } else if (c == '/') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  for (const auto& part : parts) {
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Err(Status::InvalidArgument("--subject: component \"" + part + "\" is not NAME=value"));
    }
    std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    if (value.empty()) return Err(Status::InvalidArgument("--subject: " + key + " has an empty value"));
    if (!IsValidUtf8(value)) return Err(Status::InvalidArgument("--subject: " + key + " is not valid UTF-8"));
    if (OBJ_txt2nid(key.c_str()) == NID_undef) {
      ClearOpenSslErrors();
      return Err(Status::InvalidArgument("--subject: unknown attribute '" + key + "'"));
    }
    if (X509_NAME_add_entry_by_txt(name.get(), key.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      return Err(OpenSslStatus(Code::kInvalidArgument, "--subject: " + key + "=" + value + " is not acceptable"));
    }
  }
  return name;
}

Result<X509ReqPtr> MakeCsr(crypto::Signer& signer, const crypto::KeyRef& key, EVP_PKEY* public_key,
                           const CsrRequest& in) {
  int key_type = EVP_PKEY_get_base_id(public_key);
  int bits = EVP_PKEY_get_bits(public_key);
  crypto::DigestAlg alg = crypto::DigestAlg::kSha256;
  int sig_nid;
  if (key_type == EVP_PKEY_RSA) {
    sig_nid = NID_sha256WithRSAEncryption;
  } else if (key_type == EVP_PKEY_EC) {
    if (bits > 256) alg = crypto::DigestAlg::kSha384;
    sig_nid = bits > 256 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA256;
  } else {
    return Err(Status::FailedPrecondition("CSR: the key is neither RSA nor EC"));
  }
  X509ReqPtr req(X509_REQ_new());
  if (!req) return Err(OpenSslStatus(Code::kInternal, "X509_REQ_new"));
  if (X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_subject_name(req.get(), in.subject) != 1 ||
      X509_REQ_set_pubkey(req.get(), public_key) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "building the CSR"));
  }
  if (in.email) {
    Status s = CheckEmail(*in.email);
    if (!s.ok()) return Err(s);
    GeneralNamesPtr names(GENERAL_NAMES_new());
    GeneralNamePtr gn(GENERAL_NAME_new());
    Ia5StringPtr ia5(ASN1_IA5STRING_new());
    if (!names || !gn || !ia5 ||
        ASN1_STRING_set(ia5.get(), in.email->data(), static_cast<int>(in.email->size())) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "building subjectAltName"));
    }
    GENERAL_NAME_set0_value(gn.get(), GEN_EMAIL, ia5.release());
    if (sk_GENERAL_NAME_push(names.get(), gn.get()) == 0) {
      return Err(OpenSslStatus(Code::kInternal, "building subjectAltName"));
    }
    gn.release();  // owned by `names` now
    X509ExtensionPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
    ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
    if (!ext || !exts || sk_X509_EXTENSION_push(exts.get(), ext.get()) == 0) {
      return Err(OpenSslStatus(Code::kInternal, "building the extension request"));
    }
    ext.release();  // owned by `exts` now
    if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "X509_REQ_add_extensions"));
    }
  }
  // The signature algorithm is part of the outer structure only; set it,
  // then sign the DER of CertificationRequestInfo through the Signer.
  AlgorPtr algor(X509_ALGOR_new());
  if (!algor ||
      X509_ALGOR_set0(algor.get(), OBJ_nid2obj(sig_nid),
                      key_type == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr) != 1 ||
      X509_REQ_set1_signature_algo(req.get(), algor.get()) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "setting the CSR signature algorithm"));
  }
  unsigned char* tbs_raw = nullptr;
  int tbs_len = i2d_re_X509_REQ_tbs(req.get(), &tbs_raw);
  OpenSslBytesPtr tbs(tbs_raw);
  if (tbs_len <= 0) return Err(OpenSslStatus(Code::kInternal, "encoding the CSR"));
  std::string digest(EVP_MAX_MD_SIZE, '\0');
  unsigned int dlen = 0;
  int ok = EVP_Digest(tbs.get(), tbs_len, reinterpret_cast<unsigned char*>(digest.data()), &dlen,
                      crypto::DigestAlgMd(alg), nullptr);
  if (ok != 1) return Err(OpenSslStatus(Code::kInternal, "hashing the CSR"));
  digest.resize(dlen);
  auto sig = signer.Sign(key, alg, digest);
  if (!sig) return Err(sig.error());
  BitStringPtr bits_str(ASN1_BIT_STRING_new());
  if (!bits_str || ASN1_BIT_STRING_set(bits_str.get(), reinterpret_cast<unsigned char*>(sig->data()),
                                       static_cast<int>(sig->size())) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "storing the CSR signature"));
  }
  // A signature has no unused bits; without this flag OpenSSL would derive
  // them from trailing zero bits of the last byte.
  bits_str->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
  bits_str->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits_str.release());
  if (X509_REQ_verify(req.get(), public_key) != 1) {
    return Err(OpenSslStatus(Code::kFailedPrecondition,
                             "the CSR signature made by the token does not verify with its public key"));
  }
  return req;
}

}  // namespace sealpost::pkcs11
