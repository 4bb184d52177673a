// A real sealpostd on 127.0.0.1: the public verification desk (multipart and
// raw uploads, signatures made by openssl cms), body and header limits,
// malformed multipart, slow clients, unread bodies on keep-alive
// connections, and a graceful SIGTERM while a request is in flight.
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {
namespace {

using Clock = std::chrono::steady_clock;

class DaemonLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.max_body_bytes = 256 * 1024;
    o.read_timeout_seconds = 2;
    o.keepalive_timeout_seconds = 3;
    daemon_ = DaemonHarness::Start(o).release();
    if (daemon_ == nullptr) return;
    // A document and its detached CMS signature, made by OpenSSL's own tool.
    WriteTestFile(daemon_->file("doc.txt"), "Báo cáo tài chính quý III\n" + std::string(5000, 'x'));
    std::string out;
    int rc = RunCommand("openssl cms -sign -binary -md sha256 -in " +
                            ShellQuote(daemon_->file("doc.txt")) + " -signer " +
                            ShellQuote(daemon_->file("signer.pem")) + " -inkey " +
                            ShellQuote(daemon_->file("signer-key.pem")) +
                            " -outform DER -out " + ShellQuote(daemon_->file("doc.txt.p7s")) +
                            " 2>&1",
                        &out);
    EXPECT_EQ(rc, 0) << out;
    std::string tampered = ReadTestFile(daemon_->file("doc.txt"));
    tampered[3] = 'X';
    WriteTestFile(daemon_->file("tampered.txt"), tampered);
    WriteTestFile(daemon_->file("big.bin"), std::string(300 * 1024, 'b'));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  static std::string Curl(const std::string& path, const std::string& extra) {
    std::string out;
    RunCommand(daemon_->Curl(path, extra + " -w '\\n%{http_code}'") + " 2>&1", &out);
    return out;
  }

  static std::string Request(const std::string& method, const std::string& path,
                             const std::string& headers, size_t content_length) {
    return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
           "Content-Length: " + std::to_string(content_length) + "\r\n\r\n";
  }

  static DaemonHarness* daemon_;
};
DaemonHarness* DaemonLimitsTest::daemon_ = nullptr;

TEST_F(DaemonLimitsTest, VerifyMultipartSignedFilePasses) {
  std::string out = Curl("/api/v1/verify",
                         "-F " + ShellQuote("file=@" + daemon_->file("doc.txt") + ";filename=Báo cáo.txt") +
                             " -F " + ShellQuote("signature=@" + daemon_->file("doc.txt.p7s")));
  EXPECT_TRUE(out.ends_with("\n200")) << out;
  EXPECT_NE(out.find("\"indication\":\"PASSED\""), std::string::npos) << out;
  EXPECT_NE(out.find("Nguyễn Thị Duyên"), std::string::npos) << out;
}

TEST_F(DaemonLimitsTest, VerifyTamperedFileReportsFailed) {
  std::string out = Curl("/api/v1/verify",
                         "-F " + ShellQuote("file=@" + daemon_->file("tampered.txt")) + " -F " +
                             ShellQuote("signature=@" + daemon_->file("doc.txt.p7s")));
  EXPECT_TRUE(out.ends_with("\n200")) << out;
  EXPECT_NE(out.find("\"indication\":\"FAILED\""), std::string::npos) << out;
  EXPECT_NE(out.find("HASH_FAILURE"), std::string::npos) << out;
}

TEST_F(DaemonLimitsTest, VerifyRawUploadAsVietnameseTextReport) {
  std::string out = Curl(
      "/api/v1/verify",
      "--data-binary @" + ShellQuote(daemon_->file("doc.txt")) +
          " -H 'Content-Type: application/octet-stream' -H 'Accept: text/plain'"
          " -H 'Accept-Language: vi' -H \"Sealpost-Signature: $(base64 -w0 " +
          ShellQuote(daemon_->file("doc.txt.p7s")) + ")\"");
  EXPECT_TRUE(out.ends_with("\n200")) << out;
  EXPECT_NE(out.find("Nguyễn Thị Duyên"), std::string::npos) << out;
  EXPECT_EQ(out.find("\"indication\""), std::string::npos) << out;  // text, not JSON
}

TEST_F(DaemonLimitsTest, VerifyWithGarbageSignatureGets422) {
  WriteTestFile(daemon_->file("garbage.p7s"), "this is not CMS");
  std::string out = Curl("/api/v1/verify",
                         "-F " + ShellQuote("file=@" + daemon_->file("doc.txt")) + " -F " +
                             ShellQuote("signature=@" + daemon_->file("garbage.p7s")));
  EXPECT_TRUE(out.ends_with("\n422")) << out;
  EXPECT_NE(out.find("not-a-signature"), std::string::npos) << out;
}

TEST_F(DaemonLimitsTest, MalformedMultipartGets400) {
  std::string body = "this body has no boundary line at all\r\n";
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  ASSERT_TRUE(c->Write(Request("POST", "/api/v1/verify",
                               "Content-Type: multipart/form-data; boundary=XyZ\r\n", body.size()) +
                       body));
  std::string resp = c->Read(5000, "}\n");
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 400")) << resp;
  EXPECT_NE(resp.find("malformed-upload"), std::string::npos) << resp;
  // A part that is neither 'file' nor 'signature'.
  std::string out = Curl("/api/v1/verify", "-F 'other=abc'");
  EXPECT_TRUE(out.ends_with("\n400")) << out;
}

TEST_F(DaemonLimitsTest, OversizedWithExpectContinueGets413BeforeBody) {
  std::string out;
  RunCommand(daemon_->Curl("/api/v1/verify",
                           "-H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' "
                           "-H 'Sealpost-Signature: AAAA' --data-binary @" +
                               ShellQuote(daemon_->file("big.bin")) +
                               " -w '\\n%{http_code} upload=%{size_upload}'") +
                 " 2>&1",
             &out);
  EXPECT_NE(out.find("body-too-large"), std::string::npos) << out;
  EXPECT_NE(out.find("\n413 upload=0"), std::string::npos) << out;  // not one byte of the body sent
}

TEST_F(DaemonLimitsTest, OversizedWithoutExpectGets413AndConnectionClosed) {
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  ASSERT_TRUE(c->Write(Request("POST", "/api/v1/verify",
                               "Content-Type: application/octet-stream\r\nSealpost-Signature: AAAA\r\n",
                               300 * 1024)));
  std::string resp = c->Read(5000);
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 413 Request Entity Too Large")) << resp;
  EXPECT_NE(resp.find("Connection: Close"), std::string::npos) << resp;
  EXPECT_TRUE(c->closed());
}

TEST_F(DaemonLimitsTest, OversizedChunkedBodyCountedWhileStreaming) {
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  std::string head =
      "POST /api/v1/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Content-Type: application/octet-stream\r\nSealpost-Signature: AAAA\r\n\r\n";
  std::string chunk(64 * 1024, 'c');
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
  std::string body;
  for (int i = 0; i < 5; ++i) body += size + chunk + "\r\n";  // 320 KiB > 256 KiB
  ASSERT_TRUE(c->Write(head + body));
  std::string resp = c->Read(5000);
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 413")) << resp;
  EXPECT_TRUE(c->closed());
}

TEST_F(DaemonLimitsTest, OversizedHeadersGet431) {
  std::string filler(6000, 'h');
  std::string out = Curl("/api/v1/health", "-H 'X-A: " + filler + "' -H 'X-B: " + filler +
                                               "' -H 'X-C: " + filler + "'");
  EXPECT_TRUE(out.ends_with("\n431")) << out.substr(0, 300);
  // Beyond PoCo's own per-field bound (8 KiB) the request is refused too.
  std::string big = Curl("/api/v1/health", "-H 'X-Filler: " + std::string(9000, 'h') + "'");
  EXPECT_FALSE(big.ends_with("\n200")) << big.substr(0, 300);
}

TEST_F(DaemonLimitsTest, SlowClientClosedAfterTimeoutWhileOthersServed) {
  auto slow = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(slow && slow->handshake_ok());
  auto start = Clock::now();
  ASSERT_TRUE(slow->Write("GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"));  // no end
  // Another client is served meanwhile.
  std::string out = Curl("/api/v1/health", "");
  EXPECT_TRUE(out.ends_with("\n200")) << out;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  std::string resp = slow->Read(10000);
  auto waited = Clock::now() - start;
  EXPECT_TRUE(slow->closed());
  EXPECT_EQ(resp.find("200 OK"), std::string::npos) << resp;
  EXPECT_GE(waited, std::chrono::milliseconds(1500));
  EXPECT_LT(waited, std::chrono::seconds(8));
}

TEST_F(DaemonLimitsTest, UnreadBodyOnKeepAliveIsNotSmuggled) {
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  // The body of a request that is refused without reading it is itself a
  // complete request: if the server kept the connection, it would answer it.
  std::string smuggled = "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_TRUE(c->Write(Request("POST", "/api/v1/whoami", "", smuggled.size()) + smuggled));
  std::string resp = c->Read(5000);
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 405")) << resp;
  EXPECT_EQ(resp.find("HTTP/1.1", 8), std::string::npos) << resp;  // one answer only
  EXPECT_EQ(resp.find("\"union\""), std::string::npos) << resp;
  EXPECT_TRUE(c->closed());
}

TEST_F(DaemonLimitsTest, ConsumedBodyKeepsConnectionAlive) {
  std::string doc = ReadTestFile(daemon_->file("doc.txt"));
  std::string sig = ReadTestFile(daemon_->file("doc.txt.p7s"));
  std::string b64;
  ASSERT_EQ(RunCommand("base64 -w0 " + ShellQuote(daemon_->file("doc.txt.p7s")), &b64), 0);
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  ASSERT_TRUE(c->Write(Request("POST", "/api/v1/verify",
                               "Content-Type: application/octet-stream\r\nSealpost-Signature: " +
                                   b64 + "\r\n",
                               doc.size()) +
                       doc));
  std::string first = c->Read(10000, "}\n");
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200")) << first;
  EXPECT_NE(first.find("PASSED"), std::string::npos) << first;
  ASSERT_TRUE(c->Write("GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  std::string second = c->Read(5000, "}\n");
  EXPECT_TRUE(second.starts_with("HTTP/1.1 200")) << second;
  EXPECT_NE(second.find("\"union\""), std::string::npos) << second;
}

// Last: it stops the suite's daemon.
TEST_F(DaemonLimitsTest, ZzSigtermDuringSlowRequestLetsItFinishAndExitsZero) {
  std::string doc = ReadTestFile(daemon_->file("doc.txt"));
  std::string b64;
  ASSERT_EQ(RunCommand("base64 -w0 " + ShellQuote(daemon_->file("doc.txt.p7s")), &b64), 0);
  auto c = RawTls::Connect(daemon_->user_port(), daemon_->file("tls-ca.pem"));
  ASSERT_TRUE(c && c->handshake_ok());
  ASSERT_TRUE(c->Write(Request("POST", "/api/v1/verify",
                               "Content-Type: application/octet-stream\r\nSealpost-Signature: " +
                                   b64 + "\r\n",
                               doc.size())));
  // The body trickles in; SIGTERM arrives in the middle of it.
  size_t piece = doc.size() / 4 + 1;
  ASSERT_TRUE(c->Write(doc.substr(0, piece)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  for (size_t off = piece; off < doc.size(); off += piece) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ASSERT_TRUE(c->Write(doc.substr(off, piece)));
  }
  std::string resp = c->Read(10000, "}\n");
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 200")) << resp;
  EXPECT_NE(resp.find("PASSED"), std::string::npos) << resp;
  EXPECT_EQ(daemon_->Terminate(20), 0) << daemon_->Log();
  EXPECT_TRUE(daemon_->stopping_seen());
  std::string log = daemon_->Log();
  EXPECT_NE(log.find("msg=\"stopped\""), std::string::npos) << log;
}

}  // namespace
}  // namespace sealpost::testing
