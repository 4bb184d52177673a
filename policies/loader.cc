// The strict loader: YAML tree (yaml_tree.h) -> typed drafts with positions
// (schema.h readers) -> cross-file checks -> sorted, indexed Policy.
#include <algorithm>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <utility>

#include "base/file.h"
#include "policies/canonical.h"
#include "policies/policy.h"
#include "policies/reference.h"
#include "policies/schema.h"

namespace sealpost::policies {
namespace {

using internal::ListItem;
using internal::Loc;
using internal::LocatedError;
using internal::MapView;
using internal::Reporter;

constexpr int64_t kVietnamOffsetSeconds = 7 * 3600;  // dates are Vietnam's (UTC+07:00, no DST)
constexpr size_t kMaxFileBytes = 64u << 20;

struct IdentityDraft {
  CertIdentity id;
  Loc loc;
  Loc ca_loc;
};

struct AnchorDraft {
  TrustAnchor a;
  Loc loc;
};
struct CrlDraft {
  CrlSource c;
  Loc anchor_loc;
};
struct UnionDraft {
  Union u;
  Loc loc;
  bool explicit_channels = false;
  Loc parent_loc;
  std::optional<IdentityDraft> seal;
  std::optional<IdentityDraft> tls;
};
struct GroupDraft {
  Group g;
  Loc loc;
  std::vector<Loc> member_locs;
};
struct OfficerDraft {
  Officer o;
  Loc loc;
  Loc union_loc;
  std::optional<IdentityDraft> cert;
};
struct TypeDraft {
  DocumentType t;
  Loc loc;
  std::vector<Loc> issuer_union_locs, issuer_group_locs, recipient_union_locs, recipient_group_locs;
};

std::string LevelName(Level l) { return std::string(kLevelNames[static_cast<size_t>(l)]); }

// Serial as SerialHex prints it: upper case, no leading zeros ("0" for zero).
std::string NormalizeSerial(const std::string& lower_hex) {
  std::string s;
  for (char c : lower_hex) s += static_cast<char>(c >= 'a' && c <= 'f' ? c - 'a' + 'A' : c);
  size_t nz = s.find_first_not_of('0');
  return nz == std::string::npos ? "0" : s.substr(nz);
}

// Column of the character at byte `offset` inside a scalar that starts at
// `m` (one more for the opening quote); exact for scalars without escapes.
Mark MarkInside(const YamlNode& n, size_t offset) {
  int chars = 0;
  for (size_t i = 0; i < offset && i < n.value.size(); ++i) {
    if ((static_cast<unsigned char>(n.value[i]) & 0xC0) != 0x80) ++chars;
  }
  return Mark{n.mark.line, n.mark.column + chars + (n.style == ScalarStyle::kQuoted ? 1 : 0)};
}

class Loader {
 public:
  explicit Loader(const std::vector<PolicySource>& sources) : sources_(sources) {}

  std::vector<LocatedError> errors;

  std::string Where(const Loc& l) const {
    return sources_[l.file].name + ":" + std::to_string(l.mark.line) + ":" +
           std::to_string(l.mark.column);
  }

  void AddFile(size_t file, const YamlNode& root) {
    Reporter r(file, &errors);
    MapView top(r, root, "a policy file",
                {"federation", "trust", "unions", "groups", "officers", "document_types"});
    if (!top.ok()) return;
    for (const YamlMapEntry& e : root.entries) {
      // Drafts are large: reserve so a 20,000-officer list is not relocated
      // a dozen times.
      if (e.value.IsSeq()) {
        size_t n = e.value.items.size();
        if (e.key == "unions") unions_.reserve(unions_.size() + n);
        if (e.key == "officers") officers_.reserve(officers_.size() + n);
        if (e.key == "groups") groups_.reserve(groups_.size() + n);
      }
      if (e.key == "federation") ReadFederation(r, e);
      if (e.key == "trust") ReadTrust(r, e);
      if (e.key == "unions") ForEachItem(r, e.value, "unions", [&](const YamlNode& n) { ReadUnion(r, n); });
      if (e.key == "groups") ForEachItem(r, e.value, "groups", [&](const YamlNode& n) { ReadGroup(r, n); });
      if (e.key == "officers") ForEachItem(r, e.value, "officers", [&](const YamlNode& n) { ReadOfficer(r, n); });
      if (e.key == "document_types") {
        ForEachItem(r, e.value, "document_types", [&](const YamlNode& n) { ReadType(r, n); });
      }
    }
  }

  void CrossCheck();
  std::shared_ptr<Policy> Build();

 private:
  void Error(const Loc& l, std::string msg) { errors.push_back(LocatedError{l, std::move(msg)}); }

  template <typename Fn>
  void ForEachItem(const Reporter& r, const YamlNode& list, std::string_view what, Fn fn) {
    if (list.reported) return;
    if (!list.IsSeq()) {
      r.Error(list.mark, std::string(what) + " must be a list, not " + internal::Describe(list));
      return;
    }
    for (const YamlNode& n : list.items) fn(n);
  }

  bool Once(const Reporter& r, const YamlMapEntry& e, std::optional<Loc>* first) {
    if (*first) {
      r.Error(e.key_mark, "'" + e.key + "' is already defined at " + Where(**first));
      return false;
    }
    *first = r.At(e.key_mark);
    return true;
  }

  void ReadFederation(const Reporter& r, const YamlMapEntry& e) {
    if (!Once(r, e, &federation_loc_)) return;
    MapView m(r, e.value, "federation", {"id", "name", "version"});
    if (auto n = m.Require("id")) federation_id_ = internal::ReadId(r, *n, "federation.id").value_or("");
    if (auto n = m.Require("name")) federation_name_ = internal::ReadNonEmptyString(r, *n, "federation.name").value_or("");
    if (auto n = m.Get("version")) {
      federation_version_ = internal::ReadUint(r, *n, "federation.version", 0, uint64_t{1} << 53).value_or(0);
    }
  }

  void ReadTrust(const Reporter& r, const YamlMapEntry& e) {
    if (!Once(r, e, &trust_loc_)) return;
    MapView m(r, e.value, "trust", {"anchors", "crl_sources"});
    if (auto n = m.Require("anchors")) {
      ForEachItem(r, *n, "trust.anchors", [&](const YamlNode& item) {
        MapView a(r, item, "trust anchor", {"id", "name", "sha256"});
        if (!a.ok()) return;
        AnchorDraft d;
        d.loc = r.At(item.mark);
        bool ok = true;
        if (auto v = a.Require("id")) {
          auto id = internal::ReadId(r, *v, "trust anchor id");
          ok = ok && id;
          if (id) d.a.id = *id, d.loc = r.At(v->mark);
        } else {
          ok = false;
        }
        if (auto v = a.Require("name")) d.a.name = internal::ReadNonEmptyString(r, *v, "trust anchor name").value_or("");
        if (auto v = a.Require("sha256")) d.a.sha256 = internal::ReadHex(r, *v, "trust anchor sha256", 32).value_or("");
        if (ok) anchors_.push_back(std::move(d));
      });
    }
    if (auto n = m.Get("crl_sources")) {
      ForEachItem(r, *n, "trust.crl_sources", [&](const YamlNode& item) {
        MapView c(r, item, "CRL source", {"anchor", "url"});
        if (!c.ok()) return;
        CrlDraft d;
        if (auto v = c.Require("anchor")) {
          d.c.anchor = internal::ReadId(r, *v, "CRL source anchor").value_or("");
          d.anchor_loc = r.At(v->mark);
        }
        if (auto v = c.Require("url")) {
          d.c.url = internal::ReadUrl(r, *v, "CRL source url", {"http://", "https://", "file:///"}).value_or("");
        }
        if (!d.c.anchor.empty()) crls_.push_back(std::move(d));
      });
    }
  }

  std::optional<IdentityDraft> ReadIdentity(const Reporter& r, const YamlNode& n,
                                            const std::string& what) {
    MapView m(r, n, what, {"issuer", "serial", "spki_sha256", "subject", "ca"});
    if (!m.ok()) return std::nullopt;
    bool is = m.Get("issuer") || m.Get("serial");
    bool spki = m.Get("spki_sha256") != nullptr;
    bool sub = m.Get("subject") || m.Get("ca");
    if (int(is) + int(spki) + int(sub) != 1) {
      r.Error(n.mark, what + " must give exactly one of: issuer + serial, spki_sha256, subject + ca");
      return std::nullopt;
    }
    IdentityDraft d;
    d.loc = r.At(n.mark);
    bool ok = true;
    auto name = [&](const char* key) -> std::string {
      const YamlNode* v = m.Require(key);
      if (!v) return ok = false, "";
      auto s = internal::ReadNonEmptyString(r, *v, what + "." + key, 4096);
      if (!s) return ok = false, "";
      std::string norm = NormalizeName(*s);
      if (norm.find('=') == std::string::npos) {
        r.Error(v->mark, what + "." + key + " '" + *s +
                             "' is not a distinguished name (e.g. \"CN=Nguyễn Văn A, O=..., C=VN\")");
        return ok = false, "";
      }
      return norm;
    };
    if (is) {
      d.id.kind = CertIdentity::Kind::kIssuerSerial;
      d.id.issuer = name("issuer");
      if (const YamlNode* v = m.Require("serial")) {
        auto hex = internal::ReadHex(r, *v, what + ".serial", 0);
        if (hex) d.id.serial = NormalizeSerial(*hex); else ok = false;
      } else {
        ok = false;
      }
    } else if (spki) {
      d.id.kind = CertIdentity::Kind::kSpkiSha256;
      auto hex = internal::ReadHex(r, *m.Get("spki_sha256"), what + ".spki_sha256", 32);
      if (hex) d.id.spki_sha256 = *hex; else ok = false;
    } else {
      d.id.kind = CertIdentity::Kind::kSubjectUnderCa;
      d.id.subject = name("subject");
      if (const YamlNode* v = m.Require("ca")) {
        auto ca = internal::ReadId(r, *v, what + ".ca");
        if (ca) d.id.ca = *ca, d.ca_loc = r.At(v->mark); else ok = false;
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return d;
  }

  void ReadUnion(const Reporter& r, const YamlNode& n) {
    MapView m(r, n, "union", {"id", "name", "code", "level", "parent", "endpoint", "tls_identity",
                              "seal", "email", "webhook", "channels"});
    if (!m.ok()) return;
    UnionDraft d;
    const YamlNode* idn = m.Require("id");
    std::optional<std::string> id = idn ? internal::ReadId(r, *idn, "union id") : std::nullopt;
    if (auto v = m.Require("name")) d.u.name = internal::ReadNonEmptyString(r, *v, "union name").value_or("");
    if (auto v = m.Get("code")) {
      auto code = internal::ReadNonEmptyString(r, *v, "union code", 32);
      if (code && code->find_first_of(" /{}") != std::string::npos) {
        r.Error(v->mark, "union code '" + *code + "' must not contain spaces, '/', '{' or '}'");
      } else if (code) {
        d.u.code = *code;
      }
    }
    if (auto v = m.Require("level")) {
      if (auto l = internal::ReadEnum(r, *v, "union level", kLevelNames)) d.u.level = static_cast<Level>(*l);
    }
    if (auto v = m.Get("parent")) {
      if (auto p = internal::ReadId(r, *v, "union parent")) d.u.parent = *p, d.parent_loc = r.At(v->mark);
    }
    if (auto v = m.Get("endpoint")) d.u.endpoint = internal::ReadUrl(r, *v, "union endpoint", {"https://"}).value_or("");
    if (auto v = m.Get("webhook")) d.u.webhook = internal::ReadUrl(r, *v, "union webhook", {"https://"}).value_or("");
    if (auto v = m.Get("email")) d.u.email = internal::ReadEmail(r, *v, "union email").value_or("");
    if (auto v = m.Get("seal")) d.seal = ReadIdentity(r, *v, "union seal");
    if (auto v = m.Get("tls_identity")) d.tls = ReadIdentity(r, *v, "union tls_identity");
    if (auto v = m.Get("channels")) {
      d.explicit_channels = true;
      for (ListItem& it : internal::ReadList(r, *v, "union channels", false,
                                             [&](const YamlNode& x) -> std::optional<std::string> {
             auto i = internal::ReadEnum(r, x, "union channel", kChannelNames);
             if (!i) return std::nullopt;
             return std::string(kChannelNames[*i]);
           })) {
        // Each listed channel needs its address; a key that is present but
        // invalid was reported already.
        static constexpr const char* kAddressKey[] = {"endpoint", "email", "webhook"};
        size_t c = 0;
        while (kChannelNames[c] != it.key) ++c;
        if (m.Get(kAddressKey[c]) == nullptr) {
          r.Error(it.mark, "union channel '" + it.key + "' needs the union's '" +
                               kAddressKey[c] + "'");
          continue;
        }
        d.u.channels.push_back(static_cast<Channel>(c));
      }
      std::sort(d.u.channels.begin(), d.u.channels.end());
    }
    if (!id) return;
    d.u.id = *id;
    d.loc = r.At(idn->mark);
    if (d.u.code.empty()) d.u.code = d.u.id;
    if (!d.explicit_channels) d.u.channels = DefaultChannels(d.u);
    unions_.push_back(std::move(d));
  }

  void ReadGroup(const Reporter& r, const YamlNode& n) {
    MapView m(r, n, "group", {"id", "name", "members"});
    if (!m.ok()) return;
    GroupDraft d;
    const YamlNode* idn = m.Require("id");
    std::optional<std::string> id = idn ? internal::ReadId(r, *idn, "group id") : std::nullopt;
    if (auto v = m.Require("name")) d.g.name = internal::ReadNonEmptyString(r, *v, "group name").value_or("");
    if (auto v = m.Require("members")) {
      for (ListItem& it : internal::ReadList(r, *v, "group members", false, [&](const YamlNode& x) {
             return internal::ReadId(r, x, "group member");
           })) {
        d.g.members.push_back(std::move(it.key));
        d.member_locs.push_back(r.At(it.mark));
      }
    }
    if (!id) return;
    d.g.id = *id;
    d.loc = r.At(idn->mark);
    groups_.push_back(std::move(d));
  }

  void ReadOfficer(const Reporter& r, const YamlNode& n) {
    MapView m(r, n, "officer", {"id", "name", "role", "union", "certificate", "mandate"});
    if (!m.ok()) return;
    OfficerDraft d;
    const YamlNode* idn = m.Require("id");
    std::optional<std::string> id = idn ? internal::ReadId(r, *idn, "officer id") : std::nullopt;
    if (auto v = m.Require("name")) d.o.name = internal::ReadNonEmptyString(r, *v, "officer name").value_or("");
    if (auto v = m.Require("role")) {
      if (auto role = internal::ReadEnum(r, *v, "officer role", kRoleNames)) d.o.role = static_cast<Role>(*role);
    }
    if (auto v = m.Require("union")) {
      if (auto u = internal::ReadId(r, *v, "officer union")) d.o.union_id = *u, d.union_loc = r.At(v->mark);
    }
    if (auto v = m.Require("certificate")) d.cert = ReadIdentity(r, *v, "officer certificate");
    if (auto v = m.Require("mandate")) {
      MapView md(r, *v, "officer mandate", {"from", "until"});
      std::optional<int64_t> from, until;
      if (auto f = md.Require("from")) {
        from = internal::ReadDate(r, *f, "mandate from");
        if (from) d.o.mandate.from = *from * 86400 - kVietnamOffsetSeconds, d.o.mandate.from_text = f->value;
      }
      if (auto u = md.Get("until")) {
        until = internal::ReadDate(r, *u, "mandate until");
        if (until) {
          d.o.mandate.until = (*until + 1) * 86400 - kVietnamOffsetSeconds;
          d.o.mandate.until_text = u->value;
          if (from && *until < *from) r.Error(u->mark, "mandate until " + u->value + " is before its start");
        }
      }
    }
    if (!id) return;
    d.o.id = *id;
    d.loc = r.At(idn->mark);
    officers_.push_back(std::move(d));
  }

  // Reads a list of ids into `out`, with positions into `locs`.
  void IdList(const Reporter& r, const YamlNode& n, const std::string& what,
              std::vector<std::string>* out, std::vector<Loc>* locs) {
    for (ListItem& it : internal::ReadList(r, n, what, false, [&](const YamlNode& x) {
           return internal::ReadId(r, x, what);
         })) {
      out->push_back(std::move(it.key));
      locs->push_back(r.At(it.mark));
    }
  }

  template <typename E, size_t N>
  void EnumList(const Reporter& r, const YamlNode& n, const std::string& what,
                const std::string_view (&names)[N], std::vector<E>* out) {
    for (ListItem& it : internal::ReadList(r, n, what, false, [&](const YamlNode& x) -> std::optional<std::string> {
           auto i = internal::ReadEnum(r, x, what, names);
           if (!i) return std::nullopt;
           return std::string(names[*i]);
         })) {
      for (size_t i = 0; i < N; ++i) {
        if (names[i] == it.key) out->push_back(static_cast<E>(i));
      }
    }
    std::sort(out->begin(), out->end());
  }

  void ReadType(const Reporter& r, const YamlNode& n) {
    MapView m(r, n, "document type",
              {"id", "name", "name_en", "issuers", "recipients", "signatures", "max_size_bytes",
               "media_types", "retention_years", "timestamp_required", "reference"});
    if (!m.ok()) return;
    TypeDraft d;
    DocumentType& t = d.t;
    const YamlNode* idn = m.Require("id");
    std::optional<std::string> id = idn ? internal::ReadId(r, *idn, "document type id") : std::nullopt;
    if (auto v = m.Require("name")) t.name = internal::ReadNonEmptyString(r, *v, "document type name").value_or("");
    if (auto v = m.Get("name_en")) t.name_en = internal::ReadNonEmptyString(r, *v, "document type name_en").value_or("");
    if (auto v = m.Require("issuers")) {
      MapView is(r, *v, "issuers", {"levels", "unions", "groups"});
      if (auto x = is.Get("levels")) EnumList(r, *x, "issuers.levels", kLevelNames, &t.issuer_levels);
      if (auto x = is.Get("unions")) IdList(r, *x, "issuers.unions", &t.issuer_unions, &d.issuer_union_locs);
      if (auto x = is.Get("groups")) IdList(r, *x, "issuers.groups", &t.issuer_groups, &d.issuer_group_locs);
      if (is.ok() && !is.Get("levels") && !is.Get("unions") && !is.Get("groups")) {
        r.Error(v->mark, "issuers names nobody; give levels, unions or groups");
      }
    }
    if (auto v = m.Require("recipients")) {
      MapView rc(r, *v, "recipients", {"relations", "unions", "groups"});
      if (auto x = rc.Get("relations")) EnumList(r, *x, "recipients.relations", kRelationNames, &t.recipient_relations);
      if (auto x = rc.Get("unions")) IdList(r, *x, "recipients.unions", &t.recipient_unions, &d.recipient_union_locs);
      if (auto x = rc.Get("groups")) IdList(r, *x, "recipients.groups", &t.recipient_groups, &d.recipient_group_locs);
      if (rc.ok() && !rc.Get("relations") && !rc.Get("unions") && !rc.Get("groups")) {
        r.Error(v->mark, "recipients names nobody; give relations, unions or groups");
      }
    }
    if (auto v = m.Require("signatures")) {
      MapView sg(r, *v, "signatures", {"officers", "seal"});
      bool seal_ok = true;
      if (auto x = sg.Get("seal")) {
        auto seal = internal::ReadBool(r, *x, "signatures.seal");
        seal_ok = seal.has_value();
        t.seal_required = seal.value_or(false);
      }
      if (auto x = sg.Get("officers")) {
        if (!x->reported && !x->IsSeq()) {
          r.Error(x->mark, "signatures.officers must be a list, not " + internal::Describe(*x));
        }
        for (const YamlNode& item : x->IsSeq() ? x->items : std::vector<YamlNode>{}) {
          MapView req(r, item, "signature requirement", {"roles", "count"});
          if (!req.ok()) continue;
          SignatureRequirement s;
          if (auto rl = req.Require("roles")) EnumList(r, *rl, "signature roles", kRoleNames, &s.roles);
          if (auto c = req.Require("count")) s.count = static_cast<int>(internal::ReadUint(r, *c, "signature count", 1, 10).value_or(1));
          t.signatures.push_back(std::move(s));
        }
      }
      const YamlNode* officers = sg.Get("officers");
      bool no_officers = officers == nullptr || (officers->IsSeq() && officers->items.empty());
      if (sg.ok() && no_officers && !t.seal_required && seal_ok) {
        r.Error(v->mark, "signatures requires no signature; name officer roles or set seal: true");
      }
    }
    if (auto v = m.Require("max_size_bytes")) t.max_size_bytes = internal::ReadUint(r, *v, "max_size_bytes", 1, uint64_t{1} << 40).value_or(0);
    if (auto v = m.Require("media_types")) {
      for (ListItem& it : internal::ReadList(r, *v, "media_types", false, [&](const YamlNode& x) {
             return internal::ReadMediaType(r, x, "media type");
           })) {
        t.media_types.push_back(std::move(it.key));
      }
      std::sort(t.media_types.begin(), t.media_types.end());
    }
    if (auto v = m.Require("retention_years")) t.retention_years = static_cast<int>(internal::ReadUint(r, *v, "retention_years", 1, 100).value_or(0));
    if (auto v = m.Get("timestamp_required")) t.timestamp_required = internal::ReadBool(r, *v, "timestamp_required").value_or(false);
    if (auto v = m.Get("reference")) {
      if (auto p = internal::ReadNonEmptyString(r, *v, "reference", 256)) {
        size_t offset = 0;
        Status s = ValidateReferencePattern(*p, &offset);
        if (!s.ok()) {
          r.Error(MarkInside(*v, offset), s.message());
        } else {
          t.reference_pattern = *p;
        }
      }
    }
    if (!id) return;
    t.id = *id;
    if (t.name_en.empty()) t.name_en = t.id;
    d.loc = r.At(idn->mark);
    types_.push_back(std::move(d));
  }

  const std::vector<PolicySource>& sources_;
  std::optional<Loc> federation_loc_, trust_loc_;
  std::string federation_id_, federation_name_;
  uint64_t federation_version_ = 0;
  std::vector<AnchorDraft> anchors_;
  std::vector<CrlDraft> crls_;
  std::vector<UnionDraft> unions_;
  std::vector<GroupDraft> groups_;
  std::vector<OfficerDraft> officers_;
  std::vector<TypeDraft> types_;
  // id -> first draft position, filled by CrossCheck.
  std::unordered_map<std::string, size_t> union_ix_, group_ix_, anchor_ix_, officer_ix_, type_ix_;
};

template <typename Draft, typename IdOf>
void IndexUnique(std::vector<Draft>& drafts, std::unordered_map<std::string, size_t>* ix,
                 std::string_view kind, IdOf id_of, Loader& l,
                 std::vector<LocatedError>* errors) {
  for (size_t i = 0; i < drafts.size(); ++i) {
    auto [it, inserted] = ix->try_emplace(id_of(drafts[i]), i);
    if (!inserted) {
      errors->push_back(LocatedError{drafts[i].loc, "duplicate " + std::string(kind) + " id '" +
                                                        id_of(drafts[i]) + "' (first defined at " +
                                                        l.Where(drafts[it->second].loc) + ")"});
    }
  }
}

void Loader::CrossCheck() {
  if (!federation_loc_) {
    errors.push_back(LocatedError{Loc{0, Mark{}}, "no policy file defines 'federation'"});
  }
  IndexUnique(anchors_, &anchor_ix_, "trust anchor", [](const AnchorDraft& d) { return d.a.id; }, *this, &errors);
  IndexUnique(unions_, &union_ix_, "union", [](const UnionDraft& d) { return d.u.id; }, *this, &errors);
  IndexUnique(groups_, &group_ix_, "group", [](const GroupDraft& d) { return d.g.id; }, *this, &errors);
  IndexUnique(officers_, &officer_ix_, "officer", [](const OfficerDraft& d) { return d.o.id; }, *this, &errors);
  IndexUnique(types_, &type_ix_, "document type", [](const TypeDraft& d) { return d.t.id; }, *this, &errors);

  auto need = [&](const std::unordered_map<std::string, size_t>& ix, const std::string& id,
                  const Loc& loc, std::string_view what) {
    if (!ix.count(id)) Error(loc, "unknown " + std::string(what) + " '" + id + "'");
  };
  for (const CrlDraft& c : crls_) need(anchor_ix_, c.c.anchor, c.anchor_loc, "trust anchor");
  auto check_identity = [&](const std::optional<IdentityDraft>& d) {
    if (d && d->id.kind == CertIdentity::Kind::kSubjectUnderCa) {
      need(anchor_ix_, d->id.ca, d->ca_loc, "trust anchor");
    }
  };

  // Parents, levels and cycles.
  std::vector<int> parent(unions_.size(), -1);
  for (size_t i = 0; i < unions_.size(); ++i) {
    const UnionDraft& d = unions_[i];
    check_identity(d.seal);
    check_identity(d.tls);
    if (d.u.parent.empty()) continue;
    auto it = union_ix_.find(d.u.parent);
    if (it == union_ix_.end()) {
      Error(d.parent_loc, "unknown parent union '" + d.u.parent + "'");
      continue;
    }
    parent[i] = static_cast<int>(it->second);
  }
  std::vector<char> state(unions_.size(), 0);  // 0 new, 1 on the current path, 2 done
  std::vector<char> on_cycle(unions_.size(), 0);
  for (size_t start = 0; start < unions_.size(); ++start) {
    std::vector<size_t> path;
    int cur = static_cast<int>(start);
    while (cur >= 0 && state[cur] == 0) {
      state[cur] = 1;
      path.push_back(static_cast<size_t>(cur));
      cur = parent[cur];
    }
    if (cur >= 0 && state[cur] == 1) {
      auto begin = std::find(path.begin(), path.end(), static_cast<size_t>(cur));
      std::vector<size_t> cycle(begin, path.end());
      size_t first = *std::min_element(cycle.begin(), cycle.end());  // earliest in load order
      std::string text;
      size_t pos = std::find(cycle.begin(), cycle.end(), first) - cycle.begin();
      for (size_t k = 0; k <= cycle.size(); ++k) {
        if (!text.empty()) text += " -> ";
        text += unions_[cycle[(pos + k) % cycle.size()]].u.id;
      }
      for (size_t c : cycle) on_cycle[c] = 1;
      Error(unions_[first].parent_loc, "union hierarchy has a cycle: " + text);
    }
    for (size_t p : path) state[p] = 2;
  }
  for (size_t i = 0; i < unions_.size(); ++i) {
    if (parent[i] < 0 || on_cycle[i]) continue;
    const Union& child = unions_[i].u;
    const Union& par = unions_[parent[i]].u;
    if (static_cast<int>(par.level) >= static_cast<int>(child.level)) {
      Error(unions_[i].parent_loc, "union '" + child.id + "' (" + LevelName(child.level) +
                                       ") cannot have parent '" + par.id + "' (" +
                                       LevelName(par.level) + "): a parent must be at a higher level");
    }
  }

  for (const GroupDraft& g : groups_) {
    for (size_t k = 0; k < g.g.members.size(); ++k) need(union_ix_, g.g.members[k], g.member_locs[k], "union");
  }

  // Identities: officers' certificates and unions' seals share one namespace
  // (a signature must name one signer); TLS identities have their own.
  std::map<std::string, std::pair<Loc, std::string>> claimed, tls_claimed;
  auto claim = [&](std::map<std::string, std::pair<Loc, std::string>>& m,
                   const std::optional<IdentityDraft>& d, std::string who) {
    if (!d) return;
    auto [it, inserted] = m.try_emplace(d->id.Key(), d->loc, who);
    if (!inserted) {
      Error(d->loc, "certificate identity already claimed by " + it->second.second + " (" +
                        Where(it->second.first) + ")");
    }
  };
  // Claims are made in load order so the first claimer is the one named.
  struct Claim {
    Loc loc;
    const std::optional<IdentityDraft>* id;
    std::string who;
  };
  std::vector<Claim> claims;
  for (const UnionDraft& d : unions_) {
    claims.push_back(Claim{d.seal ? d.seal->loc : d.loc, &d.seal, "the seal of union '" + d.u.id + "'"});
  }
  for (const OfficerDraft& d : officers_) {
    check_identity(d.cert);
    need(union_ix_, d.o.union_id, d.union_loc, "union");
    claims.push_back(Claim{d.cert ? d.cert->loc : d.loc, &d.cert, "officer '" + d.o.id + "'"});
  }
  std::stable_sort(claims.begin(), claims.end(), [](const Claim& a, const Claim& b) {
    return std::tie(a.loc.file, a.loc.mark.line, a.loc.mark.column) <
           std::tie(b.loc.file, b.loc.mark.line, b.loc.mark.column);
  });
  for (const Claim& c : claims) claim(claimed, *c.id, c.who);
  for (const UnionDraft& d : unions_) claim(tls_claimed, d.tls, "the appliance of union '" + d.u.id + "'");

  for (const TypeDraft& d : types_) {
    const DocumentType& t = d.t;
    for (size_t k = 0; k < t.issuer_unions.size(); ++k) need(union_ix_, t.issuer_unions[k], d.issuer_union_locs[k], "union");
    for (size_t k = 0; k < t.issuer_groups.size(); ++k) need(group_ix_, t.issuer_groups[k], d.issuer_group_locs[k], "group");
    for (size_t k = 0; k < t.recipient_unions.size(); ++k) need(union_ix_, t.recipient_unions[k], d.recipient_union_locs[k], "union");
    for (size_t k = 0; k < t.recipient_groups.size(); ++k) need(group_ix_, t.recipient_groups[k], d.recipient_group_locs[k], "group");
  }
}

template <typename T>
void SortById(std::vector<T>* v) {
  std::sort(v->begin(), v->end(), [](const T& a, const T& b) { return a.id < b.id; });
}

std::shared_ptr<Policy> Loader::Build() {
  auto p = std::make_shared<Policy>();
  p->federation_id = federation_id_;
  p->federation_name = federation_name_;
  p->version = federation_version_;
  for (AnchorDraft& d : anchors_) p->anchors.push_back(std::move(d.a));
  for (CrlDraft& d : crls_) p->crl_sources.push_back(std::move(d.c));
  p->unions.reserve(unions_.size());
  p->officers.reserve(officers_.size());
  p->officer_union.reserve(officers_.size());
  for (UnionDraft& d : unions_) {
    d.u.has_seal = d.seal.has_value();
    if (d.seal) d.u.seal = d.seal->id;
    d.u.has_tls_identity = d.tls.has_value();
    if (d.tls) d.u.tls_identity = d.tls->id;
    p->unions.push_back(std::move(d.u));
  }
  for (GroupDraft& d : groups_) {
    std::sort(d.g.members.begin(), d.g.members.end());
    p->groups.push_back(std::move(d.g));
  }
  for (OfficerDraft& d : officers_) {
    if (d.cert) d.o.certificate = d.cert->id;
    p->officers.push_back(std::move(d.o));
  }
  for (TypeDraft& d : types_) {
    std::sort(d.t.issuer_unions.begin(), d.t.issuer_unions.end());
    std::sort(d.t.issuer_groups.begin(), d.t.issuer_groups.end());
    std::sort(d.t.recipient_unions.begin(), d.t.recipient_unions.end());
    std::sort(d.t.recipient_groups.begin(), d.t.recipient_groups.end());
    std::sort(d.t.signatures.begin(), d.t.signatures.end(),
              [](const SignatureRequirement& a, const SignatureRequirement& b) {
                return std::tie(a.roles, a.count) < std::tie(b.roles, b.count);
              });
    p->document_types.push_back(std::move(d.t));
  }
  SortById(&p->anchors);
  std::sort(p->crl_sources.begin(), p->crl_sources.end(), [](const CrlSource& a, const CrlSource& b) {
    return std::tie(a.anchor, a.url) < std::tie(b.anchor, b.url);
  });
  SortById(&p->unions);
  SortById(&p->groups);
  SortById(&p->officers);
  SortById(&p->document_types);

  for (size_t i = 0; i < p->anchors.size(); ++i) {
    p->anchor_index.emplace(p->anchors[i].id, i);
    p->anchor_by_sha256.emplace(p->anchors[i].sha256, i);
  }
  for (size_t i = 0; i < p->unions.size(); ++i) p->union_index.emplace(p->unions[i].id, i);
  for (size_t i = 0; i < p->groups.size(); ++i) p->group_index.emplace(p->groups[i].id, i);
  for (size_t i = 0; i < p->officers.size(); ++i) p->officer_index.emplace(p->officers[i].id, i);
  for (size_t i = 0; i < p->document_types.size(); ++i) p->type_index.emplace(p->document_types[i].id, i);
  p->parent_of.assign(p->unions.size(), -1);
  p->groups_of.assign(p->unions.size(), {});
  for (size_t i = 0; i < p->unions.size(); ++i) {
    const Union& u = p->unions[i];
    if (!u.parent.empty()) p->parent_of[i] = static_cast<int>(p->union_index.at(u.parent));
    if (u.has_seal) p->seal_by_identity.emplace(u.seal.Key(), i);
  }
  for (size_t g = 0; g < p->groups.size(); ++g) {
    for (const std::string& m : p->groups[g].members) p->groups_of[p->union_index.at(m)].push_back(g);
  }
  for (size_t i = 0; i < p->officers.size(); ++i) {
    p->officer_by_identity.emplace(p->officers[i].certificate.Key(), i);
    p->officer_union.push_back(p->union_index.at(p->officers[i].union_id));
  }
  p->canonical_json = CanonicalJson(*p);
  p->sha256 = Sha256Hex(p->canonical_json);
  return p;
}

}  // namespace

std::vector<Channel> DefaultChannels(const Union& u) {
  std::vector<Channel> out;
  if (!u.endpoint.empty()) out.push_back(Channel::kAppliance);
  else if (!u.email.empty()) out.push_back(Channel::kEmail);
  if (!u.webhook.empty()) out.push_back(Channel::kWebhook);
  return out;
}

std::string NormalizeName(std::string_view name) {
  std::vector<std::string> rdns;
  std::string cur;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '\\' && i + 1 < name.size()) {
      cur += c;
      cur += name[++i];
      continue;
    }
    if (c == ',') {
      rdns.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  rdns.push_back(std::move(cur));
  std::string out;
  auto trim = [](std::string_view s) {
    size_t b = s.find_first_not_of(' ');
    if (b == std::string_view::npos) return std::string_view();
    size_t e = s.find_last_not_of(' ');
    return s.substr(b, e - b + 1);
  };
  for (const std::string& rdn : rdns) {
    std::string_view r = trim(rdn);
    if (r.empty()) continue;
    if (!out.empty()) out += ", ";
    size_t eq = r.find('=');
    if (eq == std::string_view::npos) {
      out += r;
      continue;
    }
    for (char c : trim(r.substr(0, eq))) out += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    out += '=';
    out += trim(r.substr(eq + 1));
  }
  return out;
}

std::string CertIdentity::Key() const {
  switch (kind) {
    case Kind::kIssuerSerial:
      return "is:" + issuer + "\n" + serial;
    case Kind::kSpkiSha256:
      return "spki:" + spki_sha256;
    case Kind::kSubjectUnderCa:
      return "sub:" + ca + "\n" + subject;
  }
  return {};
}

const Union* Policy::FindUnion(std::string_view id) const {
  auto it = union_index.find(id);
  return it == union_index.end() ? nullptr : &unions[it->second];
}
const DocumentType* Policy::FindType(std::string_view id) const {
  auto it = type_index.find(id);
  return it == type_index.end() ? nullptr : &document_types[it->second];
}
const Officer* Policy::FindOfficer(std::string_view id) const {
  auto it = officer_index.find(id);
  return it == officer_index.end() ? nullptr : &officers[it->second];
}
bool Policy::IsAncestor(size_t a, size_t b) const {
  // The hierarchy is acyclic and strictly levelled, so this ends in <= 5 steps.
  for (int p = parent_of[b]; p >= 0; p = parent_of[p]) {
    if (static_cast<size_t>(p) == a) return true;
  }
  return false;
}
bool Policy::InGroup(size_t union_pos, size_t group_pos) const {
  const auto& g = groups_of[union_pos];
  return std::binary_search(g.begin(), g.end(), group_pos);
}

Result<std::shared_ptr<const Policy>> LoadPolicy(const std::vector<PolicySource>& sources,
                                                 std::vector<Diagnostic>* diagnostics) {
  if (sources.empty()) return Err(Status::InvalidArgument("no policy file given"));
  Loader loader(sources);
  bool all_parsed = true;
  for (size_t i = 0; i < sources.size(); ++i) {
    std::vector<Diagnostic> parse_errors;
    std::optional<YamlNode> root = ParseYaml(sources[i].text, sources[i].name, &parse_errors);
    for (Diagnostic& d : parse_errors) {
      loader.errors.push_back(LocatedError{Loc{i, Mark{d.line, d.column}}, std::move(d.message)});
    }
    if (!root) {
      all_parsed = false;
      continue;
    }
    loader.AddFile(i, *root);
  }
  // Cross-file checks on a partial registry would only add noise.
  if (all_parsed) loader.CrossCheck();
  if (!loader.errors.empty()) {
    std::stable_sort(loader.errors.begin(), loader.errors.end(),
                     [](const LocatedError& a, const LocatedError& b) {
                       return std::tie(a.loc.file, a.loc.mark.line, a.loc.mark.column) <
                              std::tie(b.loc.file, b.loc.mark.line, b.loc.mark.column);
                     });
    std::string message;
    std::vector<Diagnostic> out;
    for (const LocatedError& e : loader.errors) {
      Diagnostic d{sources[e.loc.file].name, e.loc.mark.line, e.loc.mark.column, e.message};
      if (!message.empty()) message += '\n';
      message += d.ToString();
      out.push_back(std::move(d));
    }
    if (diagnostics != nullptr) *diagnostics = std::move(out);
    return Err(Status::DataError(std::move(message)));
  }
  return std::shared_ptr<const Policy>(loader.Build());
}

Result<std::shared_ptr<const Policy>> LoadPolicyFiles(const std::vector<std::string>& paths,
                                                      std::vector<Diagnostic>* diagnostics) {
  std::vector<PolicySource> sources;
  for (const std::string& path : paths) {
    auto text = ReadFile(path, kMaxFileBytes);
    if (!text) return Err(text.error());  // names the file already
    sources.push_back(PolicySource{path, std::move(*text)});
  }
  return LoadPolicy(sources, diagnostics);
}

}  // namespace sealpost::policies
