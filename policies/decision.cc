#include "policies/decision.h"

#include <algorithm>
#include <initializer_list>

#include "policies/canonical.h"

namespace sealpost::policies {
namespace {

constexpr std::string_view kLevelVi[] = {"trung ương", "tỉnh/thành phố", "ngành", "quận/huyện",
                                         "cơ sở"};
constexpr std::string_view kRoleEn[] = {"chair",      "vice-chair", "standing committee member",
                                        "accountant", "treasurer",  "clerk",
                                        "inspector",  "executive committee member"};
constexpr std::string_view kRoleVi[] = {"Chủ tịch",  "Phó Chủ tịch", "Ủy viên Ban Thường vụ",
                                        "Kế toán",   "Thủ quỹ",      "Văn thư",
                                        "Ủy viên Ủy ban Kiểm tra", "Ủy viên Ban Chấp hành"};
constexpr std::string_view kRelationEn[] = {"a direct subordinate", "a subordinate",
                                            "the direct superior",  "a superior",
                                            "a sibling",            "the issuer itself"};
constexpr std::string_view kRelationVi[] = {"công đoàn cấp dưới trực tiếp", "công đoàn cấp dưới",
                                            "công đoàn cấp trên trực tiếp", "công đoàn cấp trên",
                                            "công đoàn cùng cấp trên",       "chính đơn vị ban hành"};

// Joins pieces with one allocation: decisions build a few dozen messages
// and must stay within microseconds.
std::string Cat(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (std::string_view p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (std::string_view p : parts) out.append(p);
  return out;
}
std::string Q(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string_view LevelEn(Level l) { return kLevelNames[static_cast<size_t>(l)]; }
std::string_view LevelVi(Level l) { return kLevelVi[static_cast<size_t>(l)]; }

class Builder {
 public:
  explicit Builder(Decision* d) : d_(d) {}
  void Add(RuleKind kind, bool passed, std::string en, std::string vi) {
    d_->rules.push_back(RuleResult{kind, passed, true, std::move(en), std::move(vi)});
    if (!passed) d_->allowed = false;
  }
  void NotChecked(RuleKind kind, std::string en, std::string vi) {
    d_->rules.push_back(RuleResult{kind, false, false, std::move(en), std::move(vi)});
  }

 private:
  Decision* d_;
};

std::string RolesText(const std::vector<Role>& roles, bool vi) {
  std::string out;
  for (size_t i = 0; i < roles.size(); ++i) {
    if (i > 0) out += i + 1 == roles.size() ? (vi ? " hoặc " : " or ") : ", ";
    out += RoleLabel(roles[i], vi);
  }
  return out;
}

std::string DateRange(const Mandate& m, bool vi) {
  std::string until = m.until_text.empty() ? (vi ? "không thời hạn" : "open-ended") : m.until_text;
  return m.from_text + (vi ? " đến " : " to ") + until;
}

// The registry entries a signer's certificate matches.
struct Match {
  std::vector<size_t> officers;
  std::vector<size_t> seals;  // union positions
};

Match MatchSigner(const Policy& p, const SignerIdentity& s) {
  Match m;
  std::string key;  // reused: one allocation for all lookups of this signer
  auto look = [&] {
    if (auto it = p.officer_by_identity.find(key); it != p.officer_by_identity.end()) {
      if (std::find(m.officers.begin(), m.officers.end(), it->second) == m.officers.end()) {
        m.officers.push_back(it->second);
      }
    }
    if (auto it = p.seal_by_identity.find(key); it != p.seal_by_identity.end()) {
      if (std::find(m.seals.begin(), m.seals.end(), it->second) == m.seals.end()) {
        m.seals.push_back(it->second);
      }
    }
  };
  key.reserve(256);
  if (!s.issuer.empty() && !s.serial.empty()) {
    key.assign("is:").append(s.issuer).append("\n").append(s.serial);
    look();
  }
  if (!s.spki_sha256.empty()) {
    key.assign("spki:").append(s.spki_sha256);
    look();
  }
  if (!s.subject.empty()) {
    for (const std::string& ca : s.chain_sha256) {
      if (auto it = p.anchor_by_sha256.find(ca); it != p.anchor_by_sha256.end()) {
        key.assign("sub:").append(p.anchors[it->second].id).append("\n").append(s.subject);
        look();
      }
    }
  }
  return m;
}

// Kuhn's augmenting paths: slot -> officer, each officer used once.
bool Augment(size_t slot, const std::vector<std::vector<size_t>>& can, std::vector<int>* owner_of,
             std::vector<char>* seen) {
  for (size_t o : can[slot]) {
    if ((*seen)[o]) continue;
    (*seen)[o] = 1;
    if ((*owner_of)[o] < 0 || Augment(static_cast<size_t>((*owner_of)[o]), can, owner_of, seen)) {
      (*owner_of)[o] = static_cast<int>(slot);
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view RoleLabel(Role role, bool vietnamese) {
  return vietnamese ? kRoleVi[static_cast<size_t>(role)] : kRoleEn[static_cast<size_t>(role)];
}

std::string_view RuleKindName(RuleKind kind) {
  switch (kind) {
    case RuleKind::kIssuerKnown: return "issuer_known";
    case RuleKind::kTypeKnown: return "type_known";
    case RuleKind::kIssuer: return "issuer";
    case RuleKind::kRecipient: return "recipient";
    case RuleKind::kSigner: return "signer";
    case RuleKind::kSignatures: return "signatures";
    case RuleKind::kSeal: return "seal";
    case RuleKind::kSize: return "size";
    case RuleKind::kMediaType: return "media_type";
    case RuleKind::kTimestamp: return "timestamp";
  }
  return "unknown";
}

Decision Decide(const Policy& p, const DecisionRequest& req) {
  Decision d;
  d.rules.reserve(8 + req.recipients.size() + req.signers.size());
  d.allowed = true;
  d.policy_sha256 = p.sha256;
  Builder b(&d);

  auto issuer_it = p.union_index.find(req.issuer);
  if (issuer_it == p.union_index.end()) {
    b.Add(RuleKind::kIssuerKnown, false,
          Cat({"Issuing union ", Q(req.issuer), " is not in the federation registry."}),
          Cat({"Công đoàn ban hành ", Q(req.issuer), " không có trong danh sách của liên đoàn."}));
    return d;
  }
  const size_t issuer_pos = issuer_it->second;
  const Union& issuer = p.unions[issuer_pos];
  b.Add(RuleKind::kIssuerKnown, true,
        Cat({issuer.name, " is in the federation registry (", LevelEn(issuer.level), " level)."}),
        Cat({issuer.name, " có trong danh sách của liên đoàn (cấp ", LevelVi(issuer.level), ")."}));
  const DocumentType* type = p.FindType(req.document_type);
  if (type == nullptr) {
    b.Add(RuleKind::kTypeKnown, false,
          Cat({"Document type ", Q(req.document_type), " is not defined by the policy."}),
          Cat({"Loại văn bản ", Q(req.document_type), " không được quy định trong chính sách."}));
    return d;
  }
  d.retention_years = type->retention_years;
  b.Add(RuleKind::kTypeKnown, true,
        Cat({"Document type ", type->name_en, " is defined; kept ", std::to_string(type->retention_years), " years."}),
        Cat({"Loại văn bản ", type->name, " có trong chính sách; lưu trữ ", std::to_string(type->retention_years), " năm."}));

  // Who may issue.
  {
    std::string why_en, why_vi;
    if (std::find(type->issuer_levels.begin(), type->issuer_levels.end(), issuer.level) !=
        type->issuer_levels.end()) {
      why_en = Cat({"unions at ", LevelEn(issuer.level), " level may issue it"});
      why_vi = Cat({"công đoàn cấp ", LevelVi(issuer.level), " được ban hành"});
    } else if (std::binary_search(type->issuer_unions.begin(), type->issuer_unions.end(), issuer.id)) {
      why_en = "it is named as an issuer";
      why_vi = "được chỉ định là đơn vị ban hành";
    } else {
      for (const std::string& g : type->issuer_groups) {
        size_t gpos = p.group_index.at(g);
        if (p.InGroup(issuer_pos, gpos)) {
          why_en = "it belongs to group " + p.groups[gpos].name;
          why_vi = "thuộc nhóm " + p.groups[gpos].name;
          break;
        }
      }
    }
    if (!why_en.empty()) {
      b.Add(RuleKind::kIssuer, true, Cat({issuer.name, " may issue ", type->name_en, ": ", why_en, "."}),
            Cat({issuer.name, " được ban hành ", type->name, ": ", why_vi, "."}));
    } else {
      b.Add(RuleKind::kIssuer, false,
            Cat({issuer.name, " (", LevelEn(issuer.level), " level) may not issue ", type->name_en, "."}),
            Cat({issuer.name, " (cấp ", LevelVi(issuer.level), ") không được ban hành ", type->name, "."}));
    }
  }

  // Recipients.
  if (req.recipients.empty()) {
    b.Add(RuleKind::kRecipient, false, "No recipient is given.", "Chưa có đơn vị nhận.");
  }
  for (const std::string& rid : req.recipients) {
    auto it = p.union_index.find(rid);
    if (it == p.union_index.end()) {
      b.Add(RuleKind::kRecipient, false, Cat({"Recipient ", Q(rid), " is not in the federation registry."}),
            Cat({"Đơn vị nhận ", Q(rid), " không có trong danh sách của liên đoàn."}));
      continue;
    }
    const size_t rpos = it->second;
    const Union& rec = p.unions[rpos];
    std::string why_en, why_vi;
    for (Relation rel : type->recipient_relations) {
      bool ok = false;
      switch (rel) {
        case Relation::kChildren: ok = p.parent_of[rpos] == static_cast<int>(issuer_pos); break;
        case Relation::kDescendants: ok = p.IsAncestor(issuer_pos, rpos); break;
        case Relation::kParent: ok = p.parent_of[issuer_pos] == static_cast<int>(rpos); break;
        case Relation::kAncestors: ok = p.IsAncestor(rpos, issuer_pos); break;
        case Relation::kSiblings:
          ok = rpos != issuer_pos && p.parent_of[rpos] >= 0 && p.parent_of[rpos] == p.parent_of[issuer_pos];
          break;
        case Relation::kSelf: ok = rpos == issuer_pos; break;
      }
      if (ok) {
        why_en = Cat({"it is ", kRelationEn[static_cast<size_t>(rel)], " of the issuer"});
        why_vi = Cat({"là ", kRelationVi[static_cast<size_t>(rel)], " của đơn vị ban hành"});
        break;
      }
    }
    if (why_en.empty() && std::binary_search(type->recipient_unions.begin(), type->recipient_unions.end(), rid)) {
      why_en = "it is named as a recipient";
      why_vi = "được chỉ định là đơn vị nhận";
    }
    if (why_en.empty()) {
      for (const std::string& g : type->recipient_groups) {
        size_t gpos = p.group_index.at(g);
        if (p.InGroup(rpos, gpos)) {
          why_en = "it belongs to group " + p.groups[gpos].name;
          why_vi = "thuộc nhóm " + p.groups[gpos].name;
          break;
        }
      }
    }
    if (!why_en.empty()) {
      b.Add(RuleKind::kRecipient, true, Cat({rec.name, " may receive it: ", why_en, "."}),
            Cat({rec.name, " được nhận: ", why_vi, "."}));
    } else {
      b.Add(RuleKind::kRecipient, false,
            Cat({rec.name, " may not receive ", type->name_en, " from ", issuer.name, "."}),
            Cat({rec.name, " không được nhận ", type->name, " từ ", issuer.name, "."}));
    }
  }

  // Signers: each must be an officer (mandate in force) or the seal of the
  // issuing union. Fail closed on anything else.
  std::vector<size_t> valid_officers;
  bool sealed = false;
  for (const SignerIdentity& s : req.signers) {
    Match m = MatchSigner(p, s);
    const std::string& who = s.display_name.empty() ? s.subject : s.display_name;
    if (m.officers.size() + m.seals.size() > 1) {
      b.Add(RuleKind::kSigner, false,
            Cat({"Signer ", Q(who), " matches more than one registry entry; the policy is ambiguous."}),
            Cat({"Người ký ", Q(who), " khớp với nhiều mục trong danh sách; chính sách không rõ ràng."}));
      continue;
    }
    if (m.officers.size() == 1) {
      const size_t opos = m.officers[0];
      const Officer& o = p.officers[opos];
      const Union& ou = p.unions[p.officer_union[opos]];
      if (p.officer_union[opos] != issuer_pos) {
        b.Add(RuleKind::kSigner, false,
              Cat({o.name, " signed, but is an officer of ", ou.name, ", not of ", issuer.name, "."}),
              Cat({o.name, " đã ký nhưng là cán bộ của ", ou.name, ", không phải của ", issuer.name, "."}));
      } else if (req.time < o.mandate.from || req.time >= o.mandate.until) {
        b.Add(RuleKind::kSigner, false,
              Cat({o.name, " (", RoleLabel(o.role, false), ") signed outside the mandate (", DateRange(o.mandate, false), ")."}),
              Cat({o.name, " (", RoleLabel(o.role, true), ") ký ngoài nhiệm kỳ (", DateRange(o.mandate, true), ")."}));
      } else {
        if (std::find(valid_officers.begin(), valid_officers.end(), opos) == valid_officers.end()) {
          valid_officers.push_back(opos);
        }
        b.Add(RuleKind::kSigner, true,
              Cat({"Signed by ", o.name, " (", RoleLabel(o.role, false), ") of ", issuer.name, "."}),
              Cat({"Ký bởi ", o.name, " (", RoleLabel(o.role, true), ") của ", issuer.name, "."}));
      }
      continue;
    }
    if (m.seals.size() == 1) {
      const Union& su = p.unions[m.seals[0]];
      if (m.seals[0] != issuer_pos) {
        b.Add(RuleKind::kSigner, false,
              Cat({"The seal of ", su.name, " is on it, but the issuer is ", issuer.name, "."}),
              Cat({"Có con dấu của ", su.name, " nhưng đơn vị ban hành là ", issuer.name, "."}));
      } else {
        sealed = true;
        b.Add(RuleKind::kSigner, true, Cat({"Sealed by ", issuer.name, "."}),
              Cat({"Đóng dấu bởi ", issuer.name, "."}));
      }
      continue;
    }
    b.Add(RuleKind::kSigner, false,
          Cat({"Signer ", Q(who), " is not registered in the policy as an officer or a seal."}),
          Cat({"Người ký ", Q(who), " không có trong danh sách cán bộ hoặc con dấu của chính sách."}));
  }

  // Signature requirements: distinct officers fill the slots (a matching, so
  // one officer never counts twice).
  if (!type->signatures.empty()) {
    std::vector<size_t> slot_req;
    std::vector<std::vector<size_t>> can;
    for (size_t r = 0; r < type->signatures.size(); ++r) {
      const SignatureRequirement& sr = type->signatures[r];
      std::vector<size_t> eligible;
      for (size_t k = 0; k < valid_officers.size(); ++k) {
        Role role = p.officers[valid_officers[k]].role;
        if (std::find(sr.roles.begin(), sr.roles.end(), role) != sr.roles.end()) eligible.push_back(k);
      }
      for (int c = 0; c < sr.count; ++c) {
        slot_req.push_back(r);
        can.push_back(eligible);
      }
    }
    std::vector<int> owner_of(valid_officers.size(), -1);
    for (size_t slot = 0; slot < can.size(); ++slot) {
      std::vector<char> seen(valid_officers.size(), 0);
      Augment(slot, can, &owner_of, &seen);
    }
    for (size_t r = 0; r < type->signatures.size(); ++r) {
      const SignatureRequirement& sr = type->signatures[r];
      std::string names;
      int found = 0;
      for (size_t k = 0; k < owner_of.size(); ++k) {
        if (owner_of[k] >= 0 && slot_req[static_cast<size_t>(owner_of[k])] == r) {
          if (!names.empty()) names += ", ";
          names += p.officers[valid_officers[k]].name;
          ++found;
        }
      }
      std::string n = std::to_string(sr.count);
      std::string head_en = "Requires " + n + (sr.count == 1 ? " signature" : " signatures") +
                            " of " + RolesText(sr.roles, false);
      std::string head_vi = "Cần " + n + " chữ ký của " + RolesText(sr.roles, true);
      if (found >= sr.count) {
        b.Add(RuleKind::kSignatures, true, Cat({head_en, ": ", names, "."}), Cat({head_vi, ": ", names, "."}));
      } else {
        b.Add(RuleKind::kSignatures, false, Cat({head_en, ": found ", std::to_string(found), "."}),
              Cat({head_vi, ": chỉ có ", std::to_string(found), "."}));
      }
    }
  }

  if (type->seal_required) {
    if (sealed) {
      b.Add(RuleKind::kSeal, true, Cat({"The seal of ", issuer.name, " is present."}),
            Cat({"Có con dấu của ", issuer.name, "."}));
    } else if (!issuer.has_seal) {
      b.Add(RuleKind::kSeal, false,
            Cat({type->name_en, " requires the seal of ", issuer.name, ", which has none registered."}),
            Cat({type->name, " cần con dấu của ", issuer.name, " nhưng đơn vị chưa đăng ký con dấu."}));
    } else {
      b.Add(RuleKind::kSeal, false, Cat({"The seal of ", issuer.name, " is required but missing."}),
            Cat({"Thiếu con dấu của ", issuer.name, " (bắt buộc)."}));
    }
  }

  if (type->max_size_bytes > 0) {
    std::string max = std::to_string(type->max_size_bytes);
    if (!req.size) {
      b.NotChecked(RuleKind::kSize, Cat({"Size not checked (not given); the limit is ", max, " bytes."}),
                   Cat({"Chưa kiểm tra dung lượng (không có thông tin); giới hạn ", max, " byte."}));
    } else if (*req.size <= type->max_size_bytes) {
      std::string size = std::to_string(*req.size);
      b.Add(RuleKind::kSize, true, Cat({"Size ", size, " bytes is within the limit of ", max, " bytes."}),
            Cat({"Dung lượng ", size, " byte không vượt quá giới hạn ", max, " byte."}));
    } else {
      std::string size = std::to_string(*req.size);
      b.Add(RuleKind::kSize, false, Cat({"Size ", size, " bytes exceeds the limit of ", max, " bytes."}),
            Cat({"Dung lượng ", size, " byte vượt quá giới hạn ", max, " byte."}));
    }
  }

  if (!type->media_types.empty()) {
    auto allowed_list = [&] {
      std::string list;
      for (const std::string& m : type->media_types) {
        if (!list.empty()) list += ", ";
        list += m;
      }
      return list;
    };
    if (!req.media_type) {
      std::string list = allowed_list();
      b.NotChecked(RuleKind::kMediaType, Cat({"Media type not checked (not given); allowed: ", list, "."}),
                   Cat({"Chưa kiểm tra định dạng (không có thông tin); cho phép: ", list, "."}));
    } else {
      std::string_view raw = req.media_type->substr(0, req.media_type->find(';'));
      while (!raw.empty() && raw.back() == ' ') raw.remove_suffix(1);
      std::string mt(raw);
      for (char& c : mt) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      if (std::binary_search(type->media_types.begin(), type->media_types.end(), mt)) {
        b.Add(RuleKind::kMediaType, true, Cat({"Media type ", mt, " is allowed."}),
              Cat({"Định dạng ", mt, " được phép."}));
      } else {
        std::string list = allowed_list();
        std::string shown = mt.empty() ? "(none)" : mt;
        b.Add(RuleKind::kMediaType, false, Cat({"Media type ", shown, " is not allowed (allowed: ", list, ")."}),
              Cat({"Định dạng ", (mt.empty() ? std::string("(không có)") : mt), " không được phép (cho phép: ", list, ")."}));
      }
    }
  }

  if (type->timestamp_required) {
    if (req.timestamped) {
      b.Add(RuleKind::kTimestamp, true, "A trusted timestamp is present.", "Có dấu thời gian tin cậy.");
    } else {
      b.Add(RuleKind::kTimestamp, false, "A trusted timestamp is required but missing.",
            "Thiếu dấu thời gian tin cậy (bắt buộc).");
    }
  }
  return d;
}

const RuleResult* Decision::FirstFailure() const {
  for (const RuleResult& r : rules) {
    if (r.checked && !r.passed) return &r;
  }
  return nullptr;
}

std::string Decision::Explain(Lang lang) const {
  bool vi = lang == Lang::kVi;
  std::string out = allowed ? (vi ? "ĐƯỢC PHÉP" : "ALLOWED") : (vi ? "KHÔNG ĐƯỢC PHÉP" : "DENIED");
  out += vi ? " theo chính sách " : " by policy ";
  out += policy_sha256.substr(0, 16);
  out += '\n';
  for (const RuleResult& r : rules) {
    out += !r.checked ? "  [--]   " : r.passed ? "  [ok]   " : "  [FAIL] ";
    out += vi ? r.vi : r.en;
    out += '\n';
  }
  return out;
}

std::string Decision::ToJson() const {
  std::string out = "{\"decision\":";
  out += allowed ? "\"allow\"" : "\"deny\"";
  out += ",\"policy_sha256\":" + JsonString(policy_sha256);
  out += ",\"retention_years\":" + std::to_string(retention_years);
  out += ",\"rules\":[";
  for (size_t i = 0; i < rules.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"en\":" + JsonString(rules[i].en);
    out += ",\"result\":";
    out += !rules[i].checked ? "\"not_checked\"" : rules[i].passed ? "\"pass\"" : "\"fail\"";
    out += ",\"rule\":" + JsonString(RuleKindName(rules[i].kind));
    out += ",\"vi\":" + JsonString(rules[i].vi) + "}";
  }
  out += "]}";
  return out;
}

}  // namespace sealpost::policies
