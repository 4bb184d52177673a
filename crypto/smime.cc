#include "crypto/smime.h"

#include <cctype>
#include <cstring>
#include <memory>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"
#include "crypto/certs.h"
#include "crypto/digest.h"

namespace sealpost::crypto {
namespace {

using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslDeleter<GENERAL_NAMES_free>>;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// base64 in lines of 76 characters, each ended by CRLF.
std::string Base64Lines(std::string_view bytes) {
  std::string b64 = Base64Encode(bytes);
  std::string out;
  out.reserve(b64.size() + b64.size() / 76 * 2 + 2);
  for (size_t i = 0; i < b64.size(); i += 76) {
    out.append(b64, i, 76);
    out += "\r\n";
  }
  return out;
}

std::string RandomHex(size_t bytes) {
  std::string r(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(r.data()), static_cast<int>(bytes)) != 1) {
    ClearOpenSslErrors();
    // Boundaries and ids need uniqueness, not secrecy; the clock is enough
    // if the DRBG fails (it does not on a working system).
    r = std::to_string(std::time(nullptr)) + std::to_string(reinterpret_cast<uintptr_t>(&r));
  }
  return HexEncode(r);
}

// RFC 5322 date-time in UTC, independent of the locale.
std::string MailDate(std::time_t t) {
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday % 7],
                tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

// A file name for the attachment: the document id reduced to [A-Za-z0-9._-].
std::string AttachmentName(std::string_view id) {
  std::string name;
  for (char c : id) {
    unsigned char u = static_cast<unsigned char>(c);
    name += (std::isalnum(u) || c == '.' || c == '_' || c == '-') ? c : '_';
  }
  if (name.empty() || name.size() > 120) name = "document";
  return name + ".asics";
}

std::string_view Micalg(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha256: return "sha-256";
    case DigestAlg::kSha384: return "sha-384";
    case DigestAlg::kSha512: return "sha-512";
  }
  return "sha-256";
}

bool HasControl(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

}  // namespace

bool IsMailAddress(std::string_view a) {
  if (a.empty() || a.size() > 254) return false;
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size() || at > 64) return false;
  std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
  static constexpr std::string_view kLocalExtra = "!#$%&'*+-/=?^_`{|}~.";
  for (char c : local) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && kLocalExtra.find(c) == std::string_view::npos) return false;
  }
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
    return false;
  }
  size_t label = 0;
  for (size_t i = 0; i <= domain.size(); ++i) {
    if (i == domain.size() || domain[i] == '.') {
      if (label == 0 || label > 63) return false;
      if (domain[i - 1] == '-' || domain[i - label] == '-') return false;
      label = 0;
      continue;
    }
    unsigned char u = static_cast<unsigned char>(domain[i]);
    if (!std::isalnum(u) && domain[i] != '-') return false;
    ++label;
  }
  return true;
}

Status CheckMailSigningCertificate(X509* cert, std::string_view address) {
  if (cert == nullptr) return Status::InvalidArgument("no seal certificate");
  std::string who = "the seal certificate (" + NameToUtf8(X509_get_subject_name(cert)) + ")";
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ClearOpenSslErrors();
  bool found = false;
  std::string listed;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_EMAIL) continue;
    std::string_view v(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.rfc822Name)),
                       static_cast<size_t>(ASN1_STRING_length(gn->d.rfc822Name)));
    if (!listed.empty()) listed += ", ";
    listed += std::string(v);
    if (EqualsIgnoreCase(v, address)) found = true;
  }
  if (!found) {
    return Status::InvalidArgument(
        who + " does not carry the mail address " + std::string(address) +
        " as an rfc822Name subjectAltName" +
        (listed.empty() ? std::string(" (it has no rfc822Name)") : " (it has: " + listed + ")") +
        "; S/MIME mail clients would reject the signature");
  }
  uint32_t flags = X509_get_extension_flags(cert);
  if ((flags & EXFLAG_XKUSAGE) == 0) {
    return Status::InvalidArgument(who +
                                   " has no extended key usage; emailProtection is needed to "
                                   "sign mail");
  }
  if ((X509_get_extended_key_usage(cert) & XKU_SMIME) == 0) {
    return Status::InvalidArgument(who +
                                   " does not allow emailProtection in its extended key usage");
  }
  return Status::Ok();
}

// Always encoded (display names: no quoting rules to get wrong).
std::string EncodeWords(std::string_view utf8);

std::string EncodeHeaderText(std::string_view utf8) {
  bool plain = utf8.size() <= 70 && !HasControl(utf8);
  for (char c : utf8) {
    if (static_cast<unsigned char>(c) >= 0x80) plain = false;
  }
  if (plain && utf8.find("=?") == std::string_view::npos) return std::string(utf8);
  return EncodeWords(utf8);
}

std::string EncodeWords(std::string_view utf8) {
  // "=?UTF-8?B?" + 52 base64 characters + "?=" is 64 characters (a line
  // with "Subject: " stays under 78): 39 bytes of text per word, cut
  // before a UTF-8 continuation byte.
  std::string out;
  size_t i = 0;
  while (i < utf8.size()) {
    size_t n = std::min<size_t>(39, utf8.size() - i);
    while (n > 0 && i + n < utf8.size() &&
           (static_cast<unsigned char>(utf8[i + n]) & 0xC0) == 0x80) {
      --n;
    }
    if (n == 0) n = std::min<size_t>(39, utf8.size() - i);  // not UTF-8: cut anyway
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + Base64Encode(utf8.substr(i, n)) + "?=";
    i += n;
  }
  return out;
}

std::string CanonicalCrlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string DocumentMailSubject(const DocumentMail& m) {
  std::string s = m.type.empty() ? "Văn bản" : m.type;
  if (!m.reference.empty()) s += " " + m.reference;
  if (!m.subject.empty()) s += ": " + m.subject;
  return s;
}

std::string DocumentMailText(const DocumentMail& m) {
  auto line = [](std::string_view label, std::string_view value) {
    return std::string(label) + std::string(value.empty() ? "-" : value) + "\n";
  };
  const std::string desk_vi =
      m.verify_url.empty() ? std::string("bàn kiểm tra của Liên đoàn, hoặc lệnh: sealpost verify "
                                         "<tệp văn bản> META-INF/signature.p7s --trust <CA>")
                           : m.verify_url;
  const std::string desk_en =
      m.verify_url.empty() ? std::string("the federation's verification desk, or the command: "
                                         "sealpost verify <document> META-INF/signature.p7s "
                                         "--trust <CA>")
                           : m.verify_url;
  std::string t;
  t += "Kính gửi,\n\n";
  t += "Thư này mang một văn bản có chữ ký số và con dấu điện tử của " +
       (m.from_name.empty() ? m.issuer : m.from_name) + ".\n\n";
  t += line("Loại văn bản: ", m.type);
  t += line("Trích yếu: ", m.subject);
  t += line("Số, ký hiệu: ", m.reference);
  t += line("Đơn vị ban hành: ", m.issuer);
  t += line("Ngày ban hành: ", m.issued_at);
  t += line("Mã văn bản: ", m.document_id);
  t += "\nVăn bản gốc cùng các chữ ký nằm trong tệp đính kèm " + AttachmentName(m.document_id) +
       " (ASiC-S). Thư được ký bằng con dấu của đơn vị (S/MIME): trình đọc thư hiển thị chữ ký.\n";
  t += "Để kiểm tra: giải nén tệp đính kèm (ZIP), rồi đưa văn bản cùng tệp "
       "META-INF/signature.p7s vào bàn kiểm tra: " + desk_vi + "\n";
  t += "\n----\n\n";
  t += "Dear recipient,\n\n";
  t += "This message carries a document with digital signatures and the electronic seal of " +
       (m.from_name.empty() ? m.issuer : m.from_name) + ".\n\n";
  t += line("Document type: ", m.type);
  t += line("Subject: ", m.subject);
  t += line("Reference number: ", m.reference);
  t += line("Issuer: ", m.issuer);
  t += line("Issued at: ", m.issued_at);
  t += line("Document id: ", m.document_id);
  t += "\nThe original document and its signatures are in the attachment " +
       AttachmentName(m.document_id) +
       " (ASiC-S). This message is signed with the union's seal (S/MIME): your mail program "
       "shows the signature.\n";
  t += "To verify: unzip the attachment (ZIP), then give the document and "
       "META-INF/signature.p7s to the verification desk: " + desk_en + "\n";
  return t;
}

Result<SignedMail> BuildDocumentMail(Signer& signer, const KeyRef& key, const DocumentMail& m,
                                     const CadesSignOptions& opts) {
  if (!IsMailAddress(m.from)) {
    return Err(Status::InvalidArgument("mail: the sender address '" + m.from + "' is not valid"));
  }
  if (m.to.empty()) return Err(Status::InvalidArgument("mail: no recipient address"));
  for (const std::string& to : m.to) {
    if (!IsMailAddress(to)) {
      return Err(Status::InvalidArgument("mail: the recipient address '" + to + "' is not valid"));
    }
  }
  if (m.bundle.empty()) return Err(Status::InvalidArgument("mail: the bundle is empty"));
  if (m.message_id.size() > 200 || HasControl(m.message_id) ||
      m.message_id.find_first_of("<> ") != std::string::npos) {
    return Err(Status::InvalidArgument("mail: the message id is not valid"));
  }

  auto cert = signer.Certificate(key);
  if (!cert) return Err(cert.error());
  if (Status s = CheckMailSigningCertificate(cert->get(), m.from); !s.ok()) return Err(s);
  auto alg = DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg) return Err(alg.error());

  const std::string outer = "=_sp_s_" + RandomHex(10);
  const std::string inner = "=_sp_m_" + RandomHex(10);
  const std::string attachment = AttachmentName(m.document_id);

  // The signed entity, already canonical: CRLF everywhere, base64 bodies.
  std::string part;
  part += "Content-Type: multipart/mixed;\r\n boundary=\"" + inner + "\"\r\n\r\n";
  part += "--" + inner + "\r\n";
  part += "Content-Type: text/plain; charset=UTF-8\r\n";
  part += "Content-Transfer-Encoding: base64\r\n\r\n";
  part += Base64Lines(CanonicalCrlf(DocumentMailText(m)));
  part += "\r\n--" + inner + "\r\n";
  part += "Content-Type: application/vnd.etsi.asic-s+zip;\r\n name=\"" + attachment + "\"\r\n";
  part += "Content-Transfer-Encoding: base64\r\n";
  part += "Content-Disposition: attachment;\r\n filename=\"" + attachment + "\"\r\n\r\n";
  part += Base64Lines(m.bundle);
  part += "\r\n--" + inner + "--\r\n";

  auto digest = DigestBytes(DigestAlgMd(*alg), part);
  if (!digest) return Err(digest.error());
  auto p7s = BuildDetachedSignature(signer, key, cert->get(), *alg, *digest, opts);
  if (!p7s) return Err(p7s.error());

  SignedMail out;
  std::string domain = m.from.substr(m.from.rfind('@') + 1);
  out.message_id = m.message_id.empty() ? RandomHex(16) + "@" + domain : m.message_id;

  std::string& msg = out.message;
  msg.reserve(part.size() + p7s->size() * 2 + 2048);
  msg += "From: ";
  if (!m.from_name.empty()) msg += EncodeWords(m.from_name) + "\r\n ";
  msg += "<" + m.from + ">\r\n";
  msg += "To: ";
  for (size_t i = 0; i < m.to.size(); ++i) msg += (i ? ",\r\n " : "") + m.to[i];
  msg += "\r\n";
  msg += "Subject: " + EncodeHeaderText(DocumentMailSubject(m)) + "\r\n";
  msg += "Date: " + MailDate(m.date != 0 ? m.date : std::time(nullptr)) + "\r\n";
  msg += "Message-ID: <" + out.message_id + ">\r\n";
  msg += "MIME-Version: 1.0\r\n";
  msg += "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
         " micalg=" + std::string(Micalg(*alg)) + "; boundary=\"" + outer + "\"\r\n";
  msg += "\r\nThis is a cryptographically signed message in MIME format (S/MIME).\r\n\r\n";
  msg += "--" + outer + "\r\n";
  msg += part;
  msg += "\r\n--" + outer + "\r\n";
  msg += "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n";
  msg += "Content-Transfer-Encoding: base64\r\n";
  msg += "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n";
  msg += "Content-Description: S/MIME Cryptographic Signature\r\n\r\n";
  msg += Base64Lines(*p7s);
  msg += "\r\n--" + outer + "--\r\n";
  return out;
}

}  // namespace sealpost::crypto
