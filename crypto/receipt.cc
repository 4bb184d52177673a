#include "crypto/receipt.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include <openssl/cms.h>
#include <openssl/objects.h>

#include "base/civil_time.h"
#include "base/encoding.h"
#include "base/json.h"
#include "base/utf8.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/checkpoint.h"
#include "crypto/digest.h"

namespace sealpost::crypto {
namespace {

constexpr std::string_view kDeliveryType = "delivery-receipt";
constexpr std::string_view kNoticeType = "read-notice";
constexpr size_t kMaxKeys = 16;
// 9999-12-31T23:59:59Z
constexpr std::time_t kMaxTime = 253402300799;

// ---------------------------------------------------------------------------
// A strict reader of one flat JSON object: string keys; values are strings or
// non-negative integers. Anything else (nesting, other literals, fractions,
// duplicate keys, bad escapes, raw control characters, ill-formed UTF-8,
// trailing bytes) is an error with the byte offset.

struct Value {
  bool is_string = true;
  std::string str;
  uint64_t num = 0;
};

class FlatJsonReader {
 public:
  FlatJsonReader(std::string_view in, std::string src) : in_(in), src_(std::move(src)) {}

  Result<std::map<std::string, Value>> Read() {
    std::map<std::string, Value> out;
    SkipSpace();
    if (!Eat('{')) return Err(Error("expected '{' (a JSON object)"));
    SkipSpace();
    if (Eat('}')) return Finish(std::move(out));
    for (;;) {
      SkipSpace();
      if (Peek() != '"') return Err(Error("expected a key string"));
      const size_t key_at = pos_;
      auto key = ReadString();
      if (!key) return Err(key.error());
      if (out.count(*key)) {
        return Err(ErrorAt(key_at, "duplicate key \"" + *key + "\""));
      }
      if (out.size() >= kMaxKeys) return Err(ErrorAt(key_at, "too many keys"));
      SkipSpace();
      if (!Eat(':')) return Err(Error("expected ':' after key \"" + *key + "\""));
      SkipSpace();
      Value v;
      char c = Peek();
      if (c == '"') {
        auto s = ReadString();
        if (!s) return Err(s.error());
        v.str = std::move(*s);
      } else if (c >= '0' && c <= '9') {
        auto n = ReadInteger();
        if (!n) return Err(n.error());
        v.is_string = false;
        v.num = *n;
      } else if (c == '{' || c == '[') {
        return Err(Error("key \"" + *key + "\": nested values are not allowed"));
      } else {
        return Err(Error("key \"" + *key + "\": only strings and non-negative integers are allowed"));
      }
      out.emplace(std::move(*key), std::move(v));
      SkipSpace();
      if (Eat(',')) continue;
      if (Eat('}')) return Finish(std::move(out));
      return Err(Error("expected ',' or '}'"));
    }
  }

 private:
  Result<std::map<std::string, Value>> Finish(std::map<std::string, Value> out) {
    SkipSpace();
    if (pos_ != in_.size()) return Err(Error("trailing bytes after the JSON object"));
    return out;
  }

  char Peek() const { return pos_ < in_.size() ? in_[pos_] : '\0'; }
  bool Eat(char c) {
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r')) {
      ++pos_;
    }
  }
  Status ErrorAt(size_t at, std::string_view what) const {
    return Status::DataError(src_ + ": byte " + std::to_string(at) + ": " + std::string(what));
  }
  Status Error(std::string_view what) const { return ErrorAt(pos_, what); }

  Result<uint64_t> ReadInteger() {
    const size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
      if (pos_ - start >= 15) return Err(ErrorAt(start, "integer too large"));
      v = v * 10 + static_cast<uint64_t>(in_[pos_] - '0');
      ++pos_;
    }
    if (pos_ - start > 1 && in_[start] == '0') return Err(ErrorAt(start, "leading zero"));
    char c = Peek();
    if (c == '.' || c == 'e' || c == 'E') return Err(Error("only integers are allowed"));
    return v;
  }

  Result<uint32_t> ReadHex4() {
    if (in_.size() - pos_ < 4) return Err(Error("truncated \\u escape"));
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = in_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Err(ErrorAt(pos_ - 1, "bad hex digit in \\u escape"));
      }
    }
    return v;
  }

  static void AppendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  Result<std::string> ReadString() {
    const size_t start = pos_;
    ++pos_;  // the opening quote
    std::string out;
    for (;;) {
      if (pos_ >= in_.size()) return Err(ErrorAt(start, "unterminated string"));
      unsigned char c = static_cast<unsigned char>(in_[pos_]);
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c < 0x20) return Err(Error("raw control character in a string"));
      if (c == '\\') {
        ++pos_;
        if (pos_ >= in_.size()) return Err(ErrorAt(start, "unterminated string"));
        char e = in_[pos_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            auto hi = ReadHex4();
            if (!hi) return Err(hi.error());
            uint32_t cp = *hi;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return Err(Error("lone low surrogate in \\u escape"));
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (in_.substr(pos_, 2) != "\\u") return Err(Error("lone high surrogate in \\u escape"));
              pos_ += 2;
              auto lo = ReadHex4();
              if (!lo) return Err(lo.error());
              if (*lo < 0xDC00 || *lo > 0xDFFF) return Err(Error("bad surrogate pair in \\u escape"));
              cp = 0x10000 + ((cp - 0xD800) << 10) + (*lo - 0xDC00);
            }
            AppendUtf8(out, cp);
            break;
          }
          default:
            return Err(ErrorAt(pos_ - 1, "bad escape in a string"));
        }
        continue;
      }
      if (c < 0x80) {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      uint32_t cp;
      size_t len = DecodeUtf8(in_, pos_, &cp);
      if (len == 0) return Err(Error("ill-formed UTF-8 in a string"));
      out.append(in_.substr(pos_, len));
      pos_ += len;
    }
    return out;
  }

  std::string_view in_;
  std::string src_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Field checks shared by serialisation and parsing. Each returns an empty
// string when the value is fine, else what is wrong with it.

std::string CheckId(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > kReceiptMaxIdBytes) return "is longer than 512 bytes";
  if (!IsCleanUtf8Text(v)) return "is not one line of UTF-8 text";
  return "";
}

std::string CheckRole(std::string_view v) {
  if (v.empty() || v.size() > kReceiptMaxRoleBytes) return "must have 1..64 bytes";
  if (v[0] < 'a' || v[0] > 'z') return "must start with a-z";
  for (char c : v) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
      return "may hold only a-z, 0-9, '_' and '-'";
    }
  }
  return "";
}

std::string CheckSha256Hex(std::string_view v) {
  if (v.size() != 64) return "is not 64 hex digits";
  for (char c : v) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "is not lower-case hex";
  }
  return "";
}

std::string CheckTime(std::time_t t) {
  if (t < 0 || t > kMaxTime) return "is outside 1970..9999";
  return "";
}

std::string FormatTime(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// "YYYY-MM-DDTHH:MM:SSZ" exactly, a real calendar date.
std::optional<std::time_t> ParseTime(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  auto num = [&](size_t at, size_t n) -> int {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
      se = num(17, 2);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
      se > 59) {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  int dim = kDays[mo - 1] + (mo == 2 && leap ? 1 : 0);
  if (d > dim) return std::nullopt;
  return static_cast<std::time_t>(DaysFromCivil(y, static_cast<unsigned>(mo),
                                                static_cast<unsigned>(d)) *
                                      86400 +
                                  h * 3600 + mi * 60 + se);
}

std::string Emit(const std::map<std::string, std::string>& encoded) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : encoded) {  // std::map: sorted by bytes
    if (!first) out += ',';
    first = false;
    out += JsonString(k) + ":" + v;
  }
  out += '}';
  return out;
}

// Reads the object, checks the exact key set and the type/version.
Result<std::map<std::string, Value>> ReadObject(std::string_view json, std::string_view source,
                                                std::string_view type,
                                                std::initializer_list<std::string_view> keys) {
  const std::string src(source);
  if (json.size() > kReceiptMaxBytes) {
    return Err(Status::DataError(src + ": " + std::to_string(json.size()) +
                                 " bytes, more than the limit of " +
                                 std::to_string(kReceiptMaxBytes)));
  }
  auto obj = FlatJsonReader(json, src).Read();
  if (!obj) return Err(obj.error());
  auto t = obj->find("type");
  if (t == obj->end()) return Err(Status::DataError(src + ": missing key \"type\""));
  if (!t->second.is_string) return Err(Status::DataError(src + ": \"type\" must be a string"));
  if (t->second.str != type) {
    return Err(Status::DataError(src + ": is a \"" + t->second.str + "\", expected a \"" +
                                 std::string(type) + "\""));
  }
  auto ver = obj->find("version");
  if (ver == obj->end()) return Err(Status::DataError(src + ": missing key \"version\""));
  if (ver->second.is_string || ver->second.num != static_cast<uint64_t>(kReceiptVersion)) {
    return Err(Status::DataError(src + ": unsupported version (this program reads version " +
                                 std::to_string(kReceiptVersion) + ")"));
  }
  for (const auto& [k, v] : *obj) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end() && k != "type" && k != "version") {
      return Err(Status::DataError(src + ": unknown key \"" + k + "\""));
    }
  }
  for (std::string_view k : keys) {
    auto it = obj->find(std::string(k));
    if (it == obj->end()) {
      return Err(Status::DataError(src + ": missing key \"" + std::string(k) + "\""));
    }
    if (!it->second.is_string) {
      return Err(Status::DataError(src + ": \"" + std::string(k) + "\" must be a string"));
    }
  }
  return obj;
}

Status FieldError(std::string_view src, std::string_view key, std::string_view what) {
  return Status::DataError(std::string(src) + ": \"" + std::string(key) + "\" " +
                           std::string(what));
}

// ---------------------------------------------------------------------------
// Signing and checking the seal's signature.

Result<SignedReceipt> SignJson(Signer& signer, const KeyRef& key, std::string json,
                               std::time_t signing_time, std::string_view what) {
  auto cert = signer.Certificate(key);
  if (!cert) return Err(cert.error().WithContext(what));
  auto alg = DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg) return Err(alg.error().WithContext(what));
  auto digest = DigestBytes(DigestAlgMd(*alg), json);
  if (!digest) return Err(digest.error());
  CadesSignOptions opts;
  opts.signing_time = signing_time;
  auto sig = BuildDetachedSignature(signer, key, cert->get(), *alg, *digest, opts);
  if (!sig) return Err(sig.error().WithContext(what));
  return SignedReceipt{std::move(json), std::move(*sig)};
}

// Checks that `der` is a detached SignedData with one SignerInfo, made by
// `seal` itself, verifying over exactly `json`.
Status VerifySealSignature(std::string_view json, std::string_view der, X509* seal,
                           const std::string& src) {
  if (seal == nullptr) return Status::InvalidArgument(src + ": no seal certificate given");
  if (der.size() > kReceiptSignatureMaxBytes) {
    return Status::DataError(src + ": signature of " + std::to_string(der.size()) +
                             " bytes, more than the limit of " +
                             std::to_string(kReceiptSignatureMaxBytes));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms) return OpenSslStatus(Code::kDataError, src + ": signature is not DER CMS");
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return Status::DataError(src + ": trailing bytes after the signature");
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) {
    return Status::DataError(src + ": signature is not a CMS SignedData");
  }
  if (CMS_is_detached(cms.get()) != 1) {
    return Status::DataError(src + ": signature is not detached");
  }
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (sk_CMS_SignerInfo_num(infos) != 1) {
    return Status::DataError(src + ": signature must have exactly one signer, has " +
                             std::to_string(sk_CMS_SignerInfo_num(infos)));
  }
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
  if (CMS_SignerInfo_cert_cmp(si, seal) != 0) {
    // Name the certificate it claims, when it is embedded.
    std::string who = "a certificate that is not embedded";
    STACK_OF(X509)* embedded = CMS_get1_certs(cms.get());
    X509StackPtr owned(embedded);
    for (int i = 0; embedded && i < sk_X509_num(embedded); ++i) {
      if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(embedded, i)) == 0) {
        who = "\"" + DisplayName(sk_X509_value(embedded, i)) + "\" (serial " +
              SerialHex(sk_X509_value(embedded, i)) + ")";
      }
    }
    ClearOpenSslErrors();
    return Status::FailedPrecondition(src + ": signed by " + who + ", not by the seal \"" +
                                      DisplayName(seal) + "\" (serial " + SerialHex(seal) + ")");
  }
  X509StackPtr certs(sk_X509_new_null());
  if (!certs || sk_X509_push(certs.get(), seal) == 0) {
    return OpenSslStatus(Code::kInternal, "cannot build certificate list");
  }
  X509_up_ref(seal);
  BioPtr content(BIO_new_mem_buf(json.data(), static_cast<int>(json.size())));
  if (!content) return OpenSslStatus(Code::kInternal, "cannot wrap receipt bytes");
  ClearOpenSslErrors();
  // CMS_NOINTERN: only the seal we were given may be the signer's
  // certificate. The seal's path is the caller's business.
  if (CMS_verify(cms.get(), certs.get(), nullptr, content.get(), nullptr,
                 CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
    return OpenSslStatus(Code::kFailedPrecondition,
                         src + ": the seal's signature does not verify over these bytes "
                               "(altered after signing?)");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> SerializeDeliveryReceipt(const DeliveryReceipt& r) {
  auto bad = [](std::string_view field, std::string_view what) {
    return Err(Status::InvalidArgument("delivery receipt: " + std::string(field) + " " +
                                       std::string(what)));
  };
  if (auto e = CheckId(r.document_id); !e.empty()) return bad("document_id", e);
  if (auto e = CheckId(r.recipient); !e.empty()) return bad("recipient", e);
  if (auto e = CheckSha256Hex(r.content_sha256); !e.empty()) return bad("content_sha256", e);
  if (auto e = CheckTime(r.received_at); !e.empty()) return bad("received_at", e);
  auto cp = ParseCheckpoint(r.checkpoint, "checkpoint");
  if (!cp) return bad("checkpoint", "does not parse: " + cp.error().message());
  if (r.checkpoint_signature.empty() ||
      r.checkpoint_signature.size() > kReceiptCheckpointSignatureMaxBytes) {
    return bad("checkpoint_p7s", "must have 1..16384 bytes");
  }
  std::map<std::string, std::string> m;
  m["checkpoint"] = JsonString(r.checkpoint);
  m["checkpoint_p7s"] = JsonString(Base64Encode(r.checkpoint_signature));
  m["content_sha256"] = JsonString(r.content_sha256);
  m["document_id"] = JsonString(r.document_id);
  m["received_at"] = JsonString(FormatTime(r.received_at));
  m["recipient"] = JsonString(r.recipient);
  m["type"] = JsonString(kDeliveryType);
  m["version"] = std::to_string(kReceiptVersion);
  return Emit(m);
}

Result<std::string> SerializeReadNotice(const ReadNotice& n) {
  auto bad = [](std::string_view field, std::string_view what) {
    return Err(Status::InvalidArgument("read notice: " + std::string(field) + " " +
                                       std::string(what)));
  };
  if (auto e = CheckId(n.document_id); !e.empty()) return bad("document_id", e);
  if (auto e = CheckId(n.recipient); !e.empty()) return bad("recipient", e);
  if (auto e = CheckRole(n.reader_role); !e.empty()) return bad("reader_role", e);
  if (auto e = CheckTime(n.read_at); !e.empty()) return bad("read_at", e);
  std::map<std::string, std::string> m;
  m["document_id"] = JsonString(n.document_id);
  m["read_at"] = JsonString(FormatTime(n.read_at));
  m["reader_role"] = JsonString(n.reader_role);
  m["recipient"] = JsonString(n.recipient);
  m["type"] = JsonString(kNoticeType);
  m["version"] = std::to_string(kReceiptVersion);
  return Emit(m);
}

Result<DeliveryReceipt> ParseDeliveryReceipt(std::string_view json, std::string_view source) {
  auto obj = ReadObject(json, source, kDeliveryType,
                        {"checkpoint", "checkpoint_p7s", "content_sha256", "document_id",
                         "received_at", "recipient"});
  if (!obj) return Err(obj.error());
  auto& o = *obj;
  DeliveryReceipt r;
  r.document_id = o["document_id"].str;
  if (auto e = CheckId(r.document_id); !e.empty()) {
    return Err(FieldError(source, "document_id", e));
  }
  r.recipient = o["recipient"].str;
  if (auto e = CheckId(r.recipient); !e.empty()) return Err(FieldError(source, "recipient", e));
  r.content_sha256 = o["content_sha256"].str;
  if (auto e = CheckSha256Hex(r.content_sha256); !e.empty()) {
    return Err(FieldError(source, "content_sha256", e));
  }
  auto t = ParseTime(o["received_at"].str);
  if (!t) return Err(FieldError(source, "received_at", "is not YYYY-MM-DDTHH:MM:SSZ (UTC)"));
  r.received_at = *t;
  r.checkpoint = o["checkpoint"].str;
  auto cp = ParseCheckpoint(r.checkpoint, std::string(source) + ": checkpoint");
  if (!cp) return Err(cp.error());
  const std::string& b64 = o["checkpoint_p7s"].str;
  auto sig = Base64Decode(b64);
  if (!sig || sig->empty() || sig->size() > kReceiptCheckpointSignatureMaxBytes ||
      Base64Encode(*sig) != b64) {
    return Err(FieldError(source, "checkpoint_p7s",
                          "is not canonical base64 of 1..16384 bytes"));
  }
  r.checkpoint_signature = std::move(*sig);
  auto canonical = SerializeDeliveryReceipt(r);
  if (!canonical || *canonical != json) {
    return Err(Status::DataError(std::string(source) +
                                 ": not in canonical form (keys sorted, no white space, "
                                 "minimal escapes)"));
  }
  return r;
}

Result<ReadNotice> ParseReadNotice(std::string_view json, std::string_view source) {
  auto obj = ReadObject(json, source, kNoticeType,
                        {"document_id", "read_at", "reader_role", "recipient"});
  if (!obj) return Err(obj.error());
  auto& o = *obj;
  ReadNotice n;
  n.document_id = o["document_id"].str;
  if (auto e = CheckId(n.document_id); !e.empty()) {
    return Err(FieldError(source, "document_id", e));
  }
  n.recipient = o["recipient"].str;
  if (auto e = CheckId(n.recipient); !e.empty()) return Err(FieldError(source, "recipient", e));
  n.reader_role = o["reader_role"].str;
  if (auto e = CheckRole(n.reader_role); !e.empty()) {
    return Err(FieldError(source, "reader_role", e));
  }
  auto t = ParseTime(o["read_at"].str);
  if (!t) return Err(FieldError(source, "read_at", "is not YYYY-MM-DDTHH:MM:SSZ (UTC)"));
  n.read_at = *t;
  auto canonical = SerializeReadNotice(n);
  if (!canonical || *canonical != json) {
    return Err(Status::DataError(std::string(source) +
                                 ": not in canonical form (keys sorted, no white space, "
                                 "minimal escapes)"));
  }
  return n;
}

Result<SignedReceipt> IssueDeliveryReceipt(Signer& signer, const KeyRef& key,
                                           const DeliveryReceipt& receipt,
                                           const std::optional<SignedReceipt>& stored) {
  auto json = SerializeDeliveryReceipt(receipt);
  if (!json) return Err(json.error());
  if (stored.has_value()) {
    auto old = ParseDeliveryReceipt(stored->json, "stored delivery receipt");
    if (!old) return Err(old.error());
    if (old->document_id != receipt.document_id || old->content_sha256 != receipt.content_sha256 ||
        old->recipient != receipt.recipient) {
      return Err(Status::FailedPrecondition(
          "stored delivery receipt is for document " + old->document_id + " (content " +
          old->content_sha256 + ", recipient " + old->recipient + "), not for document " +
          receipt.document_id + " (content " + receipt.content_sha256 + ", recipient " +
          receipt.recipient + ")"));
    }
    if (stored->signature.empty()) {
      return Err(Status::FailedPrecondition("stored delivery receipt has no signature"));
    }
    return *stored;
  }
  return SignJson(signer, key, std::move(*json), receipt.received_at, "delivery receipt");
}

Result<SignedReceipt> SignReadNotice(Signer& signer, const KeyRef& key, const ReadNotice& notice) {
  auto json = SerializeReadNotice(notice);
  if (!json) return Err(json.error());
  return SignJson(signer, key, std::move(*json), notice.read_at, "read notice");
}

Result<DeliveryReceipt> VerifyDeliveryReceipt(const SignedReceipt& signed_receipt,
                                              const ReceiptExpectation& expected,
                                              std::string_view source) {
  const std::string src(source);
  auto r = ParseDeliveryReceipt(signed_receipt.json, source);
  if (!r) return Err(r.error());
  SP_RETURN_IF_ERROR(VerifySealSignature(signed_receipt.json, signed_receipt.signature,
                                         expected.seal, src));
  if (r->document_id != expected.document_id) {
    return Err(Status::FailedPrecondition(src + ": names document \"" + r->document_id +
                                          "\", expected \"" + expected.document_id + "\""));
  }
  if (r->content_sha256 != expected.content_sha256) {
    return Err(Status::FailedPrecondition(src + ": names content SHA-256 " + r->content_sha256 +
                                          ", expected " + expected.content_sha256));
  }
  if (r->recipient != expected.recipient) {
    return Err(Status::FailedPrecondition(src + ": names recipient \"" + r->recipient +
                                          "\", expected \"" + expected.recipient + "\""));
  }
  Status cp = VerifyCheckpointSignature(r->checkpoint, r->checkpoint_signature, expected.seal,
                                        src + ": checkpoint");
  if (!cp.ok()) {
    // A malformed CMS is still a refusal of this receipt, with its reason.
    return Err(Status(cp.code() == Code::kDataError ? Code::kDataError : Code::kFailedPrecondition,
                      cp.message()));
  }
  return r;
}

Result<ReadNotice> VerifyReadNotice(const SignedReceipt& signed_notice,
                                    const ReceiptExpectation& expected, std::string_view source) {
  const std::string src(source);
  auto n = ParseReadNotice(signed_notice.json, source);
  if (!n) return Err(n.error());
  SP_RETURN_IF_ERROR(
      VerifySealSignature(signed_notice.json, signed_notice.signature, expected.seal, src));
  if (n->document_id != expected.document_id) {
    return Err(Status::FailedPrecondition(src + ": names document \"" + n->document_id +
                                          "\", expected \"" + expected.document_id + "\""));
  }
  if (n->recipient != expected.recipient) {
    return Err(Status::FailedPrecondition(src + ": names recipient \"" + n->recipient +
                                          "\", expected \"" + expected.recipient + "\""));
  }
  return n;
}

}  // namespace sealpost::crypto
