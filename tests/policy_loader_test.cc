// Loading: the malformed-file corpus (exact errors and positions), the
// example federation, merging several files, YAML typing traps, limits, the
// canonical hash, reload, and reference-number patterns.
#include "policies/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "policies/holder.h"
#include "policies/reference.h"
#include "policies/schema.h"
#include "tests/support/test_pki.h"

namespace sealpost::policies {
namespace {

namespace fs = std::filesystem;
using sealpost::testing::ReadTestFile;
using sealpost::testing::TempDir;
using sealpost::testing::WriteTestFile;

std::string CorpusDir() { return std::string(SEALPOST_SOURCE_DIR) + "/tests/policy_corpus"; }
std::string ExamplesDir() { return std::string(SEALPOST_SOURCE_DIR) + "/examples/federation"; }

std::vector<std::string> FilesWithExtension(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string JoinDiagnostics(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const Diagnostic& d : diags) out += d.ToString() + "\n";
  return out;
}

// --- the corpus --------------------------------------------------------------

class PolicyCorpusTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyCorpusTest, LoadMalformedFileReportsExactlyTheExpectedErrors) {
  const std::string name = GetParam();
  const std::string stem = name.substr(0, name.size() - 5);
  std::string text = ReadTestFile(CorpusDir() + "/" + name);
  std::string expected = ReadTestFile(CorpusDir() + "/" + stem + ".expected");
  ASSERT_FALSE(expected.empty()) << stem << ".expected is empty";
  std::vector<Diagnostic> diags;
  auto policy = LoadPolicy({PolicySource{name, text}}, &diags);
  ASSERT_FALSE(policy.has_value()) << name << " loaded but must not";
  EXPECT_EQ(policy.error().code(), Code::kDataError);
  EXPECT_EQ(JoinDiagnostics(diags), expected);
  // The Status carries the same lines.
  EXPECT_EQ(policy.error().message() + "\n", expected);
}

INSTANTIATE_TEST_SUITE_P(Corpus, PolicyCorpusTest,
                         ::testing::ValuesIn(FilesWithExtension(CorpusDir(), ".yaml")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param.substr(0, info.param.size() - 5);
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

TEST(PolicyCorpusListTest, CorpusHasAtLeastThirtyCasesEachWithExpectedErrors) {
  auto yamls = FilesWithExtension(CorpusDir(), ".yaml");
  auto expected = FilesWithExtension(CorpusDir(), ".expected");
  EXPECT_GE(yamls.size(), 30u);
  ASSERT_EQ(yamls.size(), expected.size());
  for (size_t i = 0; i < yamls.size(); ++i) {
    EXPECT_EQ(yamls[i].substr(0, yamls[i].size() - 5), expected[i].substr(0, expected[i].size() - 9));
  }
}

// --- the examples -------------------------------------------------------------

TEST(PolicyExamplesTest, LoadFederationExamplesSucceedsWith128GrassrootsUnions) {
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(ExamplesDir())) {
    EXPECT_EQ(e.path().extension(), ".yaml") << "only policy files belong in examples/federation: " << e.path();
    paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<Diagnostic> diags;
  auto policy = LoadPolicyFiles(paths, &diags);
  ASSERT_TRUE(policy.has_value()) << JoinDiagnostics(diags);
  const Policy& p = **policy;
  int grassroots_of_ha_long = 0;
  for (const Union& u : p.unions) grassroots_of_ha_long += u.level == Level::kGrassroots && u.parent == "ldld-ha-long";
  EXPECT_EQ(grassroots_of_ha_long, 128);
  for (const char* type : {"directive", "notice", "report", "financial-report", "minutes", "policy"}) {
    EXPECT_NE(p.FindType(type), nullptr) << type;
  }
  ASSERT_NE(p.FindUnion("ldld-ha-long"), nullptr);
  EXPECT_EQ(p.FindUnion("ldld-ha-long")->name, "Liên đoàn Lao động thành phố Hạ Long");
  EXPECT_GT(p.officers.size(), 300u);
  EXPECT_EQ(p.sha256.size(), 64u);
}

// --- merging several files ------------------------------------------------------

constexpr const char* kFederation = "federation:\n  id: t\n  name: \"Liên đoàn thử nghiệm\"\n";

TEST(PolicyLoadTest, FederationDefinedInTwoFilesNamesTheFirstDefinition) {
  std::vector<Diagnostic> diags;
  auto p = LoadPolicy({{"a.yaml", kFederation}, {"b.yaml", std::string("# again\n") + kFederation}}, &diags);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(JoinDiagnostics(diags), "b.yaml:2:1: 'federation' is already defined at a.yaml:1:1\n");
}

TEST(PolicyLoadTest, ErrorsFromSeveralFilesComeInFileOrderThenPosition) {
  std::string registry = std::string(kFederation) +
                         "unions:\n"
                         "  - {id: ldld-a, name: \"A\", level: district}\n"
                         "  - {id: cd-b, name: \"B\", level: grassroots, parent: ldld-x}\n";
  std::string rules = "unions:\n"
                      "  - {id: ldld-a, name: \"A again\", level: district}\n"
                      "document_types:\n"
                      "  - {id: nt, name: \"Thông báo\", issuers: {unions: [cd-z]}, recipients: {relations: [parent]},\n"
                      "     signatures: {seal: true}, max_size_bytes: 1, media_types: [text/plain], retention_years: 1}\n";
  std::vector<Diagnostic> diags;
  auto p = LoadPolicy({{"registry.yaml", registry}, {"rules.yaml", rules}}, &diags);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(JoinDiagnostics(diags),
            "registry.yaml:6:54: unknown parent union 'ldld-x'\n"
            "rules.yaml:2:10: duplicate union id 'ldld-a' (first defined at registry.yaml:5:10)\n"
            "rules.yaml:4:52: unknown union 'cd-z'\n");
}

TEST(PolicyLoadTest, RegistryAndRulesInSeparateFilesLoadAsOne) {
  std::string registry = std::string(kFederation) +
                         "unions:\n  - {id: ldld-a, name: \"A\", level: district, seal: {spki_sha256: \"" +
                         std::string(64, 'a') + "\"}}\n";
  std::string rules = "document_types:\n"
                      "  - {id: nt, name: \"Thông báo\", issuers: {unions: [ldld-a]}, recipients: {relations: [self]},\n"
                      "     signatures: {seal: true}, max_size_bytes: 1, media_types: [text/plain], retention_years: 1}\n";
  auto p = LoadPolicy({{"registry.yaml", registry}, {"rules.yaml", rules}});
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_NE((*p)->FindType("nt"), nullptr);
}

TEST(PolicyLoadTest, UnreadableFileIsNotFoundNamingTheFile) {
  auto p = LoadPolicyFiles({"/nonexistent/policy.yaml"});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), Code::kNotFound);
  EXPECT_NE(p.error().message().find("/nonexistent/policy.yaml"), std::string::npos);
}

TEST(PolicyLoadTest, NoFileIsAUsageError) {
  auto p = LoadPolicy({});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
}

// --- YAML typing traps and limits --------------------------------------------------

TEST(PolicyTypingTest, PlainScalarsThatYaml11TypesAreNotText) {
  using internal::Yaml11NonStringType;
  for (const char* s : {"yes", "No", "ON", "off", "y", "N", "true", "False", "~", "null", "", "010",
                        "0x1F", "0o17", "0b101", "1_000", "+5", "-5", "1:30", "1.5", "1.2.3", ".5",
                        "1e3", ".inf", ".NaN", "00"}) {
    EXPECT_TRUE(Yaml11NonStringType(s).has_value()) << "'" << s << "'";
  }
  for (const char* s : {"Nguyễn Thị Duyên", "ldld-a", "0", "123", "2024", "CĐCS-001", "application/pdf",
                        "1a2b", "yes-please", "-", "Norway", "0xZZ", "1:99"}) {
    EXPECT_FALSE(Yaml11NonStringType(s).has_value()) << "'" << s << "'";
  }
}

TEST(PolicyYamlTest, NodeLimitStopsAHugeFileWithOneError) {
  std::string text = "unions: [";
  for (int i = 0; i < 2000; ++i) text += "a, ";
  text += "a]\n";
  std::vector<Diagnostic> errors;
  YamlLimits limits;
  limits.max_nodes = 1000;
  auto tree = ParseYaml(text, "big.yaml", &errors, limits);
  EXPECT_FALSE(tree.has_value());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "too many YAML nodes (limit 1000)");
}

TEST(PolicyYamlTest, LongScalarIsRefusedWithItsPosition) {
  std::string text = std::string(kFederation) + "unions:\n  - {id: a, name: \"" + std::string(70000, 'x') +
                     "\", level: district}\n";
  std::vector<Diagnostic> diags;
  auto p = LoadPolicy({{"long.yaml", text}}, &diags);
  ASSERT_FALSE(p.has_value());
  ASSERT_EQ(diags.size(), 1u) << JoinDiagnostics(diags);
  EXPECT_EQ(diags[0].ToString(), "long.yaml:5:19: scalar longer than 65536 bytes");
}

TEST(PolicyYamlTest, DuplicateKeyInALargeMappingIsFoundWithItsFirstPosition) {
  std::string text = "federation: {id: t, name: \"T\"}\nx:\n";
  for (int i = 0; i < 40; ++i) text += "  k" + std::to_string(i) + ": 1\n";
  text += "  k7: 2\n";
  std::vector<Diagnostic> errors;
  auto tree = ParseYaml(text, "big.yaml", &errors);
  ASSERT_TRUE(tree.has_value());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].ToString(), "big.yaml:43:3: duplicate key 'k7' (first at line 10, column 3)");
}

TEST(PolicyDependencyTest, PoliciesIncludeOnlyBaseCryptoAndThemselves) {
  for (const auto& e : fs::directory_iterator(std::string(SEALPOST_SOURCE_DIR) + "/policies")) {
    if (e.path().extension() != ".h" && e.path().extension() != ".cc") continue;
    std::string text = ReadTestFile(e.path().string());
    size_t pos = 0;
    while ((pos = text.find("#include \"", pos)) != std::string::npos) {
      pos += 10;
      std::string inc = text.substr(pos, text.find('"', pos) - pos);
      EXPECT_TRUE(inc.starts_with("base/") || inc.starts_with("crypto/") || inc.starts_with("policies/"))
          << e.path() << " includes " << inc;
    }
  }
}

// --- canonical hash --------------------------------------------------------------

// One policy written two ways: one file vs. three, keys and list items
// reordered, flow vs. block style, plain vs. quoted, hex case, name spacing.
constexpr const char* kOneFile = R"(federation: {id: t, name: "Liên đoàn"}
trust:
  anchors:
    - {id: ca, name: "CA", sha256: "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"}
unions:
  - {id: ldld-a, name: "Liên đoàn A", level: district}
  - {id: cd-b, name: "Công đoàn B", level: grassroots, parent: ldld-a, code: "CĐ-B"}
  - {id: cd-c, name: "Công đoàn C", level: grassroots, parent: ldld-a}
groups:
  - {id: g, name: "Nhóm", members: [cd-c, cd-b]}
officers:
  - {id: o1, name: "Nguyễn Văn A", role: chair, union: ldld-a,
     certificate: {issuer: "CN=VNPT CA, O=VNPT, C=VN", serial: "0A0B"}, mandate: {from: 2024-01-01, until: 2026-12-31}}
  - {id: o2, name: "Trần Thị B", role: accountant, union: cd-b,
     certificate: {subject: "CN=Trần Thị B, C=VN", ca: ca}, mandate: {from: 2024-01-01}}
document_types:
  - id: notice
    name: "Thông báo"
    issuers: {levels: [district, grassroots]}
    recipients: {relations: [children, parent], groups: [g]}
    signatures: {officers: [{roles: [vice-chair, chair], count: 1}, {roles: [accountant], count: 1}], seal: false}
    max_size_bytes: 1048576
    media_types: [application/pdf, text/plain]
    retention_years: 10
    reference: "{seq}/{year}/TB-{union}"
)";

std::vector<PolicySource> ThreeFiles() {
  return {
      {"rules.yaml", R"(document_types:
  - retention_years: 10
    media_types: [TEXT/plain, application/pdf]
    max_size_bytes: 1048576
    reference: '{seq}/{year}/TB-{union}'
    signatures:
      seal: false
      officers:
        - count: 1
          roles: [accountant]
        - roles: [chair, vice-chair]
          count: 1
    recipients: {groups: [g], relations: [parent, children]}
    issuers: {levels: [grassroots, district]}
    name: Thông báo
    id: notice
)"},
      {"officers.yaml", R"(officers:
  - id: o2
    union: cd-b
    role: accountant
    name: Trần Thị B
    mandate: {from: "2024-01-01"}
    certificate: {ca: ca, subject: "cn=Trần Thị B ,c=VN"}
  - id: o1
    name: Nguyễn Văn A
    role: chair
    union: ldld-a
    certificate: {serial: "00:0a:0b", issuer: "CN=VNPT CA,O=VNPT,C=VN"}
    mandate: {until: 2026-12-31, from: 2024-01-01}
)"},
      {"registry.yaml", R"(unions:
  - {id: cd-c, name: "Công đoàn C", level: grassroots, parent: ldld-a, code: cd-c}
  - {parent: ldld-a, level: grassroots, name: "Công đoàn B", id: cd-b, code: "CĐ-B"}
  - {level: district, name: "Liên đoàn A", id: ldld-a}
groups:
  - {members: [cd-b, cd-c], name: Nhóm, id: g}
trust:
  anchors:
    - {sha256: "abababababababababababababababababababababababababababababababab", name: CA, id: ca}
federation:
  name: Liên đoàn
  id: t
)"},
  };
}

TEST(PolicyHashTest, SamePolicySplitAndReorderedGivesTheSameHash) {
  auto a = LoadPolicy({{"one.yaml", kOneFile}});
  ASSERT_TRUE(a.has_value()) << a.error().message();
  auto b = LoadPolicy(ThreeFiles());
  ASSERT_TRUE(b.has_value()) << b.error().message();
  EXPECT_EQ((*a)->canonical_json, (*b)->canonical_json);
  EXPECT_EQ((*a)->sha256, (*b)->sha256);
  // And it is the SHA-256 of the canonical JSON (openssl's, not ours).
  TempDir dir;
  WriteTestFile(dir.file("c.json"), (*a)->canonical_json);
  std::string out;
  ASSERT_EQ(sealpost::testing::RunCommand("openssl dgst -sha256 -r " + dir.file("c.json"), &out), 0);
  EXPECT_EQ(out.substr(0, 64), (*a)->sha256);
}

TEST(PolicyHashTest, EverySemanticChangeGivesADifferentHash) {
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"name: \"Liên đoàn A\"", "name: \"Liên đoàn A.\""},
      {"level: district}", "level: province}"},
      {"code: \"CĐ-B\"", "code: \"CĐ-B2\""},
      {"members: [cd-c, cd-b]", "members: [cd-c]"},
      {"role: chair", "role: vice-chair"},
      {"serial: \"0A0B\"", "serial: \"0A0C\""},
      {"until: 2026-12-31", "until: 2026-12-30"},
      {"relations: [children, parent]", "relations: [children]"},
      {"count: 1}, {roles: [accountant]", "count: 2}, {roles: [accountant]"},
      {"seal: false", "seal: true"},
      {"max_size_bytes: 1048576", "max_size_bytes: 1048577"},
      {"text/plain]", "text/csv]"},
      {"retention_years: 10", "retention_years: 11"},
      {"TB-{union}", "TB-{union}-{type}"},
      {"sha256: \"ABAB", "sha256: \"ACAB"},
  };
  auto base = LoadPolicy({{"one.yaml", kOneFile}});
  ASSERT_TRUE(base.has_value()) << base.error().message();
  std::set<std::string> hashes = {(*base)->sha256};
  for (const auto& [from, to] : edits) {
    std::string text = kOneFile;
    size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    auto changed = LoadPolicy({{"one.yaml", text}});
    ASSERT_TRUE(changed.has_value()) << to << ": " << changed.error().message();
    EXPECT_TRUE(hashes.insert((*changed)->sha256).second) << "same hash after: " << from << " -> " << to;
  }
}

// --- reload ---------------------------------------------------------------------

TEST(PolicyHolderTest, ReloadWithBadFileKeepsRunningPolicyAndSaysWhy) {
  TempDir dir;
  const std::string path = dir.file("policy.yaml");
  WriteTestFile(path, kOneFile);
  auto holder = PolicyHolder::Open({path});
  ASSERT_TRUE(holder.has_value()) << holder.error().message();
  const std::string before = (*holder)->Current()->sha256;

  std::string bad = kOneFile;
  bad.replace(bad.find("retention_years: 10"), 19, "retention_years: 010");
  WriteTestFile(path, bad);
  Status s = (*holder)->Reload({path});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kDataError);
  EXPECT_NE(s.message().find("policy.yaml:24:22: retention_years: '010' has a leading zero"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("running policy stays in force"), std::string::npos);
  EXPECT_EQ((*holder)->Current()->sha256, before);
  EXPECT_EQ((*holder)->generation(), 0u);

  // A missing file is refused the same way.
  EXPECT_EQ((*holder)->Reload({dir.file("gone.yaml")}).code(), Code::kNotFound);
  EXPECT_EQ((*holder)->Current()->sha256, before);

  std::string good = kOneFile;
  good.replace(good.find("retention_years: 10"), 19, "retention_years: 12");
  WriteTestFile(path, good);
  std::shared_ptr<const Policy> snapshot = (*holder)->Current();
  ASSERT_TRUE((*holder)->Reload({path}).ok());
  EXPECT_NE((*holder)->Current()->sha256, before);
  EXPECT_EQ((*holder)->generation(), 1u);
  // A reader's snapshot is not changed under it.
  EXPECT_EQ(snapshot->sha256, before);
  EXPECT_EQ(snapshot->FindType("notice")->retention_years, 10);
}

TEST(PolicyHolderTest, ReadersDuringReloadsAlwaysSeeAWholePolicy) {
  TempDir dir;
  std::string a = kOneFile;
  std::string b = kOneFile;
  b.replace(b.find("retention_years: 10"), 19, "retention_years: 12");
  WriteTestFile(dir.file("a.yaml"), a);
  WriteTestFile(dir.file("b.yaml"), b);
  WriteTestFile(dir.file("bad.yaml"), "federation: [");
  auto holder = PolicyHolder::Open({dir.file("a.yaml")});
  ASSERT_TRUE(holder.has_value());
  std::atomic<bool> stop{false};
  std::atomic<int> bad_reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto p = (*holder)->Current();
      int years = p->FindType("notice")->retention_years;
      if (years != 10 && years != 12) ++bad_reads;
    }
  });
  for (int i = 0; i < 30; ++i) {
    EXPECT_TRUE((*holder)->Reload({dir.file(i % 2 ? "a.yaml" : "b.yaml")}).ok());
    EXPECT_FALSE((*holder)->Reload({dir.file("bad.yaml")}).ok());
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad_reads.load(), 0);
  EXPECT_EQ((*holder)->generation(), 30u);
}

// --- reference numbers --------------------------------------------------------------

TEST(PolicyReferenceTest, FormatFillsEveryPlaceholder) {
  auto r = FormatReference("{seq}/{year}/CĐ-{union}", 15, 2025, "LĐLĐ-HL", "directive");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(*r, "15/2025/CĐ-LĐLĐ-HL");
  auto t = FormatReference("{type}-{seq}/{year}", 1, 2026, "X", "notice");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t, "notice-1/2026");
}

TEST(PolicyReferenceTest, InvalidPatternsAreRefusedWithOffset) {
  struct Case {
    const char* pattern;
    size_t offset;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {"{seq}/{year}/{unoin}", 13, "unknown placeholder '{unoin}' in reference pattern; known: {seq}, {year}, {union}, {type}"},
           {"{seq}/{year", 6, "unclosed '{' in reference pattern"},
           {"{seq}}/{year}", 5, "unmatched '}' in reference pattern"},
           {"{year}/CT", 0, "reference pattern lacks {seq}"},
           {"{seq}/{seq}/{year}", 0, "reference pattern has {seq} more than once"},
           {"{seq}/CT", 0, "reference pattern lacks {year} (numbers run per year, so the year must be in it)"},
       }) {
    size_t offset = 99;
    Status s = ValidateReferencePattern(c.pattern, &offset);
    EXPECT_FALSE(s.ok()) << c.pattern;
    EXPECT_EQ(s.message(), c.message) << c.pattern;
    EXPECT_EQ(offset, c.offset) << c.pattern;
  }
  EXPECT_FALSE(FormatReference("{seq}/{year}", 0, 2025, "X", "t").has_value());
}

}  // namespace
}  // namespace sealpost::policies
