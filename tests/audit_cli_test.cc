// `sealpost audit` and storage::Audit on what an auditor meets besides
// tampering: a working clone, worker processes, an incremental audit from a
// trusted checkpoint, a seal on a real SoftHSM2 token, missing evidence,
// and bad input (not an archive, a corrupt object, no such directory).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/digest.h"
#include "crypto/report.h"
#include "crypto/software_signer.h"
#include "pkcs11/open.h"
#include "storage/archive.h"
#include "storage/audit.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::CertToPem;
using sealpost::testing::CrlToPem;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
using sealpost::testing::WriteTestFile;
namespace fs = std::filesystem;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

std::unique_ptr<crypto::SoftwareKeySigner> MakeSigner(TestCa& ca, const std::string& label,
                                                      const std::string& cn,
                                                      const std::string& crl_dp = "") {
  CertSpec spec;
  spec.subject = "/CN=" + cn + "/O=Công đoàn Bãi Cháy/C=VN";
  spec.crl_dp = crl_dp;
  auto issued = ca.Issue(spec);
  auto signer = crypto::SoftwareKeySigner::CreateForTesting(label, std::move(issued.key),
                                                            std::move(issued.cert));
  EXPECT_TRUE(signer.has_value());
  return std::move(*signer);
}

EntryInput SignedDocument(crypto::Signer& officer, const std::string& label, int i,
                          const std::string& crls_pem = "") {
  EntryInput e;
  e.kind = EntryKind::kDocumentSent;
  std::string content = "Biên bản họp số " + std::to_string(i) + "\n";
  auto cert = officer.Certificate(crypto::KeyRef{label});
  auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(cert->get()));
  auto digest = crypto::DigestBytes(crypto::DigestAlgMd(*alg), content);
  auto sig = crypto::BuildDetachedSignature(officer, crypto::KeyRef{label}, cert->get(), *alg,
                                            *digest, crypto::CadesSignOptions{});
  EXPECT_TRUE(sig.has_value());
  e.fields["id"] = "doc-" + std::to_string(i);
  e.fields["type"] = "minutes";
  e.fields["content_size"] = std::to_string(content.size());
  e.fields["content_sha256"] = HexEncode(*crypto::DigestBytes(EVP_sha256(), content));
  e.files.push_back({"content.p7s", *sig});
  e.files.push_back({"certs.pem", CertToPem(cert->get())});
  if (!crls_pem.empty()) e.files.push_back({"crls.pem", crls_pem});
  e.files.push_back({"content", std::move(content)});
  return e;
}

class AuditCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    seal_ = MakeSigner(*ca_, "seal", "Con dấu Công đoàn Bãi Cháy");
    officer_ = MakeSigner(*ca_, "officer", "Trần Văn Bình");
    trust_ = tmp_.file("ca.pem");
    WriteTestFile(trust_, CertToPem(ca_->cert()));
    path_ = tmp_.file("archive.git");
  }

  std::unique_ptr<Archive> Create(crypto::Signer* signer = nullptr, const std::string& key = "seal") {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = signer != nullptr ? signer : seal_.get();
    o.seal_key = crypto::KeyRef{key};
    auto a = Archive::Create(path_, o);
    EXPECT_TRUE(a.has_value()) << a.error().ToString();
    return a.has_value() ? std::move(*a) : nullptr;
  }
  // `count` documents appended by 8 threads (grouped into few commits).
  void AppendConcurrently(Archive& a, int count, int first = 0) {
    std::vector<EntryInput> docs;
    for (int i = 0; i < count; ++i) docs.push_back(SignedDocument(*officer_, "officer", first + i));
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < count; i += 8) {
          auto r = a.Append(docs[static_cast<size_t>(i)]);
          if (!r) ADD_FAILURE() << r.error().ToString();
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  int Audit(const std::string& dir, std::string* out, const std::string& extra = "") {
    return RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " audit " + ShellQuote(dir) + " --trust " +
                          ShellQuote(trust_) + " " + extra,
                      out);
  }
  AuditOptions Options(int jobs) {
    AuditOptions o;
    o.trust_files = {trust_};
    o.jobs = jobs;
    return o;
  }
  static std::string Listing(const std::string& dir) {
    std::string out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      out += e.path().string() + " " +
             std::to_string(e.is_regular_file() ? fs::file_size(e.path()) : 0) + "\n";
    }
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> seal_, officer_;
  std::string trust_, path_;
};

TEST_F(AuditCliTest, AuditOfWorkingCloneIsCleanAndNamesTheBranch) {
  {
    auto a = Create();
    ASSERT_TRUE(a);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->Append(SignedDocument(*officer_, "officer", i)));
  }
  std::string clone = tmp_.file("clone");
  std::string out;
  ASSERT_EQ(RunCommand("git clone -q " + ShellQuote(path_) + " " + ShellQuote(clone), &out), 0) << out;
  const std::string before = Listing(clone) + Listing(path_);
  EXPECT_EQ(Audit(clone, &out, "--json"), 0) << out;
  EXPECT_NE(out.find("\"ref\":\"refs/heads/main\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"entries\":4"), std::string::npos) << out;
  EXPECT_EQ(Audit(path_, &out, "--json"), 0) << out;
  EXPECT_EQ(Listing(clone) + Listing(path_), before) << "the audit wrote something";
}

TEST_F(AuditCliTest, WorkerProcessesFindTheSameAsOneProcess) {
  {
    auto a = Create();
    ASSERT_TRUE(a);
    AppendConcurrently(*a, 150);
  }
  auto one = storage::Audit(path_, Options(1));
  auto two = storage::Audit(path_, Options(2));
  ASSERT_TRUE(one.has_value()) << one.error().ToString();
  ASSERT_TRUE(two.has_value()) << two.error().ToString();
  EXPECT_EQ(one->ExitCode(), 0) << AuditReportToText(*one, Lang::kEn);
  EXPECT_EQ(two->ExitCode(), 0) << AuditReportToText(*two, Lang::kEn);
  EXPECT_EQ(one->entries, 151u);
  EXPECT_EQ(two->entries_checked, 151u);
  EXPECT_EQ(one->signatures_checked, 150u);
  EXPECT_EQ(two->signatures_checked, 150u);

  // A problem found in a worker reaches the report, with its entry.
  std::string out;
  ASSERT_EQ(RunCommand("git -C " + ShellQuote(path_) + " rev-parse main:" + EntryDir(100) +
                           "/content",
                       &out),
            0);
  // Rewrite entry 100's content in a new unsigned commit via stock git.
  std::string script =
      "set -e; cd " + ShellQuote(path_) +
      "; export GIT_INDEX_FILE=$(mktemp); git read-tree main;"
      " b=$(printf 'forged\\n' | git hash-object -w --stdin);"
      " git update-index --cacheinfo 100644,$b," + EntryDir(100) + "/content;"
      " t=$(git write-tree); c=$(git commit-tree $t -p main -m forged);"
      " git update-ref refs/heads/main $c; rm -f $GIT_INDEX_FILE";
  ASSERT_EQ(RunCommand("GIT_AUTHOR_NAME=x GIT_AUTHOR_EMAIL=x@x GIT_COMMITTER_NAME=x "
                       "GIT_COMMITTER_EMAIL=x@x sh -c " + ShellQuote(script), &out),
            0)
      << out;
  auto tampered = storage::Audit(path_, Options(2));
  ASSERT_TRUE(tampered.has_value());
  EXPECT_EQ(tampered->ExitCode(), 1);
  bool changed = false, unsigned_commit = false;
  for (const AuditProblem& p : tampered->problems) {
    if (p.code == "entry-changed" && p.seq == 100) changed = true;
    if (p.code == "commit-signature-missing") unsigned_commit = true;
  }
  EXPECT_TRUE(changed) << AuditReportToText(*tampered, Lang::kEn);
  EXPECT_TRUE(unsigned_commit) << AuditReportToText(*tampered, Lang::kEn);
}

TEST_F(AuditCliTest, IncrementalAuditFromTrustedCheckpointChecksOnlyNewEntries) {
  auto a = Create();
  ASSERT_TRUE(a);
  AppendConcurrently(*a, 40);
  // The checkpoint as `sealpost archive checkpoint -o FILE` writes it.
  std::string cp = tmp_.file("trusted");
  std::string out;
  ASSERT_EQ(RunCommand("git -C " + ShellQuote(path_) + " cat-file blob main:log/checkpoint > " +
                           ShellQuote(cp) + " && git -C " + ShellQuote(path_) +
                           " cat-file blob main:log/checkpoint.p7s > " + ShellQuote(cp + ".p7s"),
                       &out),
            0);
  AppendConcurrently(*a, 10, 100);
  a.reset();
  AuditOptions o = Options(1);
  auto data = sealpost::testing::ReadTestFile(cp);
  auto sig = sealpost::testing::ReadTestFile(cp + ".p7s");
  auto trusted = ParseTrustedCheckpoint(data, sig, cp);
  ASSERT_TRUE(trusted.has_value()) << trusted.error().ToString();
  o.trusted = *trusted;
  auto r = storage::Audit(path_, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->ExitCode(), 0) << AuditReportToText(*r, Lang::kEn);
  EXPECT_EQ(r->entries, 51u);
  EXPECT_EQ(r->trusted_size, 41u);
  EXPECT_EQ(r->entries_checked, 10u);
  EXPECT_EQ(r->signatures_checked, 10u);
  EXPECT_EQ(Audit(path_, &out, "--checkpoint " + ShellQuote(cp)), 0) << out;
  EXPECT_NE(out.find("41"), std::string::npos) << out;
}

TEST_F(AuditCliTest, SealOnSoftHsmTokenAuditsClean) {
  sealpost::testing::SoftHsm hsm;
  ASSERT_TRUE(hsm.InitToken("union-seal", "so-pin", "1234"));
  auto issued = hsm.AddKeyWithCert("union-seal", "1234", *ca_, sealpost::testing::KeyType::kP256,
                                   "01", "seal");
  ASSERT_TRUE(issued.has_value());
  pkcs11::OpenOptions po;
  po.pin_file = hsm.WritePinFile("1234\n");
  po.interactive = false;
  const std::string uri = hsm.KeyUri("union-seal", "seal");
  auto token = pkcs11::OpenTokenSigner(uri, po);
  ASSERT_TRUE(token.has_value()) << token.error().ToString();
  {
    auto a = Create(token->get(), uri);
    ASSERT_TRUE(a);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->Append(SignedDocument(*officer_, "officer", i)));
  }
  std::string out;
  EXPECT_EQ(Audit(path_, &out, "--json"), 0) << out;
  EXPECT_NE(out.find("\"commits\":4"), std::string::npos) << out;
}

TEST_F(AuditCliTest, MissingCrlEvidenceIsIndeterminateAndPresentCrlIsClean) {
  auto officer_dp = MakeSigner(*ca_, "officer", "Lê Thị Hoa", "URI:http://127.0.0.1/ca.crl");
  X509CrlPtr crl = ca_->MakeCrl({});
  {
    auto a = Create();
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->Append(SignedDocument(*officer_dp, "officer", 1, CrlToPem(crl.get()))));
  }
  std::string out;
  EXPECT_EQ(Audit(path_, &out, "--json"), 0) << out;
  {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = seal_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Open(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    ASSERT_TRUE((*a)->Append(SignedDocument(*officer_dp, "officer", 2)));  // no crls.pem
  }
  EXPECT_EQ(Audit(path_, &out, "--json"), 2) << out;
  EXPECT_NE(out.find("\"code\":\"signature-indeterminate\",\"severity\":\"indeterminate\",\"seq\":3"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"result\":\"indeterminate\""), std::string::npos) << out;
}

TEST_F(AuditCliTest, BadInputGetsClearErrorsAndExitCodes) {
  std::string out;
  EXPECT_EQ(Audit(tmp_.file("nowhere"), &out), 66) << out;
  EXPECT_NE(out.find("nowhere"), std::string::npos) << out;
  fs::create_directories(tmp_.file("empty"));
  EXPECT_EQ(Audit(tmp_.file("empty"), &out), 65) << out;
  EXPECT_NE(out.find("not a git repository"), std::string::npos) << out;
  std::string plain = tmp_.file("plain");
  ASSERT_EQ(RunCommand("git init -q -b main " + ShellQuote(plain) + " && cd " + ShellQuote(plain) +
                           " && echo hi > a && git add a && git -c user.name=x -c user.email=x@x "
                           "commit -q -m a",
                       &out),
            0)
      << out;
  EXPECT_EQ(Audit(plain, &out), 65) << out;
  EXPECT_NE(out.find("not a sealpost archive"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " audit " + ShellQuote(plain), &out), 64)
      << out;
  EXPECT_EQ(Audit(plain, &out, "--jobs 0"), 64) << out;
}

TEST_F(AuditCliTest, CorruptPackObjectIsDataError) {
  {
    auto a = Create();
    ASSERT_TRUE(a);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(a->Append(SignedDocument(*officer_, "officer", i)));
  }
  // Flip a byte in the middle of the largest pack.
  std::string largest;
  uintmax_t size = 0;
  for (const auto& e : fs::directory_iterator(path_ + "/objects/pack")) {
    if (e.path().extension() == ".pack" && e.file_size() > size) {
      size = e.file_size();
      largest = e.path().string();
    }
  }
  ASSERT_FALSE(largest.empty());
  fs::permissions(largest, fs::perms::owner_write, fs::perm_options::add);
  {
    std::fstream f(largest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&c, 1);
  }
  std::string out;
  EXPECT_EQ(Audit(path_, &out), 65) << out;
  EXPECT_NE(out.find("corrupt"), std::string::npos) << out;
}

}  // namespace
}  // namespace sealpost::storage
