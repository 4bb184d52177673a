// client::HttpsClient against a real sealpostd: keep-alive, streamed
// multipart upload, client certificates, problem+json -> Status, bounded
// responses, and a server whose certificate does not match.
#include <string>

#include <gtest/gtest.h>

#include "client/https_client.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::client {
namespace {

using testing::DaemonHarness;
using testing::DaemonOptions;

class ClientHttpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.user_cert_role = "clerk";
    daemon_ = DaemonHarness::Start(o).release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  static ClientOptions Options(bool peer = false) {
    ClientOptions o;
    o.host = "127.0.0.1";
    o.port = peer ? daemon_->peer_port() : daemon_->user_port();
    o.ca_file = daemon_->file("tls-ca.pem");
    o.timeout_seconds = 10;
    return o;
  }
  static DaemonHarness* daemon_;
};
DaemonHarness* ClientHttpsTest::daemon_ = nullptr;

TEST_F(ClientHttpsTest, GetHealthTwiceOnOneKeepAliveConnection) {
  auto c = HttpsClient::Create(Options());
  ASSERT_TRUE(c.has_value()) << c.error().message();
  for (int i = 0; i < 2; ++i) {
    auto r = (*c)->Get("/api/v1/health");
    ASSERT_TRUE(r.has_value()) << r.error().message();
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("\"union\":\"ldld-thu-nghiem\""), std::string::npos) << r->body;
    EXPECT_FALSE(r->Header("x-request-id").empty());
  }
  // Both requests came over one connection.
  std::string log = daemon_->Log();
  size_t a = log.find("route=/api/v1/health status=200");
  ASSERT_NE(a, std::string::npos) << log;
  EXPECT_NE(log.find("keep_alive=1", a), std::string::npos) << log;
}

TEST_F(ClientHttpsTest, ErrorAnswerDecodedIntoStatus) {
  auto c = HttpsClient::Create(Options());
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->Get("/api/v1/whoami", {{"Accept-Language", "vi"}});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->status, 401);
  Status s = StatusFromProblem(*r);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_TRUE(s.message().starts_with("Cần xác thực: ")) << s.message();
  auto nf = (*c)->Get("/api/v1/nothing");
  ASSERT_TRUE(nf.has_value());
  EXPECT_EQ(StatusFromProblem(*nf).code(), Code::kNotFound);
}

TEST_F(ClientHttpsTest, TokenAndClientCertificateAuthenticate) {
  std::string token = daemon_->CreateToken("auditor", "client test");
  ASSERT_FALSE(token.empty());
  auto c = HttpsClient::Create(Options());
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->Get("/api/v1/whoami", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->body.find("\"role\":\"auditor\""), std::string::npos) << r->body;

  ClientOptions o = Options();
  o.cert_file = daemon_->file("user.pem");
  o.key_file = daemon_->file("user-key.pem");
  auto cc = HttpsClient::Create(o);
  ASSERT_TRUE(cc.has_value()) << cc.error().message();
  auto w = (*cc)->Get("/api/v1/whoami");
  ASSERT_TRUE(w.has_value()) << w.error().message();
  EXPECT_EQ(w->status, 200) << w->body;
  EXPECT_NE(w->body.find("\"role\":\"clerk\""), std::string::npos) << w->body;

  ClientOptions p = Options(true);
  p.cert_file = daemon_->file("peer.pem");
  p.key_file = daemon_->file("peer-key.pem");
  auto pc = HttpsClient::Create(p);
  ASSERT_TRUE(pc.has_value());
  auto pw = (*pc)->Get("/api/v1/whoami");
  ASSERT_TRUE(pw.has_value()) << pw.error().message();
  EXPECT_NE(pw->body.find("\"union\":\"cd-ban-thu\""), std::string::npos) << pw->body;
}

TEST_F(ClientHttpsTest, PeerListenerWithoutCertificateUnavailable) {
  auto c = HttpsClient::Create(Options(true));
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->Get("/api/v1/health");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().message().find("127.0.0.1:"), std::string::npos) << r.error().message();
}

TEST_F(ClientHttpsTest, MultipartUploadStreamsFilesAndVerifies) {
  testing::WriteTestFile(daemon_->file("c.txt"), std::string(200 * 1024, 'q'));
  std::string out;
  ASSERT_EQ(testing::RunCommand("openssl cms -sign -binary -md sha256 -in " +
                                    testing::ShellQuote(daemon_->file("c.txt")) + " -signer " +
                                    testing::ShellQuote(daemon_->file("signer.pem")) + " -inkey " +
                                    testing::ShellQuote(daemon_->file("signer-key.pem")) +
                                    " -outform DER -out " +
                                    testing::ShellQuote(daemon_->file("c.txt.p7s")) + " 2>&1",
                                &out),
            0)
      << out;
  auto c = HttpsClient::Create(Options());
  ASSERT_TRUE(c.has_value());
  std::vector<FormPart> parts = {
      {"file", "Biên bản \"họp\".txt", "text/plain", daemon_->file("c.txt"), ""},
      {"signature", "c.txt.p7s", "application/pkcs7-signature", daemon_->file("c.txt.p7s"), ""}};
  auto r = (*c)->PostMultipart("/api/v1/verify", parts);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("\"indication\":\"PASSED\""), std::string::npos) << r->body;
  // And the same with the file sent raw.
  std::string b64;
  ASSERT_EQ(testing::RunCommand("base64 -w0 " + testing::ShellQuote(daemon_->file("c.txt.p7s")), &b64), 0);
  auto raw = (*c)->PostFile("/api/v1/verify", "application/octet-stream", daemon_->file("c.txt"),
                            {{"Sealpost-Signature", b64}});
  ASSERT_TRUE(raw.has_value()) << raw.error().message();
  EXPECT_NE(raw->body.find("\"indication\":\"PASSED\""), std::string::npos) << raw->body;
}

TEST_F(ClientHttpsTest, ResponseLargerThanBoundRefused) {
  ClientOptions o = Options();
  o.max_response_bytes = 64;
  auto c = HttpsClient::Create(o);
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->Get("/api/v1/health");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDataError);
  // The client recovers on a new connection.
  o.max_response_bytes = 1 << 20;
  auto c2 = HttpsClient::Create(o);
  ASSERT_TRUE(c2.has_value());
  EXPECT_TRUE((*c2)->Get("/api/v1/health").has_value());
}

TEST_F(ClientHttpsTest, ServerOfUnknownCaRefusedAndLocalhostNameAccepted) {
  ClientOptions o = Options();
  o.host = "localhost";  // the certificate names DNS:localhost: accepted
  auto ok = HttpsClient::Create(o);
  ASSERT_TRUE(ok.has_value());
  auto r = (*ok)->Get("/api/v1/health");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  // A CA bundle that does not hold the server's CA.
  ClientOptions bad = Options();
  bad.ca_file = daemon_->file("sign-ca.pem");
  auto c = HttpsClient::Create(bad);
  ASSERT_TRUE(c.has_value());
  auto f = (*c)->Get("/api/v1/health");
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code(), Code::kUnavailable);
}

TEST_F(ClientHttpsTest, CreateWithoutCaOrWithHalfACertificateFails) {
  ClientOptions o;
  EXPECT_EQ(HttpsClient::Create(o).error().code(), Code::kInvalidArgument);
  o.ca_file = daemon_->file("tls-ca.pem");
  o.cert_file = daemon_->file("user.pem");
  EXPECT_EQ(HttpsClient::Create(o).error().code(), Code::kInvalidArgument);
  o.key_file = daemon_->file("missing.pem");
  EXPECT_EQ(HttpsClient::Create(o).error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace sealpost::client
