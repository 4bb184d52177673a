#include "policies/canonical.h"

#include <openssl/evp.h>

#include "base/encoding.h"

namespace sealpost::policies {
namespace {

// Writes one object; keys must be added in byte order (asserted by review:
// every call site below lists them alphabetically).
class Obj {
 public:
  explicit Obj(std::string* out) : out_(out) { *out_ += '{'; }
  ~Obj() { *out_ += '}'; }
  Obj(const Obj&) = delete;
  Obj& operator=(const Obj&) = delete;
  std::string* Key(std::string_view k) {
    if (!first_) *out_ += ',';
    first_ = false;
    *out_ += JsonString(k);
    *out_ += ':';
    return out_;
  }
  void Str(std::string_view k, std::string_view v) { *Key(k) += JsonString(v); }
  void Num(std::string_view k, uint64_t v) { *Key(k) += std::to_string(v); }
  void Bool(std::string_view k, bool v) { *Key(k) += v ? "true" : "false"; }
  template <typename Range, typename Fn>
  void List(std::string_view k, const Range& items, Fn fn) {
    std::string* o = Key(k);
    *o += '[';
    bool first = true;
    for (const auto& it : items) {
      if (!first) *o += ',';
      first = false;
      fn(it);
    }
    *o += ']';
  }
  void StrList(std::string_view k, const std::vector<std::string>& items) {
    List(k, items, [&](const std::string& s) { *out_ += JsonString(s); });
  }

 private:
  std::string* out_;
  bool first_ = true;
};

std::string_view KindName(CertIdentity::Kind k) {
  switch (k) {
    case CertIdentity::Kind::kIssuerSerial:
      return "issuer_serial";
    case CertIdentity::Kind::kSpkiSha256:
      return "spki_sha256";
    case CertIdentity::Kind::kSubjectUnderCa:
      return "subject_under_ca";
  }
  return "";
}

void Identity(std::string* out, const CertIdentity& id) {
  Obj o(out);
  o.Str("ca", id.ca);
  o.Str("issuer", id.issuer);
  o.Str("kind", KindName(id.kind));
  o.Str("serial", id.serial);
  o.Str("spki_sha256", id.spki_sha256);
  o.Str("subject", id.subject);
}

void OptionalIdentity(Obj& o, std::string_view key, bool has, const CertIdentity& id) {
  std::string* out = o.Key(key);
  if (has) {
    Identity(out, id);
  } else {
    *out += "null";
  }
}

template <typename E, size_t N>
void EnumList(Obj& o, std::string_view key, const std::vector<E>& values,
              const std::string_view (&names)[N]) {
  std::vector<std::string> s;
  for (E v : values) s.emplace_back(names[static_cast<size_t>(v)]);
  o.StrList(key, s);
}

}  // namespace

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string CanonicalJson(const Policy& p) {
  std::string out;
  out.reserve(256 + p.unions.size() * 400 + p.officers.size() * 400);
  {
    Obj top(&out);
    top.List("anchors", p.anchors, [&](const TrustAnchor& a) {
      Obj o(&out);
      o.Str("id", a.id);
      o.Str("name", a.name);
      o.Str("sha256", a.sha256);
    });
    top.List("crl_sources", p.crl_sources, [&](const CrlSource& c) {
      Obj o(&out);
      o.Str("anchor", c.anchor);
      o.Str("url", c.url);
    });
    top.List("document_types", p.document_types, [&](const DocumentType& t) {
      Obj o(&out);
      o.Str("id", t.id);
      {
        Obj is(o.Key("issuers"));
        is.StrList("groups", t.issuer_groups);
        EnumList(is, "levels", t.issuer_levels, kLevelNames);
        is.StrList("unions", t.issuer_unions);
      }
      o.Num("max_size_bytes", t.max_size_bytes);
      o.StrList("media_types", t.media_types);
      o.Str("name", t.name);
      o.Str("name_en", t.name_en);
      {
        Obj rc(o.Key("recipients"));
        rc.StrList("groups", t.recipient_groups);
        EnumList(rc, "relations", t.recipient_relations, kRelationNames);
        rc.StrList("unions", t.recipient_unions);
      }
      o.Str("reference", t.reference_pattern);
      o.Num("retention_years", static_cast<uint64_t>(t.retention_years));
      {
        Obj sg(o.Key("signatures"));
        sg.List("officers", t.signatures, [&](const SignatureRequirement& s) {
          Obj req(&out);
          req.Num("count", static_cast<uint64_t>(s.count));
          EnumList(req, "roles", s.roles, kRoleNames);
        });
        sg.Bool("seal", t.seal_required);
      }
      o.Bool("timestamp_required", t.timestamp_required);
    });
    {
      Obj f(top.Key("federation"));
      f.Str("id", p.federation_id);
      f.Str("name", p.federation_name);
      // Only when set: policies without a version keep their hash.
      if (p.version != 0) f.Num("version", p.version);
    }
    top.Str("format", "sealpost-policy/1");
    top.List("groups", p.groups, [&](const Group& g) {
      Obj o(&out);
      o.Str("id", g.id);
      o.StrList("members", g.members);
      o.Str("name", g.name);
    });
    top.List("officers", p.officers, [&](const Officer& of) {
      Obj o(&out);
      Identity(o.Key("certificate"), of.certificate);
      o.Str("id", of.id);
      {
        Obj m(o.Key("mandate"));
        m.Str("from", of.mandate.from_text);
        m.Str("until", of.mandate.until_text);
      }
      o.Str("name", of.name);
      o.Str("role", kRoleNames[static_cast<size_t>(of.role)]);
      o.Str("union", of.union_id);
    });
    top.List("unions", p.unions, [&](const Union& u) {
      Obj o(&out);
      // Only channels that differ from the default are part of the hash:
      // policies without `channels` keep their hash, and writing out the
      // default list changes nothing.
      if (u.channels != DefaultChannels(u)) EnumList(o, "channels", u.channels, kChannelNames);
      o.Str("code", u.code);
      o.Str("email", u.email);
      o.Str("endpoint", u.endpoint);
      o.Str("id", u.id);
      o.Str("level", kLevelNames[static_cast<size_t>(u.level)]);
      o.Str("name", u.name);
      o.Str("parent", u.parent);
      OptionalIdentity(o, "seal", u.has_seal, u.seal);
      OptionalIdentity(o, "tls_identity", u.has_tls_identity, u.tls_identity);
      o.Str("webhook", u.webhook);
    });
  }
  return out;
}

}  // namespace sealpost::policies
