// The document API and the `sealpost` client commands against real
// processes: sealpostd + sealpost-signer serving a P-256 seal on a SoftHSM2
// token (tests/support/daemon_harness.h, DaemonOptions::seal), over HTTPS on 127.0.0.1.
// Submit through the CLI (seal only, and with an officer's openssl-made
// CAdES signature), status, list, fetch content (cmp with the original),
// signature (openssl cms -verify), bundle (crypto::VerifyBundle), roles,
// 401/403/404/400 problems, checkpoint and consistency proofs on both
// listeners.
#include <dirent.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/bundle.h"
#include "crypto/certs.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {
namespace {

struct CliRun {
  int rc = -1;
  std::string out;
};

struct CurlResult {
  int rc = -1;
  int status = 0;
  std::string body;
};

class DaemonDocumentsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.seal = true;
    o.max_body_bytes = 2u << 20;
    daemon_ = DaemonHarness::Start(o).release();
    if (daemon_ == nullptr) return;
    for (const char* role : {"clerk", "officer", "auditor", "admin"}) {
      std::string token = daemon_->CreateToken(role, std::string("test ") + role);
      WriteTestFile(daemon_->file(std::string(role) + ".token"), token + "\n");
    }
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  static std::string Server() { return "https://127.0.0.1:" + std::to_string(daemon_->user_port()); }

  // `sealpost ARGS` as `role` (a token file), output with stderr.
  static CliRun Cli(const std::string& args, const std::string& role = "clerk") {
    CliRun r;
    std::string cmd = ShellQuote(SEALPOST_CLI_PATH) + " " + args + " --server " + Server() +
                      " --ca " + ShellQuote(daemon_->file("tls-ca.pem"));
    if (!role.empty()) cmd += " --token-file " + ShellQuote(daemon_->file(role + ".token"));
    r.rc = RunCommand(cmd, &r.out);
    return r;
  }

  static CurlResult Curl(const std::string& path, const std::string& role,
                         const std::string& extra = "", bool peer = false) {
    std::string auth;
    if (!role.empty()) {
      std::string token = ReadTestFile(daemon_->file(role + ".token"));
      while (!token.empty() && token.back() == '\n') token.pop_back();
      auth = "-H " + ShellQuote("Authorization: Bearer " + token);
    }
    std::string out;
    CurlResult r;
    r.rc = RunCommand(daemon_->Curl(path, auth + " " + extra + " -w '\\n%{http_code}'", peer), &out);
    size_t nl = out.rfind('\n');
    if (nl != std::string::npos) {
      r.status = std::atoi(out.c_str() + nl + 1);
      r.body = out.substr(0, nl);
    }
    return r;
  }

  // Submits `file` as a seal-only notice through the CLI; its id.
  static std::string SubmitNotice(const std::string& file, const std::string& subject) {
    CliRun r = Cli("submit " + ShellQuote(file) + " --type notice --to " +
                DaemonHarness::kPeerUnion + " --subject " + ShellQuote(subject) +
                " --media-type application/octet-stream --json");
    EXPECT_EQ(r.rc, 0) << r.out << "\n" << daemon_->Log();
    return JsonField(r.out, "id");
  }

  static DaemonHarness* daemon_;
};
DaemonHarness* DaemonDocumentsTest::daemon_ = nullptr;

TEST_F(DaemonDocumentsTest, SubmitStatusListFetchRoundTrip) {
  // 900 KiB of bytes that are not text: the content is streamed in pieces.
  std::string data;
  for (uint32_t i = 0; i < 900 * 1024; ++i) data += static_cast<char>((i * 7919u + i / 13) & 0xff);
  const std::string original = daemon_->file("round-trip.bin");
  WriteTestFile(original, data);
  const std::string id = SubmitNotice(original, "Thông báo họp ban chấp hành");
  ASSERT_FALSE(id.empty());

  CliRun status = Cli("status " + id + " --json");
  ASSERT_EQ(status.rc, 0) << status.out;
  EXPECT_NE(status.out.find("\"direction\":\"sent\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"subject\":\"Thông báo họp ban chấp hành\""), std::string::npos);
  EXPECT_NE(status.out.find("\"deliveries\":[{\"recipient\":\"cd-ban-thu\",\"channel\":\"appliance\""),
            std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("\"size\":" + std::to_string(data.size())), std::string::npos);

  CliRun human = Cli("status " + id);
  ASSERT_EQ(human.rc, 0) << human.out;
  EXPECT_NE(human.out.find("cd-ban-thu"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("Thông báo họp ban chấp hành"), std::string::npos) << human.out;
  CliRun human_vi = Cli("--lang vi status " + id);
  EXPECT_NE(human_vi.out.find("trích yếu:"), std::string::npos) << human_vi.out;

  CliRun list = Cli("list --direction sent --json", "auditor");
  ASSERT_EQ(list.rc, 0) << list.out;
  EXPECT_NE(list.out.find("\"id\":\"" + id + "\""), std::string::npos) << list.out;
  CliRun received = Cli("list --direction received --json");
  ASSERT_EQ(received.rc, 0) << received.out;
  EXPECT_EQ(received.out.find(id), std::string::npos) << received.out;
  CliRun human_list = Cli("list --type notice");
  ASSERT_EQ(human_list.rc, 0) << human_list.out;
  EXPECT_NE(human_list.out.find(id), std::string::npos) << human_list.out;

  const std::string got = daemon_->file("fetched.bin");
  CliRun fetch = Cli("fetch " + id + " --content -o " + ShellQuote(got));
  ASSERT_EQ(fetch.rc, 0) << fetch.out;
  EXPECT_EQ(RunCommand("cmp " + ShellQuote(original) + " " + ShellQuote(got)), 0);
  struct stat st {};
  EXPECT_NE(::stat((got + ".part").c_str(), &st), 0) << "no temporary file left";

  const std::string sig = daemon_->file("fetched.p7s");
  ASSERT_EQ(Cli("fetch " + id + " --signature -o " + ShellQuote(sig)).rc, 0);
  std::string out;
  EXPECT_EQ(RunCommand("openssl cms -verify -binary -inform DER -in " + ShellQuote(sig) +
                           " -content " + ShellQuote(got) + " -CAfile " +
                           ShellQuote(daemon_->file("sign-ca.pem")) +
                           " -purpose any -out /dev/null",
                       &out),
            0)
      << out;

  const std::string bundle = daemon_->file("fetched.asics");
  ASSERT_EQ(Cli("fetch " + id + " --bundle -o " + ShellQuote(bundle), "auditor").rc, 0);
  TempDir work;
  auto parsed = crypto::ReadBundle(bundle, work.path());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->document.id, id);
  auto anchors = crypto::LoadCertificates(daemon_->file("sign-ca.pem"));
  ASSERT_TRUE(anchors.has_value());
  crypto::BundleVerifyOptions vo;
  vo.anchors = anchors->get();
  auto report = crypto::VerifyBundle(*parsed, vo);
  ASSERT_TRUE(report.has_value()) << report.error().message();
  EXPECT_EQ(report->indication, crypto::Indication::kPassed)
      << crypto::BundleReportToText(*report, Lang::kEn);

  // As a recipient without an appliance would: unzip, `sealpost verify`.
  TempDir unzipped;
  ASSERT_EQ(RunCommand("cd " + ShellQuote(unzipped.path()) + " && unzip -q " + ShellQuote(bundle),
                       &out),
            0)
      << out;
  EXPECT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " verify " +
                           ShellQuote(unzipped.file(crypto::BundleContentName("round-trip.bin"))) +
                           " " + ShellQuote(unzipped.file("META-INF/signature.p7s")) +
                           " --trust " + ShellQuote(daemon_->file("sign-ca.pem")),
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("PASSED"), std::string::npos) << out;

  // The older form of the bundle route still answers.
  CurlResult old = Curl("/api/v1/documents/bundle?id=" + id, "clerk", "-o /dev/null");
  EXPECT_EQ(old.status, 200) << old.body;
}

// The spool files are reused (daemon/upload.h SpoolPool): a short document
// after a long one must be archived and served as exactly its own bytes,
// and a body cut short leaves no bytes of it in the spool.
TEST_F(DaemonDocumentsTest, ReusedSpoolNeverMixesDocumentsAndACutBodyLeavesNothing) {
  const std::string long_doc = daemon_->file("spool-long.bin");
  const std::string short_doc = daemon_->file("spool-short.txt");
  std::string data;
  for (uint32_t i = 0; i < 300 * 1024; ++i) data += static_cast<char>('A' + i % 26);
  WriteTestFile(long_doc, data);
  WriteTestFile(short_doc, "Thông báo ngắn.\n");
  const std::string long_id = SubmitNotice(long_doc, "dài");
  const std::string short_id = SubmitNotice(short_doc, "ngắn");
  ASSERT_FALSE(long_id.empty());
  ASSERT_FALSE(short_id.empty());
  for (const auto& [id, original] : {std::pair{short_id, short_doc}, std::pair{long_id, long_doc}}) {
    const std::string got = daemon_->file("spool-fetched-" + id);
    ASSERT_EQ(Cli("fetch " + id + " --content -o " + ShellQuote(got)).rc, 0);
    EXPECT_EQ(RunCommand("cmp " + ShellQuote(original) + " " + ShellQuote(got)), 0) << id;
  }

  // A submission whose body stops 7,000 bytes short of its Content-Length:
  // the daemon's read times out (5 s in the harness) and it answers 400.
  const std::string spool = daemon_->state_dir() + "/spool";
  auto spool_sizes = [&] {
    std::vector<int64_t> sizes;
    DIR* d = ::opendir(spool.c_str());
    if (d == nullptr) return sizes;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      struct stat st {};
      if (::stat((spool + "/" + e->d_name).c_str(), &st) == 0) sizes.push_back(st.st_size);
    }
    ::closedir(d);
    return sizes;
  };
  {
    std::string token = ReadTestFile(daemon_->file("clerk.token"));
    while (!token.empty() && token.back() == '\n') token.pop_back();
    auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
    ASSERT_TRUE(c && c->handshake_ok());
    ASSERT_TRUE(c->Write("POST /api/v1/documents?type=notice&recipients=" +
                         std::string(DaemonHarness::kPeerUnion) +
                         "&name=cut.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                         token +
                         "\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000"
                         "\r\n\r\n" +
                         std::string(3000, 'Z')));
    std::string resp = c->Read(15000, "}\n");
    ASSERT_TRUE(resp.starts_with("HTTP/1.1 400")) << resp << "\n" << daemon_->Log();
  }
  bool all_empty = false;
  for (int i = 0; i < 200 && !all_empty; ++i) {
    std::vector<int64_t> sizes = spool_sizes();
    all_empty = !sizes.empty();
    for (int64_t s : sizes) all_empty = all_empty && s == 0;
    if (!all_empty) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(all_empty) << "spool files kept bytes of the cut request\n" << daemon_->Log();
  CliRun status = Cli("list --direction sent --json", "auditor");
  EXPECT_EQ(status.out.find("cut.txt"), std::string::npos) << status.out;
}

TEST_F(DaemonDocumentsTest, DirectiveWithOfficerSignatureGetsReference) {
  const std::string file = daemon_->file("directive.txt");
  WriteTestFile(file, "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");
  const std::string p7s = daemon_->file("directive.txt.p7s");
  std::string out;
  ASSERT_EQ(RunCommand("openssl cms -sign -binary -cades -md sha256 -outform DER -in " +
                           ShellQuote(file) + " -signer " + ShellQuote(daemon_->file("signer.pem")) +
                           " -inkey " + ShellQuote(daemon_->file("signer-key.pem")) + " -out " +
                           ShellQuote(p7s),
                       &out),
            0)
      << out;
  CliRun r = Cli("submit " + ShellQuote(file) + " " + ShellQuote(p7s) + " --type directive --to " +
              DaemonHarness::kPeerUnion + " --subject 'Họp ban chấp hành'", "officer");
  ASSERT_EQ(r.rc, 0) << r.out << daemon_->Log();
  EXPECT_NE(r.out.find("Sent:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1/20"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/CT-"), std::string::npos) << r.out;

  // Without the chair's signature the policy refuses: 403, nothing archived.
  CliRun refused = Cli("submit " + ShellQuote(file) + " --type directive --to " +
                    DaemonHarness::kPeerUnion);
  EXPECT_EQ(refused.rc, 77) << refused.out;
  EXPECT_NE(refused.out.find("Refused by the federation policy"), std::string::npos) << refused.out;
}

TEST_F(DaemonDocumentsTest, AuditorCannotSubmitAndNoTokenIsUnauthorized) {
  const std::string file = daemon_->file("auditor.txt");
  WriteTestFile(file, "kiểm toán\n");
  CliRun r = Cli("submit " + ShellQuote(file) + " --type notice --to " + DaemonHarness::kPeerUnion,
              "auditor");
  EXPECT_EQ(r.rc, 77) << r.out;
  EXPECT_NE(r.out.find("auditor"), std::string::npos) << r.out;

  CurlResult none = Curl("/api/v1/documents", "");
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_NE(none.body.find("unauthorized"), std::string::npos) << none.body;

  WriteTestFile(daemon_->file("bogus.token"), "spt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
  CliRun bogus = Cli("list", "bogus");
  EXPECT_EQ(bogus.rc, 77) << bogus.out;
  CliRun no_credentials = Cli("list", "");
  EXPECT_EQ(no_credentials.rc, 64) << no_credentials.out;
  EXPECT_NE(no_credentials.out.find("--token-file"), std::string::npos) << no_credentials.out;
  // Admins manage the appliance; they do not read documents.
  EXPECT_EQ(Curl("/api/v1/documents", "admin").status, 403);
}

TEST_F(DaemonDocumentsTest, UnknownIdIsNotFoundProblem) {
  const std::string id = "00000000-0000-4000-8000-000000000000";
  CliRun r = Cli("status " + id);
  EXPECT_EQ(r.rc, 66) << r.out;
  EXPECT_NE(r.out.find("Not found"), std::string::npos) << r.out;
  CliRun vi = Cli("--lang vi status " + id);
  EXPECT_EQ(vi.rc, 66);
  EXPECT_NE(vi.out.find("Không tìm thấy"), std::string::npos) << vi.out;
  for (const char* part : {"", "/content", "/signature", "/bundle", "/receipts"}) {
    CurlResult c = Curl("/api/v1/documents/" + id + part, "clerk");
    EXPECT_EQ(c.status, 404) << part << ": " << c.body;
    EXPECT_NE(c.body.find("problems/not-found"), std::string::npos) << c.body;
  }
  CliRun fetch = Cli("fetch " + id + " -o " + ShellQuote(daemon_->file("never")));
  EXPECT_EQ(fetch.rc, 66);
  struct stat st {};
  EXPECT_NE(::stat(daemon_->file("never").c_str(), &st), 0);
}

TEST_F(DaemonDocumentsTest, BadFiltersAreBadRequests) {
  for (const char* q : {"?direction=sideways", "?limit=0", "?limit=100000", "?limit=ten",
                        "?since=yesterday", "?cursor=-1", "?bogus=1", "?type=",
                        "?since=2026-12-06&until=2026-01-01", "?type=a&type=b",
                        "?cursor=99999999999999999999999", "?limit=9999999999999999999"}) {
    CurlResult c = Curl(std::string("/api/v1/documents") + q, "clerk");
    EXPECT_EQ(c.status, 400) << q << ": " << c.body;
    EXPECT_NE(c.body.find("problems/bad-request"), std::string::npos) << c.body;
  }
  EXPECT_EQ(Curl("/api/v1/inbox?cursor=5", "clerk").status, 400);
  CliRun r = Cli("list --direction sideways");
  EXPECT_EQ(r.rc, 64) << r.out;
  EXPECT_NE(r.out.find("direction"), std::string::npos) << r.out;
  std::string out;
  EXPECT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " list --server http://127.0.0.1:1 --ca " +
                           ShellQuote(daemon_->file("tls-ca.pem")) + " --token-file " +
                           ShellQuote(daemon_->file("clerk.token")),
                       &out),
            64)
      << out;
  EXPECT_NE(out.find("https://"), std::string::npos) << out;
}

// daemon/request_target.h end to end (the pure cases: request_target_test):
// 400 for what cannot be a target, 404 for what matches no route, the
// repeated submission parameter refused before the body, and the daemon
// keeps serving.
TEST_F(DaemonDocumentsTest, MalformedRequestTargetsAreBadRequestsOrNotFound) {
  for (const char* p : {"/api/v1/documents/x%2Fcontent", "/api/v1/documents/%2e%2E",
                        "/api/v1/documents/../health", "/api/v1/documents/a%00b",
                        "/api/v1/documents/%G1", "/api/v1/documents?type=a%00b",
                        "/api/v1/documents?subject=%C3", "/api/v1/documents/bundle?id=a&id=b"}) {
    CurlResult c = Curl(p, "clerk", "--path-as-is");
    EXPECT_EQ(c.status, 400) << p << ": " << c.body;
    EXPECT_NE(c.body.find("problems/bad-request"), std::string::npos) << p << ": " << c.body;
  }
  for (const char* p : {"/api/v1/health/", "/api//v1/health", "/api/v1/documents/"}) {
    CurlResult c = Curl(p, "clerk", "--path-as-is");
    EXPECT_EQ(c.status, 404) << p << ": " << c.body;
  }
  CurlResult before = Curl("/api/v1/documents?limit=100", "clerk");
  ASSERT_EQ(before.status, 200) << before.body;
  const std::string submit = std::string("/api/v1/documents?type=notice&type=directive&recipients=") +
                             DaemonHarness::kPeerUnion + "&name=a.txt";
  CurlResult twice = Curl(submit, "clerk",
                          "-X POST -H 'Content-Type: application/octet-stream' --data-binary x");
  EXPECT_EQ(twice.status, 400) << twice.body;
  EXPECT_NE(twice.body.find("repeated"), std::string::npos) << twice.body;
  CurlResult after = Curl("/api/v1/documents?limit=100", "clerk");
  EXPECT_EQ(after.body, before.body);  // nothing archived
  EXPECT_NE(Curl("/api/v1/health", "").status, 0);
}

TEST_F(DaemonDocumentsTest, ListPagesNewestFirstWithCursor) {
  const std::string file = daemon_->file("page.txt");
  WriteTestFile(file, "trang\n");
  std::string a = SubmitNotice(file, "một");
  std::string b = SubmitNotice(file, "hai");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  CurlResult first = Curl("/api/v1/documents?direction=sent&limit=1", "clerk");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_NE(first.body.find(b), std::string::npos) << first.body;
  std::string cursor = JsonField(first.body, "next_cursor");
  ASSERT_FALSE(cursor.empty()) << first.body;
  CurlResult second = Curl("/api/v1/documents?direction=sent&limit=1&cursor=" + cursor, "clerk");
  ASSERT_EQ(second.status, 200);
  EXPECT_NE(second.body.find(a), std::string::npos) << second.body;
  CurlResult since = Curl("/api/v1/documents?since=2000-01-01&until=2000-12-31", "clerk");
  EXPECT_EQ(since.status, 200);
  EXPECT_NE(since.body.find("\"documents\":[]"), std::string::npos) << since.body;
  CliRun inbox = Cli("inbox");
  EXPECT_EQ(inbox.rc, 0) << inbox.out;
}

TEST_F(DaemonDocumentsTest, CheckpointAndConsistencyOnBothListeners) {
  const std::string file = daemon_->file("cp.txt");
  WriteTestFile(file, "checkpoint\n");
  ASSERT_FALSE(SubmitNotice(file, "cp").empty());
  CurlResult cp = Curl("/api/v1/checkpoint", "auditor");
  ASSERT_EQ(cp.status, 200) << cp.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(cp.body, m, std::regex("\"size\":([0-9]+)"))) << cp.body;
  const std::string size = m[1];
  EXPECT_NE(cp.body.find("\"origin\":\"ldld-thu-nghiem/archive\""), std::string::npos) << cp.body;
  EXPECT_FALSE(JsonField(cp.body, "signature").empty());

  CurlResult proof = Curl("/api/v1/checkpoint/consistency?from=1&to=" + size, "auditor");
  EXPECT_EQ(proof.status, 200) << proof.body;
  EXPECT_NE(proof.body.find("\"hashes\":["), std::string::npos) << proof.body;
  EXPECT_EQ(Curl("/api/v1/checkpoint/consistency?from=0&to=1", "auditor").status, 400);
  EXPECT_EQ(Curl("/api/v1/checkpoint/consistency?from=1&to=999999", "auditor").status, 400);
  EXPECT_EQ(Curl("/api/v1/checkpoint/consistency?from=1", "auditor").status, 400);
  EXPECT_EQ(
      Curl("/api/v1/checkpoint/consistency?from=1&to=99999999999999999999", "auditor").status,
      400);
  EXPECT_EQ(Curl("/api/v1/checkpoint", "clerk").status, 403);

  std::string peer = " --cert " + ShellQuote(daemon_->file("peer.pem")) + " --key " +
                     ShellQuote(daemon_->file("peer-key.pem"));
  CurlResult from_peer = Curl("/api/v1/checkpoint", "", peer, true);
  EXPECT_EQ(from_peer.status, 200) << from_peer.body;
  EXPECT_NE(from_peer.body.find("\"size\":"), std::string::npos);
  CurlResult stranger = Curl("/api/v1/checkpoint", "",
                             " --cert " + ShellQuote(daemon_->file("stranger.pem")) + " --key " +
                                 ShellQuote(daemon_->file("stranger-key.pem")),
                             true);
  EXPECT_EQ(stranger.status, 403) << stranger.body;
}

}  // namespace
}  // namespace sealpost::testing
