// `sealpost policy check|explain` through the real binary: exit statuses,
// positioned errors, explanations in both languages, JSON.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::CertSpec;
using testing::RunCommand;
using testing::ShellQuote;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

const std::string kCli = SEALPOST_CLI_PATH;
const std::string kSource = SEALPOST_SOURCE_DIR;

int RunCli(const std::string& args, std::string* out) {
  return RunCommand(ShellQuote(kCli) + " " + args + " 2>&1", out);
}

TEST(PolicyCliTest, CheckExamplesFederationExitsZero) {
  std::string out;
  int rc = RunCommand("cd " + ShellQuote(kSource) + " && " + ShellQuote(kCli) +
                          " policy check examples/federation/*.yaml 2>&1",
                      &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("policy OK: 130 unions, "), std::string::npos) << out;
  EXPECT_NE(out.find("sha256: "), std::string::npos) << out;
}

TEST(PolicyCliTest, CheckInVietnameseSaysValid) {
  std::string out;
  int rc = RunCommand("cd " + ShellQuote(kSource) + " && " + ShellQuote(kCli) +
                          " --lang vi policy check examples/federation/*.yaml 2>&1",
                      &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("chính sách hợp lệ: 130 công đoàn"), std::string::npos) << out;
}

TEST(PolicyCliTest, CheckMalformedFileExits65WithEveryErrorPositioned) {
  std::string out;
  int rc = RunCommand("cd " + ShellQuote(kSource + "/tests/policy_corpus") + " && " + ShellQuote(kCli) +
                          " policy check 39-many-errors-in-file-order.yaml 2>&1",
                      &out);
  EXPECT_EQ(rc, 65) << out;
  std::string expected = testing::ReadTestFile(kSource + "/tests/policy_corpus/39-many-errors-in-file-order.expected");
  EXPECT_EQ(out, expected + "sealpost: policy is invalid: 6 errors\n");
}

TEST(PolicyCliTest, CheckUnreadableFileExits66) {
  std::string out;
  EXPECT_EQ(RunCli("policy check /nonexistent/policy.yaml", &out), 66) << out;
  EXPECT_NE(out.find("/nonexistent/policy.yaml"), std::string::npos) << out;
}

TEST(PolicyCliTest, CheckWithoutFilesOrWithExplainFlagsIsUsageError) {
  std::string out;
  EXPECT_EQ(RunCli("policy check", &out), 64) << out;
  EXPECT_EQ(RunCli("policy check " + ShellQuote(kSource + "/examples/federation/unions.yaml") + " --type x", &out), 64)
      << out;
  EXPECT_EQ(RunCli("policy frobnicate", &out), 64) << out;
}

class PolicyExplainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestCa ca = TestCa::CreateRoot("/CN=Test CA/C=VN");
    CertSpec chair_spec;
    chair_spec.subject = "/CN=Nguyễn Thị Duyên/C=VN";
    chair_ = ca.Issue(chair_spec).cert;
    CertSpec seal_spec;
    seal_spec.subject = "/CN=Liên đoàn Lao động huyện A/C=VN";
    seal_ = ca.Issue(seal_spec).cert;
    WriteTestFile(dir_.file("chair.pem"), testing::CertToPem(chair_.get()));
    WriteTestFile(dir_.file("seal.pem"), testing::CertToPem(seal_.get()));
    WriteTestFile(dir_.file("ca.pem"), testing::CertToPem(ca.cert()));
    std::string out;
    auto spki = [&](const std::string& pem) {
      RunCommand("openssl x509 -in " + ShellQuote(pem) +
                     " -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
                 &out);
      return out.substr(0, 64);
    };
    std::string chair_spki = spki(dir_.file("chair.pem"));
    std::string seal_spki = spki(dir_.file("seal.pem"));
    WriteTestFile(dir_.file("registry.yaml"),
                  "federation: {id: t, name: \"Liên đoàn thử nghiệm\"}\n"
                  "unions:\n"
                  "  - {id: ldld-a, name: \"Liên đoàn Lao động huyện A\", level: district, seal: {spki_sha256: \"" +
                      seal_spki + "\"}}\n"
                      "  - {id: cd-b, name: \"Công đoàn cơ sở B\", level: grassroots, parent: ldld-a}\n"
                      "  - {id: cd-c, name: \"Công đoàn cơ sở C\", level: grassroots, parent: ldld-a}\n"
                      "officers:\n"
                      "  - {id: duyen, name: \"Nguyễn Thị Duyên\", role: chair, union: ldld-a,\n"
                      "     certificate: {spki_sha256: \"" +
                      chair_spki + "\"}, mandate: {from: 2024-01-01, until: 2028-12-31}}\n");
    WriteTestFile(dir_.file("rules.yaml"),
                  "document_types:\n"
                  "  - id: directive\n"
                  "    name: \"Chỉ thị\"\n"
                  "    name_en: \"Directive\"\n"
                  "    issuers: {levels: [district]}\n"
                  "    recipients: {relations: [children]}\n"
                  "    signatures: {officers: [{roles: [chair], count: 1}], seal: true}\n"
                  "    max_size_bytes: 1048576\n"
                  "    media_types: [application/pdf]\n"
                  "    retention_years: 20\n");
  }
  std::string Files() const { return ShellQuote(dir_.file("registry.yaml")) + " " + ShellQuote(dir_.file("rules.yaml")); }
  std::string Signers() const {
    return " --signer " + ShellQuote(dir_.file("chair.pem")) + " --signer " + ShellQuote(dir_.file("seal.pem"));
  }

  TempDir dir_;
  X509Ptr chair_;
  X509Ptr seal_;
};

TEST_F(PolicyExplainCliTest, ExplainAllowedDocumentExitsZeroAndSaysWhy) {
  std::string out;
  int rc = RunCli("policy explain " + Files() + " --type directive --from ldld-a --to cd-b,cd-c" + Signers() +
                   " --size 1000 --media-type application/pdf --at 2025-06-01",
               &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ALLOWED by policy"), std::string::npos) << out;
  EXPECT_NE(out.find("[ok]   Signed by Nguyễn Thị Duyên (chair) of Liên đoàn Lao động huyện A."), std::string::npos) << out;
  EXPECT_NE(out.find("[ok]   Sealed by Liên đoàn Lao động huyện A."), std::string::npos) << out;
}

TEST_F(PolicyExplainCliTest, ExplainInVietnameseAndJson) {
  std::string out;
  int rc = RunCli("--lang vi policy explain " + Files() + " --type directive --from ldld-a --to cd-b" + Signers() +
                   " --size 1000 --media-type application/pdf --at 2025-06-01T08:00:00+07:00",
               &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ĐƯỢC PHÉP theo chính sách"), std::string::npos) << out;
  EXPECT_NE(out.find("Ký bởi Nguyễn Thị Duyên (Chủ tịch) của Liên đoàn Lao động huyện A."), std::string::npos) << out;
  rc = RunCli("--lang vi policy explain " + Files() + " --type directive --from ldld-a --to cd-b" + Signers() +
               " --size 1000 --media-type application/pdf --at 2025-06-01 --json",
           &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("{\"decision\":\"allow\",\"policy_sha256\":\"", 0), 0u) << out;
  EXPECT_NE(out.find("\"en\":\"Sealed by Liên đoàn Lao động huyện A.\""), std::string::npos) << out;
}

TEST_F(PolicyExplainCliTest, ExplainDeniedDocumentExitsOneNamingTheFailedRules) {
  std::string out;
  // No seal, a recipient that is not a child, after the chair's mandate.
  int rc = RunCli("policy explain " + Files() + " --type directive --from ldld-a --to cd-b,ldld-a --signer " +
                   ShellQuote(dir_.file("chair.pem")) + " --size 1000 --media-type application/pdf --at 2029-01-01",
               &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("DENIED by policy"), std::string::npos) << out;
  EXPECT_NE(out.find("[FAIL] Liên đoàn Lao động huyện A may not receive Directive"), std::string::npos) << out;
  EXPECT_NE(out.find("[FAIL] Nguyễn Thị Duyên (chair) signed outside the mandate (2024-01-01 to 2028-12-31)."),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("[FAIL] The seal of Liên đoàn Lao động huyện A is required but missing."), std::string::npos)
      << out;
}

TEST_F(PolicyExplainCliTest, ExplainUsageAndInputErrorsUseTheirExitCodes) {
  std::string out;
  EXPECT_EQ(RunCli("policy explain " + Files() + " --from ldld-a --to cd-b", &out), 64) << out;  // no --type
  EXPECT_EQ(RunCli("policy explain " + Files() + " --type directive --from ldld-a --to cd-b --at yesterday", &out), 64)
      << out;
  EXPECT_EQ(RunCli("policy explain " + Files() + " --type directive --from ldld-a --to cd-b --size 1e3", &out), 64)
      << out;
  EXPECT_EQ(RunCli("policy explain " + Files() + " --type directive --from ldld-a --to cd-b --signer " +
                    ShellQuote(dir_.file("missing.pem")),
                &out),
            66)
      << out;
  WriteTestFile(dir_.file("bad.yaml"), "federation: {id: t, name: No}\n");
  EXPECT_EQ(RunCli("policy explain " + ShellQuote(dir_.file("bad.yaml")) + " --type directive --from ldld-a --to cd-b", &out),
            65)
      << out;
  EXPECT_NE(out.find("bad.yaml:1:27: federation.name: plain 'No' is read by YAML 1.1 as a boolean"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace sealpost
