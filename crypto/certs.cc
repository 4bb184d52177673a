#include "crypto/certs.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include "base/file.h"

namespace sealpost::crypto {
namespace {

bool LooksLikePem(std::string_view data) {
  return data.find("-----BEGIN ") != std::string_view::npos;
}

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

}  // namespace

Result<X509StackPtr> ParseCertificates(std::string_view data, std::string_view source) {
  X509StackPtr out(sk_X509_new_null());
  if (!out) return Err(Status::Internal("out of memory"));
  std::string src(source);
  if (LooksLikePem(data)) {
    BioPtr bio = MemBio(data);
    for (;;) {
      X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
      if (x == nullptr) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
          ClearOpenSslErrors();
          break;
        }
        return Err(OpenSslStatus(Code::kDataError, src + ": malformed PEM certificate"));
      }
      sk_X509_push(out.get(), x);
    }
  } else {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
    X509* x = d2i_X509(nullptr, &p, static_cast<long>(data.size()));
    if (x == nullptr) {
      return Err(OpenSslStatus(Code::kDataError, src + ": not a certificate (neither PEM nor DER)"));
    }
    sk_X509_push(out.get(), x);
    if (p != reinterpret_cast<const unsigned char*>(data.data()) + data.size()) {
      return Err(Status::DataError(src + ": trailing bytes after DER certificate"));
    }
  }
  if (sk_X509_num(out.get()) == 0) return Err(Status::DataError(src + ": no certificate found"));
  return out;
}

Result<X509StackPtr> LoadCertificates(const std::string& path) {
  auto data = ReadFile(path, 64u << 20);
  if (!data) return Err(data.error());
  return ParseCertificates(*data, path);
}

Result<X509Ptr> LoadCertificate(const std::string& path) {
  auto certs = LoadCertificates(path);
  if (!certs) return Err(certs.error());
  if (sk_X509_num(certs->get()) != 1) {
    return Err(Status::DataError(path + ": expected one certificate, found " +
                                 std::to_string(sk_X509_num(certs->get()))));
  }
  return X509Ptr(sk_X509_shift(certs->get()));
}

Result<X509CrlStackPtr> ParseCrls(std::string_view data, std::string_view source) {
  X509CrlStackPtr out(sk_X509_CRL_new_null());
  if (!out) return Err(Status::Internal("out of memory"));
  std::string src(source);
  if (LooksLikePem(data)) {
    BioPtr bio = MemBio(data);
    for (;;) {
      X509_CRL* c = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
      if (c == nullptr) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
          ClearOpenSslErrors();
          break;
        }
        return Err(OpenSslStatus(Code::kDataError, src + ": malformed PEM CRL"));
      }
      sk_X509_CRL_push(out.get(), c);
    }
  } else {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
    X509_CRL* c = d2i_X509_CRL(nullptr, &p, static_cast<long>(data.size()));
    if (c == nullptr) return Err(OpenSslStatus(Code::kDataError, src + ": not a CRL (neither PEM nor DER)"));
    sk_X509_CRL_push(out.get(), c);
  }
  if (sk_X509_CRL_num(out.get()) == 0) return Err(Status::DataError(src + ": no CRL found"));
  return out;
}

Result<X509CrlStackPtr> LoadCrls(const std::string& path) {
  auto data = ReadFile(path, 256u << 20);
  if (!data) return Err(data.error());
  return ParseCrls(*data, path);
}

std::string NameToUtf8(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // RFC 2253 escaping off for UTF-8 (ESC_MSB would mangle Vietnamese).
  unsigned long flags = (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) ;
  flags &= ~XN_FLAG_DN_REV;  // most significant first would be C=..; we want CN first
  flags |= XN_FLAG_DN_REV;
  X509_NAME_print_ex(bio.get(), name, 0, flags);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  std::string s(p, static_cast<size_t>(n));
  // Replace the RFC 2253 "," separators by ", " for reading.
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == ',' && (i == 0 || s[i - 1] != '\\')) out += ' ';
  }
  return out;
}

std::string Asn1StringToUtf8(const ASN1_STRING* s) {
  unsigned char* raw = nullptr;
  int n = ASN1_STRING_to_UTF8(&raw, s);
  OpenSslBytesPtr utf8(raw);
  if (n < 0) {
    ClearOpenSslErrors();
    return "";
  }
  return std::string(reinterpret_cast<char*>(utf8.get()), static_cast<size_t>(n));
}

std::string SerialHex(const X509* cert) {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  OpenSslCharPtr hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : std::string();
}

std::string DisplayName(const X509* cert) {
  X509_NAME* subj = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
  if (idx >= 0) {
    std::string cn = Asn1StringToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    if (!cn.empty()) return cn;
  }
  return NameToUtf8(subj);
}

}  // namespace sealpost::crypto
