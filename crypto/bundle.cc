#include "crypto/bundle.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <set>
#include <utility>

#include "base/encoding.h"
#include "base/json.h"
#include "base/utf8.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/verify.h"

namespace sealpost::crypto {
namespace {

// ---------------------------------------------------------------------------
// A strict, bounded JSON reader for the small documents of a bundle:
// objects (no duplicate keys), arrays, strings (valid UTF-8), non-negative
// integers without leading zeros. No floats, booleans or null: none of our
// formats uses them.

struct Json {
  enum class Kind { kObject, kArray, kString, kNumber };
  Kind kind = Kind::kString;
  std::string str;
  uint64_t num = 0;
  // Object members as two parallel lists (a vector of pairs holding the
  // incomplete type Json is not portable; a vector of Json is, since C++17).
  std::vector<std::string> keys;
  std::vector<Json> values;
  std::vector<Json> items;

  const Json* Get(std::string_view key) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &values[i];
    }
    return nullptr;
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  Result<Json> ParseDocument() {
    Json v;
    SP_RETURN_IF_ERROR(Value(v, 0));
    if (i_ != s_.size()) return Err(Error("data after the JSON value"));
    return v;
  }

 private:
  static constexpr int kMaxDepth = 8;
  static constexpr size_t kMaxNodes = 100000;

  Status Error(std::string_view what) const {
    return Status::DataError(std::string(what) + " at byte " + std::to_string(i_));
  }

  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) {
      ++i_;
    }
  }

  Status Value(Json& out, int depth) {
    if (depth > kMaxDepth) return Error("JSON nested too deeply");
    if (++nodes_ > kMaxNodes) return Error("too many JSON values");
    SkipSpace();
    if (i_ >= s_.size()) return Error("unexpected end of JSON");
    char c = s_[i_];
    if (c == '{') {
      out.kind = Json::Kind::kObject;
      ++i_;
      SkipSpace();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return Status::Ok();
      }
      std::set<std::string> seen;
      for (;;) {
        SkipSpace();
        if (i_ >= s_.size() || s_[i_] != '"') return Error("expected a key");
        std::string key;
        if (Status s = String(key); !s.ok()) return s;
        if (!seen.insert(key).second) return Error("duplicate key " + JsonString(key));
        SkipSpace();
        if (i_ >= s_.size() || s_[i_] != ':') return Error("expected ':'");
        ++i_;
        Json v;
        if (Status s = Value(v, depth + 1); !s.ok()) return s;
        out.keys.push_back(std::move(key));
        out.values.push_back(std::move(v));
        SkipSpace();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          return Status::Ok();
        }
        return Error("expected ',' or '}'");
      }
    }
    if (c == '[') {
      out.kind = Json::Kind::kArray;
      ++i_;
      SkipSpace();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return Status::Ok();
      }
      for (;;) {
        Json v;
        if (Status s = Value(v, depth + 1); !s.ok()) return s;
        out.items.push_back(std::move(v));
        SkipSpace();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return Status::Ok();
        }
        return Error("expected ',' or ']'");
      }
    }
    if (c == '"') {
      out.kind = Json::Kind::kString;
      return String(out.str);
    }
    if (c >= '0' && c <= '9') {
      out.kind = Json::Kind::kNumber;
      size_t start = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ - start > 1 && s_[start] == '0') return Error("number with a leading zero");
      if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) {
        return Error("only integers are allowed");
      }
      auto [p, ec] = std::from_chars(s_.data() + start, s_.data() + i_, out.num);
      if (ec != std::errc() || p != s_.data() + i_) return Error("integer out of range");
      return Status::Ok();
    }
    return Error("unexpected character in JSON");
  }

  static int HexVal(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  Status Hex4(uint32_t* v) {
    if (i_ + 4 > s_.size()) return Error("truncated \\u escape");
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = HexVal(s_[i_++]);
      if (h < 0) return Error("bad \\u escape");
      *v = (*v << 4) | static_cast<uint32_t>(h);
    }
    return Status::Ok();
  }

  static void AppendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  Status String(std::string& out) {
    ++i_;  // opening quote
    for (;;) {
      if (i_ >= s_.size()) return Error("unterminated string");
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        break;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out.push_back(c);
        ++i_;
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) return Error("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (Status s = Hex4(&cp); !s.ok()) return s;
          if (cp >= 0xdc00 && cp <= 0xdfff) return Error("lone low surrogate");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') {
              return Error("lone high surrogate");
            }
            i_ += 2;
            uint32_t lo = 0;
            if (Status s = Hex4(&lo); !s.ok()) return s;
            if (lo < 0xdc00 || lo > 0xdfff) return Error("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          return Error("bad escape");
      }
    }
    if (!IsValidUtf8(out)) return Error("string is not valid UTF-8");
    return Status::Ok();
  }

  std::string_view s_;
  size_t i_ = 0;
  size_t nodes_ = 0;
};

// Typed access with one error message style: "<source>: <key>: ...".
class Fields {
 public:
  Fields(const Json& obj, std::string_view source) : obj_(obj), source_(source) {}

  Status Only(std::initializer_list<std::string_view> keys) const {
    for (const std::string& k : obj_.keys) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        return Fail(k, "unknown key");
      }
    }
    for (std::string_view k : keys) {
      if (!obj_.Get(k)) return Fail(k, "missing");
    }
    return Status::Ok();
  }
  Result<std::string> Str(std::string_view key) const {
    const Json* v = obj_.Get(key);
    if (!v || v->kind != Json::Kind::kString) return Err(Fail(key, "must be a string"));
    return v->str;
  }
  Result<uint64_t> Num(std::string_view key) const {
    const Json* v = obj_.Get(key);
    if (!v || v->kind != Json::Kind::kNumber) return Err(Fail(key, "must be an integer"));
    return v->num;
  }
  Result<std::vector<std::string>> StrList(std::string_view key, size_t max) const {
    const Json* v = obj_.Get(key);
    if (!v || v->kind != Json::Kind::kArray) return Err(Fail(key, "must be an array"));
    if (v->items.size() > max) return Err(Fail(key, "has too many items"));
    std::vector<std::string> out;
    for (const Json& item : v->items) {
      if (item.kind != Json::Kind::kString) return Err(Fail(key, "items must be strings"));
      out.push_back(item.str);
    }
    return out;
  }
  const Json* Raw(std::string_view key) const { return obj_.Get(key); }
  Status Fail(std::string_view key, std::string_view what) const {
    return Status::DataError(std::string(source_) + ": \"" + std::string(key) + "\" " +
                             std::string(what));
  }

 private:
  const Json& obj_;
  std::string_view source_;
};

Result<Json> ParseJsonObject(std::string_view text, std::string_view source) {
  JsonReader reader(text);
  auto v = reader.ParseDocument();
  if (!v) return Err(v.error().WithContext(source));
  if (v->kind != Json::Kind::kObject) {
    return Err(Status::DataError(std::string(source) + ": not a JSON object"));
  }
  return std::move(*v);
}

bool IsLowerHex(std::string_view s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string JsonStringList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out.push_back(',');
    out += JsonString(v[i]);
  }
  return out + "]";
}

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

Status CheckText(std::string_view field, std::string_view value, bool required, size_t max) {
  if (required && value.empty()) return Status::InvalidArgument("document." + std::string(field) + " is empty");
  if (value.size() > max || (!value.empty() && !IsCleanUtf8Text(value))) {
    return Status::InvalidArgument("document." + std::string(field) +
                                   " is not one line of UTF-8 text of at most " +
                                   std::to_string(max) + " bytes");
  }
  return Status::Ok();
}

Status ValidateDocument(const DocumentInfo& d) {
  constexpr size_t kMax = 4096;
  if (Status s = CheckText("id", d.id, true, kMax); !s.ok()) return s;
  if (Status s = CheckText("type", d.type, true, kMax); !s.ok()) return s;
  if (Status s = CheckText("reference", d.reference, false, kMax); !s.ok()) return s;
  if (Status s = CheckText("subject", d.subject, false, kMax); !s.ok()) return s;
  if (Status s = CheckText("issuer", d.issuer, true, kMax); !s.ok()) return s;
  if (Status s = CheckText("content_name", d.content_name, true, 255); !s.ok()) return s;
  if (Status s = CheckText("content_media_type", d.content_media_type, true, 255); !s.ok()) return s;
  if (d.recipients.empty() || d.recipients.size() > 1024) {
    return Status::InvalidArgument("document.recipients must list 1 to 1024 unions");
  }
  for (const std::string& r : d.recipients) {
    if (Status s = CheckText("recipients", r, true, kMax); !s.ok()) return s;
    if (r.find(',') != std::string::npos) {
      return Status::InvalidArgument("document.recipients: a union id contains ','");
    }
  }
  for (const auto* list : {&d.supersedes, &d.revokes}) {
    if (list->size() > 64) return Status::InvalidArgument("document.supersedes/revokes: too many ids");
    for (const std::string& id : *list) {
      if (Status s = CheckText("supersedes/revokes", id, true, kMax); !s.ok()) return s;
    }
  }
  if (!IsLowerHex(d.content_sha256, 64)) {
    return Status::InvalidArgument("document.content_sha256 is not 64 lower-case hex digits");
  }
  if (!d.policy_sha256.empty() && !IsLowerHex(d.policy_sha256, 64)) {
    return Status::InvalidArgument("document.policy_sha256 is not 64 lower-case hex digits");
  }
  auto t = ParseRfc3339(d.issued_at);
  if (!t || FormatRfc3339(*t) != d.issued_at) {
    return Status::InvalidArgument("document.issued_at is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SSZ)");
  }
  return Status::Ok();
}

// Names every bundle member carries, and the archive file name each one is
// in the sender's archive entry.
struct MemberMap {
  std::string_view member;
  std::string_view archive_name;
  bool required;
};
constexpr MemberMap kMetaMembers[] = {
    {kBundleSignatureMember, "content.p7s", true},
    {kBundleDocumentMember, "document.json", true},
    {kBundleDocumentSealMember, "document.json.p7s", true},
    {kBundleCertsMember, "certs.pem", true},
    {kBundleCrlsMember, "crls.pem", false},
    {kBundleManifestMember, "", true},
    {kBundleCheckpointMember, "", true},
    {kBundleCheckpointSigMember, "", true},
    {kBundleProofMember, "", true},
};

bool IsSafeContentName(std::string_view n) {
  if (n.empty() || n.size() > 100) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(n[0])) return false;
  return std::all_of(n.begin(), n.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

std::string RandomHex(size_t bytes) {
  std::string r(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(r.data()), static_cast<int>(bytes)) != 1) {
    // Uniqueness, not secrecy: fall back to the pid and an address.
    r = std::to_string(::getpid()) + std::to_string(reinterpret_cast<uintptr_t>(&r));
    return r;
  }
  return HexEncode(r);
}

class Sha256Stream {
 public:
  Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1;
  }
  void Update(std::string_view d) {
    if (ok_) ok_ = EVP_DigestUpdate(ctx_.get(), d.data(), d.size()) == 1;
  }
  Result<std::string> FinalHex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "SHA-256 failed"));
    }
    return HexEncode(std::string_view(reinterpret_cast<char*>(md), len));
  }

 private:
  EvpMdCtxPtr ctx_;
  bool ok_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------
// document.json, proofs, manifests

Result<std::string> SerializeDocumentJson(const DocumentInfo& d) {
  if (Status s = ValidateDocument(d); !s.ok()) return Err(s);
  std::string out = "{";
  out += "\"content_media_type\":" + JsonString(d.content_media_type);
  out += ",\"content_name\":" + JsonString(d.content_name);
  out += ",\"content_sha256\":" + JsonString(d.content_sha256);
  out += ",\"content_size\":" + std::to_string(d.content_size);
  out += ",\"format\":1";
  out += ",\"id\":" + JsonString(d.id);
  out += ",\"issued_at\":" + JsonString(d.issued_at);
  out += ",\"issuer\":" + JsonString(d.issuer);
  out += ",\"policy_sha256\":" + JsonString(d.policy_sha256);
  out += ",\"recipients\":" + JsonStringList(d.recipients);
  out += ",\"reference\":" + JsonString(d.reference);
  out += ",\"revokes\":" + JsonStringList(d.revokes);
  out += ",\"subject\":" + JsonString(d.subject);
  out += ",\"supersedes\":" + JsonStringList(d.supersedes);
  out += ",\"type\":" + JsonString(d.type);
  out += "}";
  return out;
}

Result<DocumentInfo> ParseDocumentJson(std::string_view json, std::string_view source) {
  if (json.size() > 256 * 1024) {
    return Err(Status::DataError(std::string(source) + ": larger than 256 KiB"));
  }
  auto obj = ParseJsonObject(json, source);
  if (!obj) return Err(obj.error());
  Fields f(*obj, source);
  if (Status s = f.Only({"content_media_type", "content_name", "content_sha256", "content_size",
                         "format", "id", "issued_at", "issuer", "policy_sha256", "recipients",
                         "reference", "revokes", "subject", "supersedes", "type"});
      !s.ok()) {
    return Err(s);
  }
  auto format = f.Num("format");
  if (!format) return Err(format.error());
  if (*format != 1) return Err(f.Fail("format", "is not 1 (unknown document format)"));
  DocumentInfo d;
  struct {
    std::string_view key;
    std::string* out;
  } strings[] = {{"content_media_type", &d.content_media_type},
                 {"content_name", &d.content_name},
                 {"content_sha256", &d.content_sha256},
                 {"id", &d.id},
                 {"issued_at", &d.issued_at},
                 {"issuer", &d.issuer},
                 {"policy_sha256", &d.policy_sha256},
                 {"reference", &d.reference},
                 {"subject", &d.subject},
                 {"type", &d.type}};
  for (auto& [key, out] : strings) {
    auto v = f.Str(key);
    if (!v) return Err(v.error());
    *out = std::move(*v);
  }
  auto size = f.Num("content_size");
  if (!size) return Err(size.error());
  d.content_size = *size;
  auto rec = f.StrList("recipients", 1024);
  if (!rec) return Err(rec.error());
  d.recipients = std::move(*rec);
  auto sup = f.StrList("supersedes", 64);
  if (!sup) return Err(sup.error());
  d.supersedes = std::move(*sup);
  auto rev = f.StrList("revokes", 64);
  if (!rev) return Err(rev.error());
  d.revokes = std::move(*rev);
  auto canonical = SerializeDocumentJson(d);
  if (!canonical) {
    return Err(Status::DataError(std::string(source) + ": " + canonical.error().message()));
  }
  if (*canonical != json) {
    return Err(Status::DataError(std::string(source) +
                                 ": not in canonical form (sorted keys, no white space, "
                                 "minimal escapes)"));
  }
  return d;
}

std::string BundleContentName(std::string_view original_name) {
  std::string_view base = original_name;
  if (auto slash = base.find_last_of("/\\"); slash != std::string_view::npos) {
    base = base.substr(slash + 1);
  }
  auto dot = base.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return "document";
  std::string_view ext = base.substr(dot + 1);
  if (ext.empty() || ext.size() > 10) return "document";
  std::string lower;
  for (char c : ext) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return "document";
    lower.push_back(c);
  }
  return "document." + lower;
}

std::string SerializeInclusionProof(const InclusionProof& proof) {
  std::string out = "{\"hashes\":[";
  for (size_t i = 0; i < proof.hashes.size(); ++i) {
    if (i) out.push_back(',');
    out += "\"" + merkle::ToHex(proof.hashes[i]) + "\"";
  }
  out += "],\"leaf_index\":" + std::to_string(proof.leaf_index) +
         ",\"tree_size\":" + std::to_string(proof.tree_size) + "}";
  return out;
}

Result<InclusionProof> ParseInclusionProof(std::string_view json, std::string_view source) {
  if (json.size() > 64 * 1024) {
    return Err(Status::DataError(std::string(source) + ": larger than 64 KiB"));
  }
  auto obj = ParseJsonObject(json, source);
  if (!obj) return Err(obj.error());
  Fields f(*obj, source);
  if (Status s = f.Only({"hashes", "leaf_index", "tree_size"}); !s.ok()) return Err(s);
  InclusionProof p;
  auto idx = f.Num("leaf_index");
  if (!idx) return Err(idx.error());
  auto size = f.Num("tree_size");
  if (!size) return Err(size.error());
  p.leaf_index = *idx;
  p.tree_size = *size;
  if (p.leaf_index >= p.tree_size) return Err(f.Fail("leaf_index", "is not below tree_size"));
  auto hashes = f.StrList("hashes", 64);
  if (!hashes) return Err(hashes.error());
  for (const std::string& h : *hashes) {
    if (!IsLowerHex(h, 64)) return Err(f.Fail("hashes", "items must be 64 lower-case hex digits"));
    auto raw = HexDecode(h);
    if (!raw) return Err(f.Fail("hashes", "items must be hex"));
    auto hash = merkle::HashFromBytes(*raw, "hash");
    if (!hash) return Err(hash.error());
    p.hashes.push_back(*hash);
  }
  return p;
}

Result<ArchiveManifest> ParseArchiveManifest(std::string_view json, std::string_view source) {
  if (json.size() > 1024 * 1024) {
    return Err(Status::DataError(std::string(source) + ": larger than 1 MiB"));
  }
  auto obj = ParseJsonObject(json, source);
  if (!obj) return Err(obj.error());
  Fields f(*obj, source);
  if (Status s = f.Only({"fields", "files", "format", "kind", "origin", "refers_to", "seq", "time"});
      !s.ok()) {
    return Err(s);
  }
  ArchiveManifest m;
  for (auto [key, out] : {std::pair<std::string_view, uint64_t*>{"format", &m.format},
                          {"refers_to", &m.refers_to},
                          {"seq", &m.seq}}) {
    auto v = f.Num(key);
    if (!v) return Err(v.error());
    *out = *v;
  }
  if (m.format != 1) return Err(f.Fail("format", "is not 1 (unknown archive format)"));
  if (m.seq == 0) return Err(f.Fail("seq", "must be at least 1"));
  for (auto [key, out] : {std::pair<std::string_view, std::string*>{"kind", &m.kind},
                          {"origin", &m.origin},
                          {"time", &m.time}}) {
    auto v = f.Str(key);
    if (!v) return Err(v.error());
    *out = std::move(*v);
  }
  const Json* fields = f.Raw("fields");
  if (fields->kind != Json::Kind::kObject) return Err(f.Fail("fields", "must be an object"));
  for (size_t i = 0; i < fields->keys.size(); ++i) {
    const Json& v = fields->values[i];
    if (v.kind != Json::Kind::kString) return Err(f.Fail("fields", "values must be strings"));
    m.fields.emplace(fields->keys[i], v.str);
  }
  const Json* files = f.Raw("files");
  if (files->kind != Json::Kind::kArray || files->items.size() > 64) {
    return Err(f.Fail("files", "must be an array of at most 64 files"));
  }
  std::set<std::string> names;
  for (const Json& item : files->items) {
    if (item.kind != Json::Kind::kObject) return Err(f.Fail("files", "items must be objects"));
    Fields ff(item, source);
    if (Status s = ff.Only({"name", "sha256", "size"}); !s.ok()) return Err(s);
    ArchiveManifest::File file;
    auto name = ff.Str("name");
    if (!name) return Err(name.error());
    auto sha = ff.Str("sha256");
    if (!sha) return Err(sha.error());
    auto size = ff.Num("size");
    if (!size) return Err(size.error());
    if (!IsLowerHex(*sha, 64)) return Err(ff.Fail("sha256", "is not 64 lower-case hex digits"));
    if (!names.insert(*name).second) return Err(f.Fail("files", "lists a name twice"));
    file.name = std::move(*name);
    file.sha256 = std::move(*sha);
    file.size = *size;
    m.files.push_back(std::move(file));
  }
  return m;
}

// ---------------------------------------------------------------------------
// Build

namespace {

// The one layout of a bundle, whatever the writer's sink (file or memory).
Status WriteBundle(const BundleParts& parts, ZipWriter* writer) {
  auto doc = ParseDocumentJson(parts.document_json, "document.json");
  if (!doc) return Status::InvalidArgument(doc.error().message());
  if (auto m = ParseArchiveManifest(parts.archive_manifest, "archive manifest"); !m) {
    return Status::InvalidArgument(m.error().message());
  }
  if (auto cp = ParseCheckpoint(parts.checkpoint, "checkpoint"); !cp) {
    return Status::InvalidArgument(cp.error().message());
  }
  if (parts.certs_pem.empty()) return Status::InvalidArgument("bundle: certs.pem is empty");
  for (const auto* der : {&parts.content_p7s, &parts.document_json_p7s, &parts.checkpoint_p7s}) {
    if (der->empty()) return Status::InvalidArgument("bundle: a signature part is empty");
  }

  Status s = writer->AddBytes(kBundleMimetypeMember, kBundleMimetype);
  if (!s.ok()) return s;
  Sha256Stream sha;
  uint64_t size = 0;
  s = writer->AddFile(BundleContentName(doc->content_name), parts.content_path,
                      [&](std::string_view chunk) {
                        sha.Update(chunk);
                        size += chunk.size();
                      });
  if (!s.ok()) return s;
  auto hex = sha.FinalHex();
  if (!hex) return hex.error();
  if (size != doc->content_size || *hex != doc->content_sha256) {
    // The writer is dropped here: its temporary file goes with it.
    return Status::InvalidArgument(parts.content_path + ": content (" + std::to_string(size) +
                                   " bytes, sha256 " + *hex +
                                   ") is not what document.json declares (" +
                                   std::to_string(doc->content_size) + " bytes, sha256 " +
                                   doc->content_sha256 + ")");
  }
  const std::pair<std::string_view, const std::string*> members[] = {
      {kBundleSignatureMember, &parts.content_p7s},
      {kBundleDocumentMember, &parts.document_json},
      {kBundleDocumentSealMember, &parts.document_json_p7s},
      {kBundleCertsMember, &parts.certs_pem},
      {kBundleCrlsMember, &parts.crls_pem},
      {kBundleManifestMember, &parts.archive_manifest},
      {kBundleCheckpointMember, &parts.checkpoint},
      {kBundleCheckpointSigMember, &parts.checkpoint_p7s},
  };
  for (const auto& [name, data] : members) {
    if (name == kBundleCrlsMember && data->empty()) continue;
    // Text members compress well; DER signatures do not and stay STORED.
    ZipMethod method = name.ends_with(".p7s") ? ZipMethod::kStored : ZipMethod::kDeflate;
    s = writer->AddBytes(name, *data, method);
    if (!s.ok()) return s;
  }
  s = writer->AddBytes(kBundleProofMember, SerializeInclusionProof(parts.proof), ZipMethod::kDeflate);
  if (!s.ok()) return s;
  return writer->Finish();
}

}  // namespace

Status BuildBundle(const BundleParts& parts, const std::string& out_path,
                   std::optional<std::time_t> mtime, bool sync) {
  auto writer = ZipWriter::Create(out_path, mtime);
  if (!writer) return writer.error();
  writer->set_sync(sync);
  return WriteBundle(parts, &*writer);
}

Result<std::string> BuildBundleInMemory(const BundleParts& parts,
                                        std::optional<std::time_t> mtime) {
  ZipWriter writer = ZipWriter::CreateInMemory(mtime);
  if (Status s = WriteBundle(parts, &writer); !s.ok()) return Err(s);
  return writer.ReleaseBytes();
}

// ---------------------------------------------------------------------------
// Read

ParsedBundle::ParsedBundle(ParsedBundle&& o) noexcept
    : content_member(std::move(o.content_member)), content_size(o.content_size),
      content_sha256(std::move(o.content_sha256)), document_json(std::move(o.document_json)),
      document(std::move(o.document)), document_json_p7s(std::move(o.document_json_p7s)),
      content_p7s(std::move(o.content_p7s)), certs_pem(std::move(o.certs_pem)),
      crls_pem(std::move(o.crls_pem)), archive_manifest(std::move(o.archive_manifest)),
      manifest(std::move(o.manifest)), checkpoint_body(std::move(o.checkpoint_body)),
      checkpoint(std::move(o.checkpoint)), checkpoint_p7s(std::move(o.checkpoint_p7s)),
      proof(std::move(o.proof)), content_path_(std::exchange(o.content_path_, std::string())) {}

ParsedBundle& ParsedBundle::operator=(ParsedBundle&& o) noexcept {
  if (this != &o) {
    if (!content_path_.empty()) ::unlink(content_path_.c_str());
    content_member = std::move(o.content_member);
    content_size = o.content_size;
    content_sha256 = std::move(o.content_sha256);
    document_json = std::move(o.document_json);
    document = std::move(o.document);
    document_json_p7s = std::move(o.document_json_p7s);
    content_p7s = std::move(o.content_p7s);
    certs_pem = std::move(o.certs_pem);
    crls_pem = std::move(o.crls_pem);
    archive_manifest = std::move(o.archive_manifest);
    manifest = std::move(o.manifest);
    checkpoint_body = std::move(o.checkpoint_body);
    checkpoint = std::move(o.checkpoint);
    checkpoint_p7s = std::move(o.checkpoint_p7s);
    proof = std::move(o.proof);
    content_path_ = std::exchange(o.content_path_, std::string());
  }
  return *this;
}

ParsedBundle::~ParsedBundle() {
  if (!content_path_.empty()) ::unlink(content_path_.c_str());
}

std::string ParsedBundle::ReleaseContent() { return std::exchange(content_path_, std::string()); }

Result<ParsedBundle> ReadBundle(const std::string& path, const std::string& work_dir,
                                const BundleLimits& limits) {
  auto fail = [&](std::string what) { return Err(Status::DataError(path + ": " + what)); };
  auto zip = ZipReader::Open(path, limits.zip);
  if (!zip) return Err(zip.error());
  const auto& entries = zip->entries();
  if (entries.empty() || entries[0].name != kBundleMimetypeMember) {
    return fail("the first member is not \"mimetype\" (not an ASiC container)");
  }
  const ZipEntry& mt = entries[0];
  if (mt.method != ZipMethod::kStored || mt.local_extra_size != 0) {
    return fail("\"mimetype\" must be STORED without an extra field (ASiC)");
  }
  auto mime = zip->ExtractToString(mt, 256);
  if (!mime) return Err(mime.error());
  if (*mime != kBundleMimetype) {
    return fail("media type " + JsonString(*mime) + " is not " + std::string(kBundleMimetype));
  }

  ParsedBundle b;
  const ZipEntry* content = nullptr;
  std::map<std::string_view, std::string*> meta = {
      {kBundleSignatureMember, &b.content_p7s},
      {kBundleDocumentMember, &b.document_json},
      {kBundleDocumentSealMember, &b.document_json_p7s},
      {kBundleCertsMember, &b.certs_pem},
      {kBundleCrlsMember, &b.crls_pem},
      {kBundleManifestMember, &b.archive_manifest},
      {kBundleCheckpointMember, &b.checkpoint_body},
      {kBundleCheckpointSigMember, &b.checkpoint_p7s},
  };
  std::string proof_json;
  meta[kBundleProofMember] = &proof_json;
  std::set<std::string_view> present;
  for (size_t i = 1; i < entries.size(); ++i) {
    const ZipEntry& e = entries[i];
    if (e.is_directory()) return fail("unexpected directory entry " + JsonString(e.name));
    if (e.name.find('/') == std::string::npos) {
      if (content) {
        return fail("more than one data object (" + JsonString(content->name) + ", " +
                    JsonString(e.name) + "); ASiC-S holds one");
      }
      if (!IsSafeContentName(e.name)) return fail("content member name " + JsonString(e.name) + " is not a safe name");
      if (e.size > limits.max_content_bytes) {
        return fail("content of " + std::to_string(e.size) + " bytes exceeds the limit of " +
                    std::to_string(limits.max_content_bytes));
      }
      content = &e;
      continue;
    }
    auto it = meta.find(e.name);
    if (it == meta.end()) return fail("unexpected member " + JsonString(e.name));
    present.insert(it->first);
    auto data = zip->ExtractToString(e, limits.max_metadata_bytes);
    if (!data) return Err(data.error());
    *it->second = std::move(*data);
  }
  if (!content) return fail("no data object (the signed document) at the root");
  for (const MemberMap& m : kMetaMembers) {
    if (m.required && !present.count(m.member)) {
      return fail("missing member " + JsonString(m.member));
    }
  }
  if (present.count(kBundleCrlsMember) && b.crls_pem.empty()) {
    return fail("crls.pem is present but empty");
  }

  auto doc = ParseDocumentJson(b.document_json, path + ": document.json");
  if (!doc) return Err(doc.error());
  b.document = std::move(*doc);
  if (content->name != BundleContentName(b.document.content_name)) {
    return fail("content member " + JsonString(content->name) + " should be named " +
                JsonString(BundleContentName(b.document.content_name)) +
                " for the document " + JsonString(b.document.content_name));
  }
  auto manifest = ParseArchiveManifest(b.archive_manifest, path + ": archive-manifest.json");
  if (!manifest) return Err(manifest.error());
  b.manifest = std::move(*manifest);
  auto cp = ParseCheckpoint(b.checkpoint_body, path + ": checkpoint");
  if (!cp) return Err(cp.error());
  b.checkpoint = std::move(*cp);
  auto proof = ParseInclusionProof(proof_json, path + ": inclusion-proof.json");
  if (!proof) return Err(proof.error());
  b.proof = std::move(*proof);
  if (auto certs = ParseCertificates(b.certs_pem, path + ": certs.pem"); !certs) {
    return Err(certs.error());
  }
  if (!b.crls_pem.empty()) {
    if (auto crls = ParseCrls(b.crls_pem, path + ": crls.pem"); !crls) return Err(crls.error());
  }
  for (const std::string* der : {&b.content_p7s, &b.document_json_p7s, &b.checkpoint_p7s}) {
    if (der->empty()) return fail("an empty signature member");
  }

  // Last: the content, digested on its way to the work directory.
  b.content_member = content->name;
  std::string target = work_dir + "/bundle-content-" + RandomHex(12);
  Sha256Stream sha;
  uint64_t size = 0;
  Status s = zip->ExtractToFile(*content, target, [&](std::string_view chunk) {
    sha.Update(chunk);
    size += chunk.size();
  });
  if (!s.ok()) return Err(s);
  b.content_path_ = target;  // owned (and removed on error) from here
  auto hex = sha.FinalHex();
  if (!hex) return Err(hex.error());
  b.content_sha256 = std::move(*hex);
  b.content_size = size;
  return b;
}

// ---------------------------------------------------------------------------
// Verify

std::string_view BundleCheckName(BundleCheck c) {
  switch (c) {
    case BundleCheck::kDocumentSeal: return "document-seal";
    case BundleCheck::kContentSignature: return "content-signature";
    case BundleCheck::kContentSealed: return "content-sealed";
    case BundleCheck::kContentDigest: return "content-digest";
    case BundleCheck::kArchiveEntry: return "archive-entry";
    case BundleCheck::kCheckpointSignature: return "checkpoint-signature";
    case BundleCheck::kInclusion: return "inclusion";
    case BundleCheck::kOrigin: return "origin";
  }
  return "";
}

std::string_view BundleReasonName(BundleReason r) {
  switch (r) {
    case BundleReason::kNone: return "";
    case BundleReason::kSignatureFailed: return "signature-failed";
    case BundleReason::kSealNotSingleSigner: return "seal-not-single-signer";
    case BundleReason::kSealUnknown: return "seal-unknown";
    case BundleReason::kContentNotSealed: return "content-not-sealed";
    case BundleReason::kContentSizeMismatch: return "content-size-mismatch";
    case BundleReason::kContentHashMismatch: return "content-hash-mismatch";
    case BundleReason::kEntryKindWrong: return "entry-kind-wrong";
    case BundleReason::kEntryFileMissing: return "entry-file-missing";
    case BundleReason::kEntryFileMismatch: return "entry-file-mismatch";
    case BundleReason::kEntryFieldMismatch: return "entry-field-mismatch";
    case BundleReason::kCheckpointSignatureInvalid: return "checkpoint-signature-invalid";
    case BundleReason::kTreeSizeMismatch: return "tree-size-mismatch";
    case BundleReason::kLeafIndexMismatch: return "leaf-index-mismatch";
    case BundleReason::kInclusionProofInvalid: return "inclusion-proof-invalid";
    case BundleReason::kOriginMismatch: return "origin-mismatch";
    case BundleReason::kUnexpectedOrigin: return "unexpected-origin";
  }
  return "";
}

std::string BundleReasonText(BundleReason r, Lang lang) {
  auto t = [&](std::string_view en, std::string_view vi) { return std::string(Tr(lang, en, vi)); };
  switch (r) {
    case BundleReason::kNone:
      return t("passed", "đạt");
    case BundleReason::kSignatureFailed:
      return t("the signature did not verify (see the signature report)",
               "chữ ký không hợp lệ (xem báo cáo chữ ký)");
    case BundleReason::kSealNotSingleSigner:
      return t("the document description must be signed by the union seal alone",
               "bản mô tả văn bản phải do riêng con dấu của công đoàn ký");
    case BundleReason::kSealUnknown:
      return t("the union seal's certificate could not be found",
               "không tìm thấy chứng thư của con dấu công đoàn");
    case BundleReason::kContentNotSealed:
      return t("the document's signature does not include the union seal",
               "chữ ký trên văn bản không có con dấu của công đoàn");
    case BundleReason::kContentSizeMismatch:
      return t("the document's size differs from its description",
               "kích thước văn bản khác với bản mô tả");
    case BundleReason::kContentHashMismatch:
      return t("the document's content differs from its description (SHA-256)",
               "nội dung văn bản khác với bản mô tả (SHA-256)");
    case BundleReason::kEntryKindWrong:
      return t("the sender's archive entry is not a sent document",
               "mục lưu trữ của bên gửi không phải là văn bản đã gửi");
    case BundleReason::kEntryFileMissing:
      return t("the sender's archive entry and the bundle do not hold the same files",
               "mục lưu trữ của bên gửi và gói văn bản không chứa cùng các tệp");
    case BundleReason::kEntryFileMismatch:
      return t("a file of the bundle differs from the one in the sender's archive",
               "một tệp trong gói khác với tệp trong kho lưu trữ của bên gửi");
    case BundleReason::kEntryFieldMismatch:
      return t("the sender's archive entry describes another document",
               "mục lưu trữ của bên gửi mô tả một văn bản khác");
    case BundleReason::kCheckpointSignatureInvalid:
      return t("the sender's checkpoint is not signed by the same union seal",
               "điểm kiểm tra của bên gửi không được ký bằng cùng con dấu công đoàn");
    case BundleReason::kTreeSizeMismatch:
      return t("the inclusion proof is for another size of the sender's log",
               "bằng chứng bao hàm ứng với một kích thước khác của nhật ký bên gửi");
    case BundleReason::kLeafIndexMismatch:
      return t("the inclusion proof is for another entry of the sender's log",
               "bằng chứng bao hàm ứng với một mục khác trong nhật ký bên gửi");
    case BundleReason::kInclusionProofInvalid:
      return t("the document is not proven to be in the sender's archive",
               "không chứng minh được văn bản nằm trong kho lưu trữ của bên gửi");
    case BundleReason::kOriginMismatch:
      return t("the archive entry and the checkpoint come from different logs",
               "mục lưu trữ và điểm kiểm tra thuộc hai nhật ký khác nhau");
    case BundleReason::kUnexpectedOrigin:
      return t("the bundle comes from another log than the sender's",
               "gói văn bản đến từ một nhật ký khác với nhật ký của bên gửi");
  }
  return "";
}

const BundleFinding* BundleReport::FirstProblem() const {
  for (const BundleFinding& f : findings) {
    if (f.indication != Indication::kPassed) return &f;
  }
  return nullptr;
}

namespace {

BundleFinding Pass(BundleCheck c) { return BundleFinding{c, Indication::kPassed, SubIndication::kNone, BundleReason::kNone, ""}; }

BundleFinding Problem(BundleCheck c, SubIndication sub, BundleReason r, std::string detail) {
  return BundleFinding{c, IndicationOf(sub), sub, r, std::move(detail)};
}

// The finding for a whole signature report.
BundleFinding FromReport(BundleCheck c, const Report& rep, std::string_view member) {
  if (rep.indication == Indication::kPassed) return Pass(c);
  BundleFinding f{c, rep.indication, rep.sub_indication, BundleReason::kSignatureFailed,
                  std::string(member)};
  for (const SignerReport& s : rep.signers) {
    if (s.indication != Indication::kPassed) {
      f.detail += ": " + s.name + ": " + std::string(ReasonName(s.reason));
      if (!s.detail.empty()) f.detail += " (" + s.detail + ")";
      break;
    }
  }
  return f;
}

Result<X509StackPtr> CopyCerts(STACK_OF(X509)* in) {
  X509StackPtr out(sk_X509_new_null());
  if (!out) return Err(OpenSslStatus(Code::kInternal, "sk_X509_new_null"));
  for (int i = 0; in && i < sk_X509_num(in); ++i) {
    X509* c = sk_X509_value(in, i);
    X509_up_ref(c);
    if (!sk_X509_push(out.get(), c)) {
      X509_free(c);
      return Err(OpenSslStatus(Code::kInternal, "sk_X509_push"));
    }
  }
  return out;
}

}  // namespace

Result<BundleReport> VerifyBundle(const ParsedBundle& b, const BundleVerifyOptions& options) {
  if (!options.anchors || sk_X509_num(options.anchors) == 0) {
    return Err(Status::InvalidArgument("bundle verification needs at least one trust anchor"));
  }
  auto anchors = CopyCerts(options.anchors);
  if (!anchors) return Err(anchors.error());
  auto untrusted = ParseCertificates(b.certs_pem, "certs.pem");
  if (!untrusted) return Err(untrusted.error());
  X509CrlStackPtr crls(sk_X509_CRL_new_null());
  if (!crls) return Err(OpenSslStatus(Code::kInternal, "sk_X509_CRL_new_null"));
  auto push_crls = [&](STACK_OF(X509_CRL)* from) -> Status {
    for (int i = 0; from && i < sk_X509_CRL_num(from); ++i) {
      X509_CRL* c = sk_X509_CRL_value(from, i);
      X509_CRL_up_ref(c);
      if (!sk_X509_CRL_push(crls.get(), c)) {
        X509_CRL_free(c);
        return OpenSslStatus(Code::kInternal, "sk_X509_CRL_push");
      }
    }
    return Status::Ok();
  };
  if (!b.crls_pem.empty()) {
    auto bundled = ParseCrls(b.crls_pem, "crls.pem");
    if (!bundled) return Err(bundled.error());
    SP_RETURN_IF_ERROR(push_crls(bundled->get()));
  }
  SP_RETURN_IF_ERROR(push_crls(options.crls));
  auto store = TrustStore::Create(std::move(*anchors), std::move(*untrusted), std::move(crls),
                                  options.trust);
  if (!store) return Err(store.error());
  auto verifier = Verifier::Create(std::move(*store));
  if (!verifier) return Err(verifier.error());

  BundleReport out;
  out.origin = b.checkpoint.origin;
  out.seq = b.manifest.seq;
  out.tree_size = b.checkpoint.size;
  out.root_hex = merkle::ToHex(b.checkpoint.root);

  // 1. The seal over document.json: exactly one signer, who is the seal.
  auto seal_report = verifier->VerifyBytes(b.document_json, b.document_json_p7s, options.at);
  if (!seal_report) return Err(seal_report.error().WithContext("document.json.p7s"));
  out.document_seal = std::move(*seal_report);
  X509* seal = nullptr;
  if (out.document_seal.signers.size() != 1) {
    out.findings.push_back(Problem(BundleCheck::kDocumentSeal, SubIndication::kFormatFailure,
                                   BundleReason::kSealNotSingleSigner,
                                   std::to_string(out.document_seal.signers.size()) + " signers"));
  } else {
    out.findings.push_back(
        FromReport(BundleCheck::kDocumentSeal, out.document_seal, "document.json.p7s"));
    seal = out.document_seal.signers[0].certificate.get();
  }

  // 2. The content signature, every signer.
  auto content_report = verifier->VerifyFile(b.content_path(), b.content_p7s, options.at);
  if (!content_report) return Err(content_report.error().WithContext("signature.p7s"));
  out.content = std::move(*content_report);
  out.findings.push_back(FromReport(BundleCheck::kContentSignature, out.content, "signature.p7s"));

  // 3. The seal is among the content's signers.
  if (!seal) {
    out.findings.push_back(Problem(BundleCheck::kContentSealed, SubIndication::kNoSigningCertificateFound,
                                   BundleReason::kSealUnknown, "document.json.p7s"));
  } else {
    bool sealed = std::any_of(out.content.signers.begin(), out.content.signers.end(),
                              [&](const SignerReport& s) {
                                return s.certificate && X509_cmp(s.certificate.get(), seal) == 0;
                              });
    out.findings.push_back(sealed ? Pass(BundleCheck::kContentSealed)
                                  : Problem(BundleCheck::kContentSealed,
                                            SubIndication::kFormatFailure,
                                            BundleReason::kContentNotSealed,
                                            "seal: " + DisplayName(seal)));
  }

  // 4. The content is what document.json describes.
  if (b.content_size != b.document.content_size) {
    out.findings.push_back(Problem(BundleCheck::kContentDigest, SubIndication::kHashFailure,
                                   BundleReason::kContentSizeMismatch,
                                   std::to_string(b.content_size) + " bytes, declared " +
                                       std::to_string(b.document.content_size)));
  } else if (b.content_sha256 != b.document.content_sha256) {
    out.findings.push_back(Problem(BundleCheck::kContentDigest, SubIndication::kHashFailure,
                                   BundleReason::kContentHashMismatch,
                                   "sha256 " + b.content_sha256 + ", declared " +
                                       b.document.content_sha256));
  } else {
    out.findings.push_back(Pass(BundleCheck::kContentDigest));
  }

  // 5. The archive entry lists exactly the bundle's files, with their
  // digests, and describes this document.
  {
    std::optional<BundleFinding> problem;
    auto digest = [](std::string_view data) {
      auto d = DigestBytes(EVP_sha256(), data);
      return d ? HexEncode(*d) : std::string();
    };
    struct Carried {
      std::string_view archive_name;
      std::string sha256;
      uint64_t size;
    };
    std::vector<Carried> carried = {
        {"content", b.content_sha256, b.content_size},
        {"content.p7s", digest(b.content_p7s), b.content_p7s.size()},
        {"document.json", digest(b.document_json), b.document_json.size()},
        {"document.json.p7s", digest(b.document_json_p7s), b.document_json_p7s.size()},
        {"certs.pem", digest(b.certs_pem), b.certs_pem.size()},
    };
    if (!b.crls_pem.empty()) carried.push_back({"crls.pem", digest(b.crls_pem), b.crls_pem.size()});
    if (b.manifest.kind != "document-sent") {
      problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kFormatFailure,
                        BundleReason::kEntryKindWrong, "kind " + b.manifest.kind);
    }
    for (const Carried& c : carried) {
      if (problem) break;
      auto it = std::find_if(b.manifest.files.begin(), b.manifest.files.end(),
                             [&](const ArchiveManifest::File& f) { return f.name == c.archive_name; });
      if (it == b.manifest.files.end()) {
        problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kFormatFailure,
                          BundleReason::kEntryFileMissing,
                          std::string(c.archive_name) + " is not listed in the archive entry");
      } else if (it->sha256 != c.sha256 || it->size != c.size) {
        problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kHashFailure,
                          BundleReason::kEntryFileMismatch,
                          std::string(c.archive_name) + ": bundle sha256 " + c.sha256 +
                              ", archive entry " + it->sha256);
      }
    }
    for (const ArchiveManifest::File& f : b.manifest.files) {
      if (problem) break;
      bool known = std::any_of(carried.begin(), carried.end(),
                               [&](const Carried& c) { return c.archive_name == f.name; });
      if (!known) {
        problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kFormatFailure,
                          BundleReason::kEntryFileMissing,
                          f.name + " is in the archive entry but not in the bundle");
      }
    }
    const DocumentInfo& d = b.document;
    const std::pair<std::string_view, std::string> expected_fields[] = {
        {"id", d.id},
        {"type", d.type},
        {"reference", d.reference},
        {"subject", d.subject},
        {"issuer", d.issuer},
        {"recipients", Join(d.recipients, ",")},
        {"issued_at", d.issued_at},
        {"content_name", d.content_name},
        {"content_media_type", d.content_media_type},
        {"content_size", std::to_string(d.content_size)},
        {"content_sha256", d.content_sha256},
        {"policy_sha256", d.policy_sha256},
    };
    for (const auto& [key, value] : expected_fields) {
      if (problem) break;
      auto it = b.manifest.fields.find(std::string(key));
      if (it != b.manifest.fields.end() && it->second != value) {
        problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kFormatFailure,
                          BundleReason::kEntryFieldMismatch,
                          "field " + std::string(key) + ": " + JsonString(it->second) +
                              ", document.json " + JsonString(value));
      }
    }
    if (!problem && !b.manifest.fields.count("id")) {
      problem = Problem(BundleCheck::kArchiveEntry, SubIndication::kFormatFailure,
                        BundleReason::kEntryFieldMismatch, "the archive entry has no id field");
    }
    out.findings.push_back(problem ? *problem : Pass(BundleCheck::kArchiveEntry));
  }

  // 6. The checkpoint is signed by the same seal certificate.
  if (!seal) {
    out.findings.push_back(Problem(BundleCheck::kCheckpointSignature,
                                   SubIndication::kNoSigningCertificateFound,
                                   BundleReason::kSealUnknown, "document.json.p7s"));
  } else {
    Status cs = VerifyCheckpointSignature(b.checkpoint_body, b.checkpoint_p7s, seal, "checkpoint.p7s");
    out.findings.push_back(cs.ok() ? Pass(BundleCheck::kCheckpointSignature)
                                   : Problem(BundleCheck::kCheckpointSignature,
                                             SubIndication::kSigCryptoFailure,
                                             BundleReason::kCheckpointSignatureInvalid,
                                             cs.message()));
  }

  // 7. The entry's leaf is in the checkpoint's tree.
  if (b.proof.tree_size != b.checkpoint.size) {
    out.findings.push_back(Problem(BundleCheck::kInclusion, SubIndication::kFormatFailure,
                                   BundleReason::kTreeSizeMismatch,
                                   "proof for size " + std::to_string(b.proof.tree_size) +
                                       ", checkpoint size " + std::to_string(b.checkpoint.size)));
  } else if (b.proof.leaf_index != b.manifest.seq - 1) {
    out.findings.push_back(Problem(BundleCheck::kInclusion, SubIndication::kFormatFailure,
                                   BundleReason::kLeafIndexMismatch,
                                   "proof for leaf " + std::to_string(b.proof.leaf_index) +
                                       ", entry seq " + std::to_string(b.manifest.seq)));
  } else {
    Status is = merkle::VerifyInclusion(merkle::LeafHash(b.archive_manifest), b.proof.leaf_index,
                                        b.proof.tree_size, b.proof.hashes, b.checkpoint.root);
    out.findings.push_back(is.ok() ? Pass(BundleCheck::kInclusion)
                                   : Problem(BundleCheck::kInclusion, SubIndication::kHashFailure,
                                             BundleReason::kInclusionProofInvalid, is.message()));
  }

  // 8. One log: the entry's and the checkpoint's origin (and the caller's).
  if (b.manifest.origin != b.checkpoint.origin) {
    out.findings.push_back(Problem(BundleCheck::kOrigin, SubIndication::kFormatFailure,
                                   BundleReason::kOriginMismatch,
                                   "entry " + JsonString(b.manifest.origin) + ", checkpoint " +
                                       JsonString(b.checkpoint.origin)));
  } else if (options.expected_origin && *options.expected_origin != b.checkpoint.origin) {
    out.findings.push_back(Problem(BundleCheck::kOrigin, SubIndication::kFormatFailure,
                                   BundleReason::kUnexpectedOrigin,
                                   JsonString(b.checkpoint.origin) + ", expected " +
                                       JsonString(*options.expected_origin)));
  } else {
    out.findings.push_back(Pass(BundleCheck::kOrigin));
  }

  // Overall: the worst finding (the first among equals). The signature
  // reports are already findings 1 and 2.
  for (const BundleFinding& f : out.findings) {
    if (f.indication > out.indication) {
      out.indication = f.indication;
      out.sub_indication = f.sub_indication;
    }
  }
  return out;
}

std::string BundleReportToText(const BundleReport& r, Lang lang) {
  std::string out;
  if (r.indication == Indication::kPassed) {
    out += Tr(lang, "Bundle: PASSED", "Gói văn bản: ĐẠT");
  } else if (r.indication == Indication::kFailed) {
    out += Tr(lang, "Bundle: FAILED", "Gói văn bản: KHÔNG HỢP LỆ");
  } else {
    out += Tr(lang, "Bundle: INDETERMINATE", "Gói văn bản: CHƯA XÁC ĐỊNH ĐƯỢC");
  }
  if (r.sub_indication != SubIndication::kNone) {
    out += " (" + std::string(SubIndicationName(r.sub_indication)) + ")";
  }
  out += "\n";
  out += std::string(Tr(lang, "Sender's log: ", "Nhật ký bên gửi: ")) + r.origin + ", " +
         std::string(Tr(lang, "entry ", "mục ")) + std::to_string(r.seq) + " / " +
         std::to_string(r.tree_size) + "\n";
  for (const BundleFinding& f : r.findings) {
    out += "  " + std::string(BundleCheckName(f.check)) + ": " +
           std::string(IndicationName(f.indication));
    if (f.reason != BundleReason::kNone) {
      out += " — " + BundleReasonText(f.reason, lang);
      if (!f.detail.empty()) out += " [" + f.detail + "]";
    }
    out += "\n";
  }
  out += Tr(lang, "Document signatures:\n", "Chữ ký trên văn bản:\n");
  out += ReportToText(r.content, lang);
  out += Tr(lang, "Seal over the description:\n", "Con dấu trên bản mô tả:\n");
  out += ReportToText(r.document_seal, lang);
  return out;
}

std::string BundleReportToJson(const BundleReport& r) {
  auto strip = [](std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  auto sub = [](SubIndication s) {
    return s == SubIndication::kNone ? std::string("null") : JsonString(SubIndicationName(s));
  };
  std::string out = "{\"indication\":" + JsonString(IndicationName(r.indication)) +
                    ",\"subIndication\":" + sub(r.sub_indication) +
                    ",\"origin\":" + JsonString(r.origin) + ",\"seq\":" + std::to_string(r.seq) +
                    ",\"treeSize\":" + std::to_string(r.tree_size) +
                    ",\"root\":" + JsonString(r.root_hex) + ",\"findings\":[";
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const BundleFinding& f = r.findings[i];
    if (i) out.push_back(',');
    out += "{\"check\":" + JsonString(BundleCheckName(f.check)) +
           ",\"indication\":" + JsonString(IndicationName(f.indication)) +
           ",\"subIndication\":" + sub(f.sub_indication) + ",\"reason\":" +
           (f.reason == BundleReason::kNone ? std::string("null")
                                            : JsonString(BundleReasonName(f.reason))) +
           ",\"detail\":" + (f.detail.empty() ? std::string("null") : JsonString(f.detail)) + "}";
  }
  out += "],\"documentSeal\":" + strip(ReportToJson(r.document_seal)) +
         ",\"content\":" + strip(ReportToJson(r.content)) + "}\n";
  return out;
}

}  // namespace sealpost::crypto
