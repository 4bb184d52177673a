#include "base/json.h"
#include "base/civil_time.h"
#include "crypto/report.h"

#include <cstdio>
#include <cstdint>

namespace sealpost::crypto {

std::string_view IndicationName(Indication i) {
  switch (i) {
    case Indication::kPassed: return "PASSED";
    case Indication::kFailed: return "FAILED";
    case Indication::kIndeterminate: return "INDETERMINATE";
  }
  return "INDETERMINATE";
}

std::string_view SubIndicationName(SubIndication s) {
  switch (s) {
    case SubIndication::kNone: return "";
    case SubIndication::kFormatFailure: return "FORMAT_FAILURE";
    case SubIndication::kHashFailure: return "HASH_FAILURE";
    case SubIndication::kSigCryptoFailure: return "SIG_CRYPTO_FAILURE";
    case SubIndication::kRevoked: return "REVOKED";
    case SubIndication::kSigConstraintsFailure: return "SIG_CONSTRAINTS_FAILURE";
    case SubIndication::kChainConstraintsFailure: return "CHAIN_CONSTRAINTS_FAILURE";
    case SubIndication::kCertificateChainGeneralFailure: return "CERTIFICATE_CHAIN_GENERAL_FAILURE";
    case SubIndication::kCryptoConstraintsFailure: return "CRYPTO_CONSTRAINTS_FAILURE";
    case SubIndication::kNoSigningCertificateFound: return "NO_SIGNING_CERTIFICATE_FOUND";
    case SubIndication::kNoCertificateChainFound: return "NO_CERTIFICATE_CHAIN_FOUND";
    case SubIndication::kOutOfBoundsNoPoe: return "OUT_OF_BOUNDS_NO_POE";
    case SubIndication::kNotYetValid: return "NOT_YET_VALID";
    case SubIndication::kTryLater: return "TRY_LATER";
    case SubIndication::kNotAuthorizedByPolicy: return "NOT_AUTHORIZED_BY_POLICY";
  }
  return "";
}

Indication IndicationOf(SubIndication s) {
  switch (s) {
    case SubIndication::kNone: return Indication::kPassed;
    case SubIndication::kFormatFailure:
    case SubIndication::kHashFailure:
    case SubIndication::kSigCryptoFailure:
    case SubIndication::kRevoked:
    case SubIndication::kNotAuthorizedByPolicy:
      return Indication::kFailed;
    default:
      return Indication::kIndeterminate;
  }
}

std::string_view ReasonName(Reason r) {
  switch (r) {
    case Reason::kNone: return "";
    case Reason::kContentTypeMissing: return "content-type-missing";
    case Reason::kContentTypeDuplicate: return "content-type-duplicate";
    case Reason::kContentTypeNotData: return "content-type-not-data";
    case Reason::kMessageDigestMissing: return "message-digest-missing";
    case Reason::kMessageDigestDuplicate: return "message-digest-duplicate";
    case Reason::kSigningTimeMalformed: return "signing-time-malformed";
    case Reason::kAttributeMalformed: return "attribute-malformed";
    case Reason::kSigningCertificateMismatch: return "signing-certificate-mismatch";
    case Reason::kDigestMismatch: return "digest-mismatch";
    case Reason::kSignatureInvalid: return "signature-invalid";
    case Reason::kSignerCertNotFound: return "signer-certificate-not-found";
    case Reason::kWeakDigest: return "weak-digest";
    case Reason::kWeakKey: return "weak-key";
    case Reason::kDsaRefused: return "dsa-refused";
    case Reason::kUnsupportedAlgorithm: return "unsupported-algorithm";
    case Reason::kNoChain: return "no-chain";
    case Reason::kCertExpired: return "certificate-expired";
    case Reason::kCertNotYetValid: return "certificate-not-yet-valid";
    case Reason::kRevoked: return "revoked";
    case Reason::kCrlMissing: return "crl-missing";
    case Reason::kCrlOutdated: return "crl-outdated";
    case Reason::kCrlInvalid: return "crl-invalid";
    case Reason::kChainInvalid: return "chain-invalid";
    case Reason::kKeyUsageRefused: return "key-usage-refused";
    case Reason::kExtKeyUsageRefused: return "extended-key-usage-refused";
  }
  return "";
}

std::string_view RevocationName(Revocation r) {
  switch (r) {
    case Revocation::kGood: return "good";
    case Revocation::kRevoked: return "revoked";
    case Revocation::kNotChecked: return "not-checked";
    case Revocation::kNoCrlAvailable: return "no-crl-available";
    case Revocation::kDisabled: return "disabled";
    case Revocation::kUnknown: return "unknown";
  }
  return "unknown";
}

std::string_view LevelName(Level l) { return l == Level::kCadesBB ? "CAdES-B-B" : "CMS"; }

void Summarize(Report& report) {
  if (report.signers.empty()) {
    report.indication = Indication::kFailed;
    report.sub_indication = SubIndication::kFormatFailure;
    return;
  }
  const SignerReport* worst = &report.signers.front();
  for (const SignerReport& s : report.signers) {
    if (s.indication > worst->indication) worst = &s;
  }
  report.indication = worst->indication;
  report.sub_indication = worst->sub_indication;
}

void ApplyPolicyVerdict(Report& report, PolicyVerdict verdict) {
  if (!verdict.allowed) {
    report.indication = Indication::kFailed;
    report.sub_indication = SubIndication::kNotAuthorizedByPolicy;
  }
  report.policy = std::move(verdict);
}

std::string FormatRfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

namespace {

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}


}  // namespace

Result<std::time_t> ParseRfc3339(std::string_view s) {
  auto bad = [&] {
    return Err(Status::InvalidArgument("'" + std::string(s) +
                                       "' is not an RFC 3339 time (e.g. 2026-01-31T08:00:00Z)"));
  };
  int y, mo, d, h, mi, sec;
  if (!Digits(s, 0, 4, &y) || s.size() < 20 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, &h) || s[13] != ':' || !Digits(s, 14, 2, &mi) || s[16] != ':' ||
      !Digits(s, 17, 2, &sec)) {
    return bad();
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || h > 23 || mi > 59 || sec > 60) {
    return bad();
  }
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) return bad();
  size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return bad();
  }
  long offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!Digits(s, i + 1, 2, &oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !Digits(s, i + 4, 2, &om) || oh > 23 || om > 59) {
      return bad();
    }
    offset = (oh * 3600L + om * 60L) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return bad();
  }
  if (i != s.size()) return bad();
  if (sec == 60) sec = 59;  // leap second: close enough for a validation time
  int64_t days = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int64_t t = days * 86400 + h * 3600 + mi * 60 + sec - offset;
  return static_cast<std::time_t>(t);
}

std::string ReasonText(Reason r, Lang lang) {
  auto t = [lang](std::string_view en, std::string_view vi) { return std::string(Tr(lang, en, vi)); };
  switch (r) {
    case Reason::kNone: return "";
    case Reason::kContentTypeMissing:
      return t("the signed content-type attribute is missing",
               "thiếu thuộc tính content-type được ký");
    case Reason::kContentTypeDuplicate:
      return t("the content-type attribute appears more than once",
               "thuộc tính content-type xuất hiện nhiều lần");
    case Reason::kContentTypeNotData:
      return t("the content type is not id-data", "kiểu nội dung không phải id-data");
    case Reason::kMessageDigestMissing:
      return t("the signed message-digest attribute is missing",
               "thiếu thuộc tính message-digest được ký");
    case Reason::kMessageDigestDuplicate:
      return t("the message-digest attribute appears more than once or is malformed",
               "thuộc tính message-digest xuất hiện nhiều lần hoặc sai định dạng");
    case Reason::kSigningTimeMalformed:
      return t("the signing-time attribute is malformed or not signed",
               "thuộc tính thời điểm ký sai định dạng hoặc không được ký");
    case Reason::kAttributeMalformed:
      return t("an attribute of the signature is malformed",
               "một thuộc tính của chữ ký sai định dạng");
    case Reason::kSigningCertificateMismatch:
      return t("the signing-certificate attribute names a different certificate",
               "thuộc tính signing-certificate chỉ tới một chứng thư khác");
    case Reason::kDigestMismatch:
      return t("the file was changed after it was signed",
               "tệp đã bị thay đổi sau khi được ký");
    case Reason::kSignatureInvalid:
      return t("the signature value does not match the signer's key",
               "giá trị chữ ký không khớp với khóa của người ký");
    case Reason::kSignerCertNotFound:
      return t("the signer's certificate was not found",
               "không tìm thấy chứng thư của người ký");
    case Reason::kWeakDigest:
      return t("a hash algorithm that the policy refuses is used",
               "sử dụng thuật toán băm mà chính sách không chấp nhận");
    case Reason::kWeakKey:
      return t("a key that the policy considers too short is used",
               "sử dụng khóa quá ngắn theo chính sách");
    case Reason::kDsaRefused:
      return t("DSA is refused by the algorithm policy",
               "thuật toán DSA không được chính sách chấp nhận");
    case Reason::kUnsupportedAlgorithm:
      return t("an unsupported algorithm is used", "sử dụng thuật toán không được hỗ trợ");
    case Reason::kNoChain:
      return t("the certificate does not chain to a trusted root",
               "chứng thư không dẫn tới một chứng thư gốc tin cậy");
    case Reason::kCertExpired:
      return t("a certificate had expired at the validation time and there is no proof the "
               "signature was made before",
               "chứng thư đã hết hạn tại thời điểm kiểm tra và không có bằng chứng chữ ký được "
               "tạo trước đó");
    case Reason::kCertNotYetValid:
      return t("a certificate was not yet valid at the validation time",
               "chứng thư chưa có hiệu lực tại thời điểm kiểm tra");
    case Reason::kRevoked:
      return t("a certificate has been revoked", "chứng thư đã bị thu hồi");
    case Reason::kCrlMissing:
      return t("no CRL is at hand for a certificate that names a CRL distribution point",
               "không có danh sách thu hồi (CRL) cho chứng thư có điểm phân phối CRL");
    case Reason::kCrlOutdated:
      return t("the CRL at hand is outdated or not yet valid",
               "danh sách thu hồi (CRL) hiện có đã quá hạn hoặc chưa có hiệu lực");
    case Reason::kCrlInvalid:
      return t("a CRL could not be used (bad signature, issuer or scope)",
               "không dùng được danh sách thu hồi (chữ ký, bên phát hành hoặc phạm vi sai)");
    case Reason::kChainInvalid:
      return t("the certificate chain is not valid", "chuỗi chứng thư không hợp lệ");
    case Reason::kKeyUsageRefused:
      return t("the certificate's key usage does not allow signing documents",
               "mục đích sử dụng khóa của chứng thư không cho phép ký văn bản");
    case Reason::kExtKeyUsageRefused:
      return t("the certificate's extended key usage does not allow signing documents",
               "mục đích sử dụng khóa mở rộng của chứng thư không cho phép ký văn bản");
  }
  return "";
}

namespace {

std::string TimeText(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string RevocationText(Revocation r, Lang lang) {
  switch (r) {
    case Revocation::kGood:
      return std::string(Tr(lang, "checked against CRLs, not revoked",
                            "đã kiểm tra theo CRL, chưa bị thu hồi"));
    case Revocation::kRevoked: return std::string(Tr(lang, "revoked", "đã bị thu hồi"));
    case Revocation::kNotChecked:
      return std::string(Tr(lang, "not checked (no CRL distribution point and no CRL at hand)",
                            "không kiểm tra (không có điểm phân phối CRL và không có CRL)"));
    case Revocation::kNoCrlAvailable:
      return std::string(Tr(lang, "no CRL available", "không có CRL"));
    case Revocation::kDisabled:
      return std::string(Tr(lang, "not checked: disabled by option (--no-revocation)",
                            "không kiểm tra: đã tắt bằng tùy chọn (--no-revocation)"));
    case Revocation::kUnknown: return std::string(Tr(lang, "not determined", "chưa xác định"));
  }
  return "";
}

}  // namespace

std::string SignerSentence(const SignerReport& s, Lang lang) {
  std::string who = s.name;
  if (!s.organization.empty() && s.organization != s.name) {
    who += std::string(Tr(lang, " of ", " thuộc ")) + s.organization;
  }
  std::string when;
  if (s.signing_time) when = std::string(Tr(lang, " at ", " lúc ")) + TimeText(*s.signing_time);
  std::string out;
  switch (s.indication) {
    case Indication::kPassed:
      out = std::string(Tr(lang, "Authentic: signed by ", "Xác thực: ký bởi ")) + who + when + ".";
      if (s.revocation == Revocation::kNotChecked) {
        out += Tr(lang, " Revocation was not checked.", " Chưa kiểm tra thu hồi chứng thư.");
      } else if (s.revocation == Revocation::kDisabled) {
        out += Tr(lang, " Revocation checking was disabled.",
                  " Việc kiểm tra thu hồi đã bị tắt.");
      }
      return out;
    case Indication::kFailed:
      out = std::string(Tr(lang, "Not valid: ", "Không hợp lệ: "));
      break;
    case Indication::kIndeterminate:
      out = std::string(Tr(lang, "Cannot be confirmed: ", "Chưa thể xác nhận: "));
      break;
  }
  out += ReasonText(s.reason, lang);
  if (!s.detail.empty()) out += " (" + s.detail + ")";
  if (!who.empty()) out += std::string(Tr(lang, "; signer: ", "; người ký: ")) + who + when;
  out += ".";
  return out;
}

namespace {

std::string IndicationGloss(Indication i, Lang lang) {
  switch (i) {
    case Indication::kPassed: return std::string(Tr(lang, "valid", "hợp lệ"));
    case Indication::kFailed: return std::string(Tr(lang, "not valid", "không hợp lệ"));
    case Indication::kIndeterminate:
      return std::string(Tr(lang, "cannot be confirmed", "chưa thể xác nhận"));
  }
  return "";
}

}  // namespace

std::string ReportToText(const Report& report, Lang lang) {
  std::string out;
  out += std::string(Tr(lang, "Result: ", "Kết quả: ")) + std::string(IndicationName(report.indication));
  if (report.sub_indication != SubIndication::kNone) {
    out += " / " + std::string(SubIndicationName(report.sub_indication));
  }
  out += " (" + IndicationGloss(report.indication, lang) + ")\n";
  out += std::string(Tr(lang, "Validation time: ", "Thời điểm kiểm tra: ")) +
         TimeText(report.validation_time) + "\n";
  int n = 0;
  for (const SignerReport& s : report.signers) {
    ++n;
    out += "\n" + std::string(Tr(lang, "Signer ", "Người ký ")) + std::to_string(n) + ": " +
           std::string(IndicationName(s.indication));
    if (s.sub_indication != SubIndication::kNone) {
      out += " / " + std::string(SubIndicationName(s.sub_indication));
    }
    out += "\n  " + SignerSentence(s, lang) + "\n";
    auto line = [&](std::string_view en, std::string_view vi, const std::string& value) {
      if (value.empty()) return;
      out += "  " + std::string(Tr(lang, en, vi)) + ": " + value + "\n";
    };
    line("Subject", "Chủ thể", s.subject);
    line("Issuer", "Bên cấp", s.issuer);
    line("Serial", "Số hiệu", s.serial);
    line("Signing time", "Thời điểm ký", s.signing_time ? TimeText(*s.signing_time) : "");
    line("Level", "Mức", std::string(LevelName(s.level)));
    line("Algorithms", "Thuật toán",
         s.digest_algorithm + (s.signature_algorithm.empty() ? "" : ", " + s.signature_algorithm));
    line("Revocation", "Thu hồi", RevocationText(s.revocation, lang));
  }
  if (report.policy) {
    const PolicyVerdict& p = *report.policy;
    out += "\n" + std::string(Tr(lang, "Policy ", "Chính sách ")) + p.policy_version.substr(0, 16) +
           ": " +
           std::string(p.allowed ? Tr(lang, "allowed", "được phép")
                                 : Tr(lang, "NOT allowed", "KHÔNG được phép"));
    const std::string& reason = lang == Lang::kVi ? p.reason_vi : p.reason_en;
    if (!p.allowed && !reason.empty()) out += " — " + reason;
    out += "\n";
    const std::string& expl = lang == Lang::kVi ? p.explanation_vi : p.explanation_en;
    if (!expl.empty()) {
      out += expl;
      if (expl.back() != '\n') out += "\n";
    }
  }
  return out;
}


namespace {

std::string JsonOrNull(std::string_view s) { return s.empty() ? "null" : JsonString(s); }

}  // namespace

std::string ReportToJson(const Report& report) {
  std::string out = "{\"indication\":" + JsonString(IndicationName(report.indication)) +
                    ",\"subIndication\":" + JsonOrNull(SubIndicationName(report.sub_indication)) +
                    ",\"validationTime\":" + JsonString(FormatRfc3339(report.validation_time)) +
                    ",\"signers\":[";
  bool first = true;
  for (const SignerReport& s : report.signers) {
    if (!first) out += ",";
    first = false;
    out += "{\"indication\":" + JsonString(IndicationName(s.indication));
    out += ",\"subIndication\":" + JsonOrNull(SubIndicationName(s.sub_indication));
    out += ",\"reason\":" + JsonOrNull(ReasonName(s.reason));
    out += ",\"detail\":" + JsonOrNull(s.detail);
    out += ",\"name\":" + JsonOrNull(s.name);
    out += ",\"organization\":" + JsonOrNull(s.organization);
    out += ",\"subject\":" + JsonOrNull(s.subject);
    out += ",\"issuer\":" + JsonOrNull(s.issuer);
    out += ",\"serial\":" + JsonOrNull(s.serial);
    out += ",\"signingTime\":" +
           (s.signing_time ? JsonString(FormatRfc3339(*s.signing_time)) : std::string("null"));
    out += ",\"level\":" + JsonString(LevelName(s.level));
    out += ",\"revocation\":" + JsonString(RevocationName(s.revocation));
    out += ",\"digestAlgorithm\":" + JsonOrNull(s.digest_algorithm);
    out += ",\"signatureAlgorithm\":" + JsonOrNull(s.signature_algorithm);
    out += "}";
  }
  out += "]";
  if (report.policy) {
    const PolicyVerdict& p = *report.policy;
    out += ",\"policy\":{\"allowed\":" + std::string(p.allowed ? "true" : "false") +
           ",\"version\":" + JsonString(p.policy_version) +
           ",\"decision\":" + (p.decision_json.empty() ? std::string("null") : p.decision_json) + "}";
  }
  out += "}\n";
  return out;
}

}  // namespace sealpost::crypto
