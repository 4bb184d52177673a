// Decision tests: a table of requests against one small federation, covering
// every rule kind with both verdicts, plus real certificates (test PKI) mapped
// to identities and checked against `openssl`'s own SPKI hash.
#include "policies/decision.h"

#include <gtest/gtest.h>

#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "crypto/certs.h"
#include "policies/verdict.h"
#include "tests/support/test_pki.h"

namespace sealpost::policies {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::TestCa;

constexpr const char* kCaSha = "cacacacacacacacacacacacacacacacacacacacacacacacacacacacacacacaca";
constexpr const char* kVnpt = "CN=VNPT Certification Authority, O=VNPT Group, C=VN";

std::string Hex64(char c) { return std::string(64, c); }

// Vietnam time (UTC+07:00) of a date at hh:mm:ss.
int64_t VnTime(int y, int m, int d, int hh = 12, int mm = 0, int ss = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  return static_cast<int64_t>(timegm(&tm)) - 7 * 3600;
}

std::string PolicyYaml() {
  return std::string(R"(federation: {id: t, name: "Liên đoàn thử nghiệm"}
trust:
  anchors:
    - id: test-ca
      name: "Test CA"
      sha256: ")") + kCaSha + R"("
unions:
  - {id: prov, name: "Liên đoàn Lao động tỉnh", level: province, seal: {spki_sha256: ")" + Hex64('1') + R"("}}
  - {id: dist, name: "Liên đoàn Lao động huyện", level: district, parent: prov, seal: {spki_sha256: ")" + Hex64('2') + R"("}}
  - {id: dist2, name: "Liên đoàn Lao động huyện Hai", level: district, parent: prov}
  - {id: cs1, name: "Công đoàn cơ sở Một", level: grassroots, parent: dist, seal: {spki_sha256: ")" + Hex64('3') + R"("}}
  - {id: cs2, name: "Công đoàn cơ sở Hai", level: grassroots, parent: dist, seal: {spki_sha256: ")" + Hex64('4') + R"("}}
  - {id: cs3, name: "Công đoàn cơ sở Ba", level: grassroots, parent: dist2}
groups:
  - {id: edu, name: "Khối Giáo dục", members: [cs2, cs3]}
officers:
  - {id: dist-chair, name: "Nguyễn Văn Chủ", role: chair, union: dist,
     certificate: {spki_sha256: ")" + Hex64('a') + R"("}, mandate: {from: 2024-01-01, until: 2026-12-31}}
  - {id: dist-vice, name: "Trần Thị Phó", role: vice-chair, union: dist,
     certificate: {issuer: ")" + kVnpt + R"(", serial: "5403AB"}, mandate: {from: 2024-01-01}}
  - {id: dist-acct, name: "Lê Thị Kế", role: accountant, union: dist,
     certificate: {subject: "CN=Lê Thị Kế, UID=CCCD:022186001234, C=VN", ca: test-ca}, mandate: {from: 2024-01-01}}
  - {id: dist-old-chair, name: "Phạm Văn Cũ", role: chair, union: dist,
     certificate: {spki_sha256: ")" + Hex64('b') + R"("}, mandate: {from: 2019-01-01, until: 2023-12-31}}
  - {id: cs1-chair, name: "Hoàng Văn Một", role: chair, union: cs1,
     certificate: {spki_sha256: ")" + Hex64('c') + R"("}, mandate: {from: 2024-01-01}}
  - {id: cs1-clerk, name: "Vũ Thị Thư", role: clerk, union: cs1,
     certificate: {spki_sha256: ")" + Hex64('d') + R"("}, mandate: {from: 2024-01-01}}
  - {id: cs2-chair, name: "Đặng Văn Hai", role: chair, union: cs2,
     certificate: {spki_sha256: ")" + Hex64('e') + R"("}, mandate: {from: 2024-01-01}}
  - {id: prov-chair, name: "Bùi Thị Tỉnh", role: chair, union: prov,
     certificate: {spki_sha256: ")" + Hex64('f') + R"("}, mandate: {from: 2024-01-01}}
  - {id: dist-clash, name: "Đỗ Văn Trùng", role: clerk, union: dist,
     certificate: {issuer: ")" + kVnpt + R"(", serial: "77"}, mandate: {from: 2024-01-01}}
document_types:
  - id: directive
    name: "Chỉ thị"
    name_en: "Directive"
    issuers: {levels: [district]}
    recipients: {relations: [children]}
    signatures: {officers: [{roles: [chair, vice-chair], count: 1}], seal: true}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 20
  - id: provincial-policy
    name: "Quy chế"
    issuers: {unions: [prov]}
    recipients: {relations: [descendants]}
    signatures: {officers: [{roles: [chair], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 50
  - id: report
    name: "Báo cáo"
    issuers: {levels: [grassroots]}
    recipients: {relations: [parent]}
    signatures: {officers: [{roles: [chair], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 10
  - id: upward
    name: "Kiến nghị"
    issuers: {levels: [grassroots]}
    recipients: {relations: [ancestors]}
    signatures: {officers: [{roles: [chair], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 10
  - id: sibling-note
    name: "Thư"
    issuers: {levels: [grassroots]}
    recipients: {relations: [siblings]}
    signatures: {officers: [{roles: [chair], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 10
  - id: minutes
    name: "Biên bản"
    issuers: {levels: [grassroots, district]}
    recipients: {relations: [self]}
    signatures: {officers: [{roles: [chair], count: 1}, {roles: [clerk, accountant], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 10
  - id: edu-guide
    name: "Hướng dẫn"
    issuers: {groups: [edu]}
    recipients: {groups: [edu], unions: [dist]}
    signatures: {officers: [{roles: [chair], count: 1}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 5
  - id: two-signers
    name: "Nghị quyết"
    issuers: {levels: [district]}
    recipients: {relations: [children]}
    signatures: {officers: [{roles: [chair, vice-chair], count: 2}]}
    max_size_bytes: 1000
    media_types: [application/pdf]
    retention_years: 10
  - id: financial-report
    name: "Báo cáo tài chính"
    issuers: {levels: [district]}
    recipients: {relations: [parent]}
    signatures: {officers: [{roles: [chair], count: 1}, {roles: [accountant], count: 1}], seal: true}
    max_size_bytes: 1000
    media_types: [application/pdf, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet]
    retention_years: 20
    timestamp_required: true
)";
}

std::map<std::string, SignerIdentity> Signers() {
  std::map<std::string, SignerIdentity> m;
  auto spki = [](char c, std::string name) {
    SignerIdentity s;
    s.spki_sha256 = Hex64(c);
    s.display_name = std::move(name);
    return s;
  };
  m["dist-chair"] = spki('a', "Nguyễn Văn Chủ");
  m["dist-old-chair"] = spki('b', "Phạm Văn Cũ");
  m["cs1-chair"] = spki('c', "Hoàng Văn Một");
  m["cs1-clerk"] = spki('d', "Vũ Thị Thư");
  m["cs2-chair"] = spki('e', "Đặng Văn Hai");
  m["prov-chair"] = spki('f', "Bùi Thị Tỉnh");
  m["prov-seal"] = spki('1', "Liên đoàn Lao động tỉnh");
  m["dist-seal"] = spki('2', "Liên đoàn Lao động huyện");
  m["cs1-seal"] = spki('3', "Công đoàn cơ sở Một");
  m["stranger"] = spki('9', "Người lạ");
  SignerIdentity vice;
  vice.issuer = kVnpt;
  vice.serial = "5403AB";
  vice.spki_sha256 = Hex64('5');
  vice.display_name = "Trần Thị Phó";
  m["dist-vice"] = vice;
  SignerIdentity acct;
  acct.subject = "CN=Lê Thị Kế, UID=CCCD:022186001234, C=VN";
  acct.issuer = "CN=Intermediate, C=VN";
  acct.serial = "1";
  acct.spki_sha256 = Hex64('6');
  acct.chain_sha256 = {Hex64('7'), kCaSha};
  m["dist-acct"] = acct;
  SignerIdentity wrong_ca = acct;
  wrong_ca.chain_sha256 = {Hex64('8')};
  m["dist-acct-other-ca"] = wrong_ca;
  // Matches dist-chair by SPKI and dist-clash by issuer+serial: ambiguous.
  SignerIdentity clash = m["dist-chair"];
  clash.issuer = kVnpt;
  clash.serial = "77";
  m["clash"] = clash;
  return m;
}

struct Row {
  const char* name;
  const char* issuer;
  const char* type;
  std::vector<std::string> to;
  std::vector<std::string> signers;
  bool allowed;
  // The rule kind whose verdict this row is about, and that verdict.
  RuleKind kind;
  bool kind_passed;
  std::optional<uint64_t> size = 500;
  std::optional<std::string> media = std::string("application/pdf");
  int64_t time = VnTime(2025, 6, 1);
  bool timestamped = false;
};

std::vector<Row> Rows() {
  return {
      {"DirectiveToChildrenSignedAndSealedAllowed", "dist", "directive", {"cs1", "cs2"}, {"dist-chair", "dist-seal"}, true, RuleKind::kIssuer, true},
      {"UnknownIssuerDenied", "cs-x", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kIssuerKnown, false},
      {"KnownIssuerPasses", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kIssuerKnown, true},
      {"UnknownTypeDenied", "dist", "circular", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kTypeKnown, false},
      {"KnownTypePasses", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kTypeKnown, true},
      {"IssuerLevelNotAllowedDenied", "cs1", "directive", {"cs2"}, {"cs1-chair", "cs1-seal"}, false, RuleKind::kIssuer, false},
      {"NamedIssuerAllowed", "prov", "provincial-policy", {"cs1"}, {"prov-chair"}, true, RuleKind::kIssuer, true},
      {"UnnamedIssuerDenied", "dist", "provincial-policy", {"cs1"}, {"dist-chair"}, false, RuleKind::kIssuer, false},
      {"GroupIssuerAllowed", "cs2", "edu-guide", {"cs3"}, {"cs2-chair"}, true, RuleKind::kIssuer, true},
      {"IssuerOutsideGroupDenied", "cs1", "edu-guide", {"cs3"}, {"cs1-chair"}, false, RuleKind::kIssuer, false},
      {"RecipientChildAllowed", "dist", "directive", {"cs2"}, {"dist-chair", "dist-seal"}, true, RuleKind::kRecipient, true},
      {"RecipientNotChildDenied", "dist", "directive", {"cs1", "cs3"}, {"dist-chair", "dist-seal"}, false, RuleKind::kRecipient, false},
      {"RecipientUnknownDenied", "dist", "directive", {"cs-x"}, {"dist-chair", "dist-seal"}, false, RuleKind::kRecipient, false},
      {"NoRecipientDenied", "dist", "directive", {}, {"dist-chair", "dist-seal"}, false, RuleKind::kRecipient, false},
      {"RecipientDescendantAllowed", "prov", "provincial-policy", {"cs1", "dist"}, {"prov-chair"}, true, RuleKind::kRecipient, true},
      {"RecipientParentAllowed", "cs1", "report", {"dist"}, {"cs1-chair"}, true, RuleKind::kRecipient, true},
      {"RecipientGrandparentNotParentDenied", "cs1", "report", {"prov"}, {"cs1-chair"}, false, RuleKind::kRecipient, false},
      {"RecipientAncestorAllowed", "cs1", "upward", {"prov"}, {"cs1-chair"}, true, RuleKind::kRecipient, true},
      {"RecipientSiblingAllowed", "cs1", "sibling-note", {"cs2"}, {"cs1-chair"}, true, RuleKind::kRecipient, true},
      {"RecipientCousinNotSiblingDenied", "cs1", "sibling-note", {"cs3"}, {"cs1-chair"}, false, RuleKind::kRecipient, false},
      {"RecipientSelfNotSiblingDenied", "cs1", "sibling-note", {"cs1"}, {"cs1-chair"}, false, RuleKind::kRecipient, false},
      {"RecipientSelfAllowed", "cs1", "minutes", {"cs1"}, {"cs1-chair", "cs1-clerk"}, true, RuleKind::kRecipient, true},
      {"RecipientInGroupAndNamedAllowed", "cs2", "edu-guide", {"cs3", "dist"}, {"cs2-chair"}, true, RuleKind::kRecipient, true},
      {"RecipientOutsideGroupDenied", "cs2", "edu-guide", {"cs1"}, {"cs2-chair"}, false, RuleKind::kRecipient, false},
      {"SignerBySpkiAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kSigner, true},
      {"SignerByIssuerSerialAllowed", "dist", "directive", {"cs1"}, {"dist-vice", "dist-seal"}, true, RuleKind::kSigner, true},
      {"SignerUnknownDenied", "dist", "directive", {"cs1"}, {"stranger", "dist-chair", "dist-seal"}, false, RuleKind::kSigner, false},
      {"SignerOfOtherUnionDenied", "dist", "directive", {"cs1"}, {"cs1-chair", "dist-chair", "dist-seal"}, false, RuleKind::kSigner, false},
      {"SignerMandateEndedDenied", "dist", "directive", {"cs1"}, {"dist-old-chair", "dist-seal"}, false, RuleKind::kSigner, false},
      {"SignerSubjectUnderOtherCaDenied", "dist", "minutes", {"dist"}, {"dist-chair", "dist-acct-other-ca"}, false, RuleKind::kSigner, false},
      {"SignerMatchingTwoEntriesDenied", "dist", "directive", {"cs1"}, {"clash", "dist-seal"}, false, RuleKind::kSigner, false},
      {"SealOfOtherUnionDenied", "dist", "directive", {"cs1"}, {"dist-chair", "cs1-seal"}, false, RuleKind::kSigner, false},
      {"RequiredRolesSignedAllowed", "dist", "minutes", {"dist"}, {"dist-chair", "dist-acct"}, true, RuleKind::kSignatures, true},
      {"RequiredRoleMissingDenied", "dist", "minutes", {"dist"}, {"dist-chair"}, false, RuleKind::kSignatures, false},
      {"TwoDistinctOfficersAllowed", "dist", "two-signers", {"cs1"}, {"dist-chair", "dist-vice"}, true, RuleKind::kSignatures, true},
      {"SameOfficerTwiceCountsOnceDenied", "dist", "two-signers", {"cs1"}, {"dist-chair", "dist-chair"}, false, RuleKind::kSignatures, false},
      {"SealPresentAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kSeal, true},
      {"SealMissingDenied", "dist", "directive", {"cs1"}, {"dist-chair"}, false, RuleKind::kSeal, false},
      {"SizeAtLimitAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kSize, true, 1000},
      {"SizeOverLimitDenied", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kSize, false, 1001},
      {"MediaTypeWithParametersAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kMediaType, true, 10, "Application/PDF; name=x.pdf"},
      {"MediaTypeNotListedDenied", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kMediaType, false, 10, "text/plain"},
      {"TimestampPresentAllowed", "dist", "financial-report", {"prov"}, {"dist-chair", "dist-acct", "dist-seal"}, true, RuleKind::kTimestamp, true, 10, "application/pdf", VnTime(2025, 6, 1), true},
      {"TimestampMissingDenied", "dist", "financial-report", {"prov"}, {"dist-chair", "dist-acct", "dist-seal"}, false, RuleKind::kTimestamp, false, 10, "application/pdf", VnTime(2025, 6, 1), false},
      {"MandateLastSecondAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kSigner, true, 10, "application/pdf", VnTime(2026, 12, 31, 23, 59, 59)},
      {"MandateDayAfterDenied", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kSigner, false, 10, "application/pdf", VnTime(2027, 1, 1, 0, 0, 0)},
      {"MandateBeforeStartDenied", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, false, RuleKind::kSigner, false, 10, "application/pdf", VnTime(2023, 12, 31, 23, 59, 59)},
      {"SizeAndMediaUnknownNotCheckedAllowed", "dist", "directive", {"cs1"}, {"dist-chair", "dist-seal"}, true, RuleKind::kSize, false, std::nullopt, std::nullopt},
  };
}

class PolicyDecisionTest : public ::testing::TestWithParam<Row> {
 protected:
  static void SetUpTestSuite() {
    std::vector<Diagnostic> diags;
    auto p = LoadPolicy({PolicySource{"decision.yaml", PolicyYaml()}}, &diags);
    for (const Diagnostic& d : diags) ADD_FAILURE() << d.ToString();
    ASSERT_TRUE(p.has_value());
    policy_ = new std::shared_ptr<const Policy>(*p);
  }
  static void TearDownTestSuite() {
    delete policy_;
    policy_ = nullptr;
  }
  static std::shared_ptr<const Policy>* policy_;
};
std::shared_ptr<const Policy>* PolicyDecisionTest::policy_ = nullptr;

TEST_P(PolicyDecisionTest, DecideGivesExpectedVerdictAndRule) {
  ASSERT_NE(policy_, nullptr);
  const Row& row = GetParam();
  auto all = Signers();
  std::vector<SignerIdentity> signers;
  for (const std::string& s : row.signers) signers.push_back(all.at(s));
  DecisionRequest req;
  req.issuer = row.issuer;
  req.document_type = row.type;
  req.recipients = row.to;
  req.signers = signers;
  req.size = row.size;
  if (row.media) req.media_type = *row.media;
  req.time = row.time;
  req.timestamped = row.timestamped;
  Decision d = Decide(**policy_, req);
  std::string explained = d.Explain(Lang::kEn);
  EXPECT_EQ(d.allowed, row.allowed) << explained;
  bool found = false;
  for (const RuleResult& r : d.rules) {
    // A not-checked rule is reported with passed=false but never decides.
    bool passed = r.checked ? r.passed : false;
    if (r.kind == row.kind && passed == row.kind_passed) found = true;
    EXPECT_FALSE(r.en.empty());
    EXPECT_FALSE(r.vi.empty());
    EXPECT_NE(r.en, r.vi);
  }
  EXPECT_TRUE(found) << "no " << RuleKindName(row.kind) << (row.kind_passed ? " pass" : " fail")
                     << " in:\n" << explained;
  EXPECT_EQ(d.allowed, d.FirstFailure() == nullptr);
  EXPECT_EQ(d.policy_sha256, (*policy_)->sha256);
  if (!row.size) {
    bool not_checked = false;
    for (const RuleResult& r : d.rules) not_checked = not_checked || (r.kind == RuleKind::kSize && !r.checked);
    EXPECT_TRUE(not_checked) << explained;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, PolicyDecisionTest, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return std::string(info.param.name); });

TEST(PolicyDecisionCoverageTest, TableCoversEveryRuleKindWithBothVerdicts) {
  std::map<std::pair<RuleKind, bool>, int> seen;
  for (const Row& r : Rows()) {
    if (r.size.has_value() || r.kind != RuleKind::kSize) ++seen[{r.kind, r.kind_passed}];
  }
  for (RuleKind k : {RuleKind::kIssuerKnown, RuleKind::kTypeKnown, RuleKind::kIssuer, RuleKind::kRecipient,
                     RuleKind::kSigner, RuleKind::kSignatures, RuleKind::kSeal, RuleKind::kSize,
                     RuleKind::kMediaType, RuleKind::kTimestamp}) {
    EXPECT_GT((seen[{k, true}]), 0) << RuleKindName(k) << " pass";
    EXPECT_GT((seen[{k, false}]), 0) << RuleKindName(k) << " fail";
  }
}

TEST(PolicyDecisionTest2, ExplainInVietnameseUsesVietnameseTextAndJsonIsLanguageNeutral) {
  auto p = LoadPolicy({PolicySource{"decision.yaml", PolicyYaml()}});
  ASSERT_TRUE(p.has_value()) << p.error().message();
  auto all = Signers();
  std::vector<SignerIdentity> signers = {all["dist-chair"]};
  std::vector<std::string> to = {"cs1"};
  DecisionRequest req;
  req.issuer = "dist";
  req.document_type = "directive";
  req.recipients = to;
  req.signers = signers;
  req.size = 10;
  req.media_type = "application/pdf";
  req.time = VnTime(2025, 6, 1);
  Decision d = Decide(**p, req);
  ASSERT_FALSE(d.allowed);
  std::string vi = d.Explain(Lang::kVi);
  EXPECT_NE(vi.find("KHÔNG ĐƯỢC PHÉP"), std::string::npos) << vi;
  EXPECT_NE(vi.find("Thiếu con dấu của Liên đoàn Lao động huyện (bắt buộc)."), std::string::npos) << vi;
  EXPECT_NE(vi.find("Ký bởi Nguyễn Văn Chủ (Chủ tịch) của Liên đoàn Lao động huyện."), std::string::npos) << vi;
  std::string en = d.Explain(Lang::kEn);
  EXPECT_NE(en.find("DENIED"), std::string::npos);
  EXPECT_NE(en.find("The seal of Liên đoàn Lao động huyện is required but missing."), std::string::npos) << en;
  std::string json = d.ToJson();
  EXPECT_NE(json.find("\"decision\":\"deny\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"rule\":\"seal\",\"vi\":\"Thiếu con dấu"), std::string::npos) << json;
  ASSERT_NE(d.FirstFailure(), nullptr);
  EXPECT_EQ(d.FirstFailure()->kind, RuleKind::kSeal);
}

// Real certificates: the identity of a certificate issued by a test CA
// matches the policy in all three forms, and our SPKI hash equals the one
// `openssl` computes.
TEST(PolicyIdentityTest, CertificateMatchesAllThreeIdentityFormsAndOpensslSpkiHash) {
  TestCa root = TestCa::CreateRoot("/CN=Test Root CA/O=Liên đoàn thử nghiệm/C=VN");
  TestCa inter = root.CreateIntermediate("/CN=Test Issuing CA/C=VN");
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
  spec.serial = 0x5403AB;
  auto officer = inter.Issue(spec);
  CertSpec seal_spec;
  seal_spec.subject = "/CN=Công đoàn Bãi Cháy/C=VN";
  auto seal = inter.Issue(seal_spec);

  X509StackPtr chain(sk_X509_new_null());
  ASSERT_TRUE(chain);
  for (X509* c : {inter.cert(), root.cert()}) {
    X509_up_ref(c);
    sk_X509_push(chain.get(), c);
  }
  auto id = IdentityFromCertificate(officer.cert.get(), chain.get());
  ASSERT_TRUE(id.has_value()) << id.error().message();
  EXPECT_EQ(id->serial, "5403AB");
  ASSERT_EQ(id->chain_sha256.size(), 2u);

  // The names and the SPKI hash as `openssl` prints them for the same
  // certificate: that is what a policy author copies into the YAML.
  sealpost::testing::TempDir dir;
  const std::string pem = dir.file("officer.pem");
  sealpost::testing::WriteTestFile(pem, sealpost::testing::CertToPem(officer.cert.get()));
  auto openssl = [&](const std::string& args) {
    std::string out;
    int rc = sealpost::testing::RunCommand("openssl x509 -in " + sealpost::testing::ShellQuote(pem) + " " + args, &out);
    EXPECT_EQ(rc, 0) << out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  };
  std::string subject = openssl("-noout -subject -nameopt RFC2253,-esc_msb");
  std::string issuer = openssl("-noout -issuer -nameopt RFC2253,-esc_msb");
  ASSERT_TRUE(subject.starts_with("subject=")) << subject;
  ASSERT_TRUE(issuer.starts_with("issuer=")) << issuer;
  subject = subject.substr(8);
  issuer = issuer.substr(7);
  EXPECT_EQ(id->subject, NormalizeName(subject));
  EXPECT_EQ(id->issuer, NormalizeName(issuer));
  std::string spki = openssl("-pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r");
  EXPECT_EQ(spki.substr(0, 64), id->spki_sha256);

  auto seal_id = IdentityFromCertificate(seal.cert.get(), chain.get());
  ASSERT_TRUE(seal_id.has_value());
  std::string root_sha = id->chain_sha256.back();

  for (int form = 0; form < 3; ++form) {
    std::string cert_yaml;
    if (form == 0) cert_yaml = "{issuer: \"" + issuer + "\", serial: \"00:54:03:ab\"}";
    if (form == 1) cert_yaml = "{spki_sha256: \"" + id->spki_sha256 + "\"}";
    if (form == 2) cert_yaml = "{subject: \"" + subject + "\", ca: root}";
    std::string yaml = "federation: {id: t, name: \"T\"}\n"
                       "trust:\n  anchors:\n    - {id: root, name: \"Root\", sha256: \"" + root_sha + "\"}\n"
                       "unions:\n  - {id: bai-chay, name: \"Công đoàn Bãi Cháy\", level: grassroots,\n"
                       "     seal: {spki_sha256: \"" + seal_id->spki_sha256 + "\"}}\n"
                       "officers:\n  - {id: duyen, name: \"Nguyễn Thị Duyên\", role: chair, union: bai-chay,\n"
                       "     certificate: " + cert_yaml + ", mandate: {from: 2020-01-01}}\n"
                       "document_types:\n  - {id: minutes, name: \"Biên bản\", issuers: {levels: [grassroots]},\n"
                       "     recipients: {relations: [self]}, signatures: {officers: [{roles: [chair], count: 1}], seal: true},\n"
                       "     max_size_bytes: 100, media_types: [application/pdf], retention_years: 10}\n";
    auto p = LoadPolicy({PolicySource{"identity.yaml", yaml}});
    ASSERT_TRUE(p.has_value()) << p.error().message();
    DocumentFacts facts;
    facts.issuer = "bai-chay";
    facts.type = "minutes";
    facts.recipients = {"bai-chay"};
    facts.size = 10;
    facts.media_type = "application/pdf";
    facts.time = static_cast<int64_t>(std::time(nullptr));
    std::vector<VerifiedSigner> signers = {{officer.cert.get(), chain.get()}, {seal.cert.get(), chain.get()}};
    auto d = EvaluateVerifiedDocument(**p, facts, signers);
    ASSERT_TRUE(d.has_value());
    EXPECT_TRUE(d->allowed) << "form " << form << "\n" << d->Explain(Lang::kEn);
    // Without the chain, "subject under CA" cannot match; the others still do.
    std::vector<VerifiedSigner> no_chain = {{officer.cert.get(), nullptr}, {seal.cert.get(), nullptr}};
    auto d2 = EvaluateVerifiedDocument(**p, facts, no_chain);
    ASSERT_TRUE(d2.has_value());
    EXPECT_EQ(d2->allowed, form != 2) << d2->Explain(Lang::kEn);
  }
}

}  // namespace
}  // namespace sealpost::policies
