// crypto/smime and client/smtp_client: the S/MIME document mail checked by
// the stock tools (openssl smime -verify, gpgsm), its structure (CRLF,
// encoded subject, the attachment equal to the bundle), the refusal of seal
// certificates unfit for mail, and SMTP delivery to a real server
// (aiosmtpd on 127.0.0.1: plain, STARTTLS, 4xx/5xx answers, server down).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "client/smtp_client.h"
#include "crypto/smime.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::CertSpec;
using testing::CertToPem;
using testing::Issued;
using testing::KeyToPkcs8Pem;
using testing::ReadTestFile;
using testing::RunCommand;
using testing::ShellQuote;
using testing::SmtpSink;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

constexpr char kFrom[] = "ldld-thu@congdoan.example";

// Test helper: the body of the MIME part whose headers contain `marker`,
// base64-decoded; "" if absent.
std::string PartBody(const std::string& msg, const std::string& marker) {
  size_t h = msg.find(marker);
  if (h == std::string::npos) return "";
  size_t b = msg.find("\r\n\r\n", h);
  if (b == std::string::npos) return "";
  b += 4;
  size_t e = msg.find("\r\n--", b);
  std::string b64;
  for (size_t i = b; i < e; ++i) {
    if (msg[i] != '\r' && msg[i] != '\n') b64 += msg[i];
  }
  auto d = Base64Decode(b64);
  return d ? *d : "";
}

// The bytes the signature covers: between the first outer boundary line and
// the CRLF before the next one.
std::string SignedPart(const std::string& msg) {
  size_t bp = msg.find("boundary=\"");
  if (bp == std::string::npos) return "";
  bp += 10;
  std::string boundary = msg.substr(bp, msg.find('"', bp) - bp);
  std::string delim = "\r\n--" + boundary + "\r\n";
  size_t s = msg.find(delim);
  if (s == std::string::npos) return "";
  s += delim.size();
  size_t e = msg.find("\r\n--" + boundary, s);
  return msg.substr(s, e - s);
}

class SmimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Mail Test CA/O=Test/C=VN"));
    WriteTestFile(tmp_.file("ca.pem"), CertToPem(ca_->cert()));
    signer_ = MakeSigner(kFrom, "emailProtection");
    mail_.from = kFrom;
    mail_.from_name = "Liên đoàn Lao động Thử";
    mail_.to = {"cd-c@example.org"};
    mail_.document_id = "0193a0b1-7c3e-7000-8000-000000000001";
    mail_.type = "Chỉ thị";
    mail_.subject = "Về việc tổ chức hội nghị ban chấp hành công đoàn cơ sở quý IV năm 2026";
    mail_.reference = "12/2026/CT-LĐLĐ";
    mail_.issuer = "LĐLĐ Thử";
    mail_.issued_at = "2026-12-07T01:00:00Z";
    mail_.verify_url = "https://127.0.0.1:8443/verify";
    for (int i = 0; i < 3000; ++i) mail_.bundle += static_cast<char>((i * 7919) & 0xff);
  }

  std::unique_ptr<crypto::SoftwareKeySigner> MakeSigner(const std::string& email,
                                                        const std::string& eku) {
    CertSpec spec;
    spec.subject = "/CN=Con dấu LĐLĐ Thử/O=LĐLĐ Thử/C=VN";
    spec.email = email;
    spec.ext_key_usage = eku;
    Issued is = ca_->Issue(spec);
    auto s = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(is.key),
                                                         std::move(is.cert));
    EXPECT_TRUE(s.has_value());
    return s ? std::move(*s) : nullptr;
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  crypto::DocumentMail mail_;
};

TEST_F(SmimeTest, BuildSignedMailVerifiesWithOpensslSmimeAndGpgsm) {
  auto m = crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, mail_);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  WriteTestFile(tmp_.file("msg.eml"), m->message);
  std::string out;
  int rc = RunCommand("openssl smime -verify -CAfile " + ShellQuote(tmp_.file("ca.pem")) +
                          " -in " + ShellQuote(tmp_.file("msg.eml")) + " -out " +
                          ShellQuote(tmp_.file("signed.txt")),
                      &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Verification successful"), std::string::npos) << out;

  // gpgsm, as a mail client's S/MIME engine would, on the signed part and
  // the detached signature.
  std::string part = SignedPart(m->message);
  std::string p7s = PartBody(m->message, "Content-Type: application/pkcs7-signature");
  ASSERT_FALSE(part.empty());
  ASSERT_FALSE(p7s.empty());
  WriteTestFile(tmp_.file("part"), part);
  WriteTestFile(tmp_.file("smime.p7s"), p7s);
  EXPECT_TRUE(testing::OpensslCmsVerifies(tmp_.file("smime.p7s"), tmp_.file("part"),
                                          tmp_.file("ca.pem")));
  testing::GpgsmHome gpg(tmp_.path());
  ASSERT_TRUE(gpg.TrustCa(ca_->cert()));
  EXPECT_TRUE(gpg.Verifies(tmp_.file("smime.p7s"), tmp_.file("part"), 1));

  // The attachment is the bundle, byte for byte.
  EXPECT_EQ(PartBody(m->message, "application/vnd.etsi.asic-s+zip"), mail_.bundle);
  // A changed byte of the signed part makes it fail.
  std::string tampered = m->message;
  size_t t = tampered.find("Content-Type: text/plain");
  ASSERT_NE(t, std::string::npos);
  tampered[t + 14] = 'T';
  WriteTestFile(tmp_.file("tampered.eml"), tampered);
  EXPECT_NE(RunCommand("openssl smime -verify -CAfile " + ShellQuote(tmp_.file("ca.pem")) +
                           " -in " + ShellQuote(tmp_.file("tampered.eml")) + " -out /dev/null",
                       &out),
            0)
      << out;
}

TEST_F(SmimeTest, MessageStructureIsCanonicalWithEncodedHeaders) {
  mail_.date = 1796605200;  // 2026-12-07 01:00:00 UTC, a Monday
  mail_.message_id = "fixed-1@congdoan.example";
  auto m = crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, mail_);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  const std::string& msg = m->message;
  // Every line ends in CRLF and none is longer than 78 characters.
  size_t start = 0;
  for (size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] == '\n') {
      ASSERT_GT(i, 0u);
      ASSERT_EQ(msg[i - 1], '\r') << "bare LF at " << i;
      EXPECT_LE(i - 1 - start, 78u) << msg.substr(start, i - start);
      start = i + 1;
    } else if (msg[i] == '\r') {
      ASSERT_TRUE(i + 1 < msg.size() && msg[i + 1] == '\n') << "bare CR at " << i;
    } else {
      ASSERT_LT(static_cast<unsigned char>(msg[i]), 0x80u) << "8-bit byte at " << i;
    }
  }
  EXPECT_EQ(start, msg.size());
  size_t headers_end = msg.find("\r\n\r\n");
  std::string headers = msg.substr(0, headers_end + 2);
  for (const char* h : {"\r\nTo: cd-c@example.org\r\n", "\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n",
                        "\r\nMessage-ID: <fixed-1@congdoan.example>\r\n", "\r\nMIME-Version: 1.0\r\n",
                        "\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n micalg=sha-256; boundary=\""}) {
    EXPECT_NE(("\r\n" + headers).find(h), std::string::npos) << h << "\n" << headers;
  }
  EXPECT_EQ(headers.rfind("From: =?UTF-8?B?", 0), 0u) << headers;
  EXPECT_NE(headers.find("?=\r\n <ldld-thu@congdoan.example>\r\n"), std::string::npos);
  EXPECT_EQ(m->message_id, "fixed-1@congdoan.example");

  // The Subject: encoded-words of at most 75 characters that decode to the
  // UTF-8 text.
  size_t s = headers.find("\r\nSubject: ");
  ASSERT_NE(s, std::string::npos);
  s += 11;
  size_t e = s;
  while (true) {
    e = headers.find("\r\n", e);
    if (headers[e + 2] != ' ') break;
    e += 2;
  }
  std::string folded = headers.substr(s, e - s);
  std::string decoded;
  size_t p = 0;
  int words = 0;
  while ((p = folded.find("=?UTF-8?B?", p)) != std::string::npos) {
    size_t q = folded.find("?=", p + 10);
    ASSERT_NE(q, std::string::npos);
    EXPECT_LE(q + 2 - p, 75u);
    auto d = Base64Decode(folded.substr(p + 10, q - p - 10));
    ASSERT_TRUE(d.has_value());
    decoded += *d;
    p = q + 2;
    ++words;
  }
  EXPECT_GT(words, 1);
  EXPECT_EQ(decoded, crypto::DocumentMailSubject(mail_));
  EXPECT_EQ(decoded, "Chỉ thị 12/2026/CT-LĐLĐ: " + mail_.subject);

  // The text: both languages, the reference, the issuer, the desk.
  std::string text = PartBody(msg, "text/plain; charset=UTF-8");
  EXPECT_NE(text.find("Số, ký hiệu: 12/2026/CT-LĐLĐ\r\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Reference number: 12/2026/CT-LĐLĐ\r\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Issuer: LĐLĐ Thử\r\n"), std::string::npos);
  EXPECT_NE(text.find("to the verification desk: https://127.0.0.1:8443/verify"),
            std::string::npos) << text;
  EXPECT_NE(text.find("vào bàn kiểm tra: https://127.0.0.1:8443/verify"), std::string::npos);
  EXPECT_EQ(text.find("\r\r"), std::string::npos);
  EXPECT_NE(msg.find("Content-Disposition: attachment;\r\n filename=\"" + mail_.document_id +
                     ".asics\""),
            std::string::npos);
}

TEST(SmimeUnitTest, CanonicalCrlfTurnsEveryLineEndIntoCrlf) {
  EXPECT_EQ(crypto::CanonicalCrlf("a\nb\r\nc\rd\n\n"), "a\r\nb\r\nc\r\nd\r\n\r\n");
  EXPECT_EQ(crypto::CanonicalCrlf("x"), "x");
}

TEST(SmimeUnitTest, EncodeHeaderTextKeepsShortAsciiAndNeverSplitsUtf8) {
  EXPECT_EQ(crypto::EncodeHeaderText("Plain subject"), "Plain subject");
  EXPECT_EQ(crypto::EncodeHeaderText("a=?b"), "=?UTF-8?B?YT0/Yg==?=");
  std::string viet;
  for (int i = 0; i < 30; ++i) viet += "ệ";  // 3 bytes each
  std::string enc = crypto::EncodeHeaderText(viet);
  size_t p = 0;
  while ((p = enc.find("=?UTF-8?B?", p)) != std::string::npos) {
    size_t q = enc.find("?=", p + 10);
    auto d = Base64Decode(enc.substr(p + 10, q - p - 10));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->size() % 3, 0u) << "a word split a UTF-8 sequence";
    p = q + 2;
  }
}

TEST(SmimeUnitTest, HeaderInjectionIsEncodedAway) {
  std::string enc = crypto::EncodeHeaderText("x\r\nBcc: victim@example.org");
  EXPECT_EQ(enc.rfind("=?UTF-8?B?", 0), 0u);
  // Only folding line breaks (CRLF SP) can appear.
  for (size_t i = enc.find('\n'); i != std::string::npos; i = enc.find('\n', i + 1)) {
    ASSERT_LT(i + 1, enc.size());
    EXPECT_EQ(enc[i + 1], ' ');
  }
}

TEST(SmimeUnitTest, MailAddressesAreCheckedStrictly) {
  EXPECT_TRUE(crypto::IsMailAddress("ldld-thu@congdoan.example"));
  EXPECT_TRUE(crypto::IsMailAddress("a.b+c@x-y.z"));
  for (const char* bad : {"", "a", "@x.y", "a@", "a@@b", "a b@c.d", "a@b..c", "a@-b.c",
                          "a\r\n@b.c", "<a@b.c>", "a@b.c>", ".a@b.c", "a@b_c.d"}) {
    EXPECT_FALSE(crypto::IsMailAddress(bad)) << bad;
  }
}

TEST_F(SmimeTest, SealWithoutRfc822NameIsRefused) {
  auto signer = MakeSigner("", "emailProtection");
  auto m = crypto::BuildDocumentMail(*signer, crypto::KeyRef{"seal"}, mail_);
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
  EXPECT_NE(m.error().message().find("rfc822Name"), std::string::npos) << m.error().message();
  EXPECT_NE(m.error().message().find(kFrom), std::string::npos) << m.error().message();
}

TEST_F(SmimeTest, SealForAnotherAddressIsRefused) {
  auto signer = MakeSigner("other@congdoan.example", "emailProtection");
  auto m = crypto::BuildDocumentMail(*signer, crypto::KeyRef{"seal"}, mail_);
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().message().find("other@congdoan.example"), std::string::npos)
      << m.error().message();
}

TEST_F(SmimeTest, SealWithoutEmailProtectionIsRefused) {
  for (const char* eku : {"", "clientAuth"}) {
    auto signer = MakeSigner(kFrom, eku);
    auto m = crypto::BuildDocumentMail(*signer, crypto::KeyRef{"seal"}, mail_);
    ASSERT_FALSE(m.has_value()) << eku;
    EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
    EXPECT_NE(m.error().message().find("emailProtection"), std::string::npos)
        << m.error().message();
  }
}

TEST_F(SmimeTest, BadAddressesAndEmptyBundleAreRefused) {
  auto m1 = mail_;
  m1.to = {"x@y.z\r\nBcc: v@w.x"};
  EXPECT_FALSE(crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, m1).has_value());
  auto m2 = mail_;
  m2.to.clear();
  EXPECT_FALSE(crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, m2).has_value());
  auto m3 = mail_;
  m3.bundle.clear();
  EXPECT_FALSE(crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, m3).has_value());
}

// --- SMTP -----------------------------------------------------------------

TEST(SmtpDotStuffTest, LinesStartingWithADotAreDoubled) {
  EXPECT_EQ(client::DotStuff(".a\r\nb\r\n..c\r\n."), "..a\r\nb\r\n...c\r\n..\r\n");
  EXPECT_EQ(client::DotStuff("x"), "x\r\n");
}

class SmtpTest : public SmimeTest {
 protected:
  client::SmtpOptions Options(int port) {
    client::SmtpOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_seconds = 10;
    return o;
  }
};

TEST_F(SmtpTest, SignedMailArrivesByteForByteAndVerifies) {
  auto sink = SmtpSink::Start(tmp_.file("sink"));
  ASSERT_TRUE(sink);
  auto m = crypto::BuildDocumentMail(*signer_, crypto::KeyRef{"seal"}, mail_);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  auto r = client::SendMail(Options(sink->port()), kFrom, mail_.to, m->message);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->code, 250);
  EXPECT_EQ(r->queue_id, "SINK1");
  auto got = sink->Messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], m->message);
  EXPECT_EQ(sink->Envelopes()[0], std::string(kFrom) + "\ncd-c@example.org\n");
  WriteTestFile(tmp_.file("got.eml"), got[0]);
  std::string out;
  EXPECT_EQ(RunCommand("openssl smime -verify -CAfile " + ShellQuote(tmp_.file("ca.pem")) +
                           " -in " + ShellQuote(tmp_.file("got.eml")) + " -out /dev/null",
                       &out),
            0)
      << out;
  EXPECT_EQ(PartBody(got[0], "application/vnd.etsi.asic-s+zip"), mail_.bundle);
}

TEST_F(SmtpTest, DotLinesSurviveTheTransfer) {
  auto sink = SmtpSink::Start(tmp_.file("sink"));
  ASSERT_TRUE(sink);
  std::string msg = "Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend\r\n";
  auto r = client::SendMail(Options(sink->port()), kFrom, {"a@b.example"}, msg);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(sink->Messages().size(), 1u);
  EXPECT_EQ(sink->Messages()[0], msg);
}

TEST_F(SmtpTest, PermanentRefusalIsPermissionDeniedAndTemporaryIsUnavailable) {
  auto sink = SmtpSink::Start(tmp_.file("sink"));
  ASSERT_TRUE(sink);
  sink->SetReply("554 5.7.1 rejected by policy");
  auto r = client::SendMail(Options(sink->port()), kFrom, {"a@b.example"}, "Subject: x\r\n\r\nx\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  EXPECT_NE(r.error().message().find("554 5.7.1 rejected by policy"), std::string::npos)
      << r.error().message();
  sink->SetReply("451 4.3.0 try again later");
  r = client::SendMail(Options(sink->port()), kFrom, {"a@b.example"}, "Subject: x\r\n\r\nx\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().message().find("451"), std::string::npos) << r.error().message();
  EXPECT_TRUE(sink->Messages().empty());
}

TEST_F(SmtpTest, ServerDownIsUnavailable) {
  auto sink = SmtpSink::Start(tmp_.file("sink"));
  ASSERT_TRUE(sink);
  int port = sink->port();
  sink->Stop();
  auto r = client::SendMail(Options(port), kFrom, {"a@b.example"}, "Subject: x\r\n\r\nx\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.error().message();
}

TEST_F(SmtpTest, StartTlsChecksTheServerCertificate) {
  CertSpec server;
  server.subject = "/CN=127.0.0.1";
  server.key_usage = "critical,digitalSignature,keyEncipherment";
  server.ext_key_usage = "serverAuth";
  server.subject_alt_name = "IP:127.0.0.1";
  Issued s = ca_->Issue(server);
  WriteTestFile(tmp_.file("server.pem"), CertToPem(s.cert.get()));
  WriteTestFile(tmp_.file("server.key"), KeyToPkcs8Pem(s.key.get()));
  auto sink = SmtpSink::Start(tmp_.file("sink"), 0, tmp_.file("server.pem"), tmp_.file("server.key"));
  ASSERT_TRUE(sink);

  // Without STARTTLS the server (which requires it) refuses MAIL.
  auto plain = client::SendMail(Options(sink->port()), kFrom, {"a@b.example"}, "Subject: p\r\n\r\np\r\n");
  EXPECT_FALSE(plain.has_value());

  auto o = Options(sink->port());
  o.starttls = true;
  o.ca = tmp_.file("ca.pem");
  auto r = client::SendMail(o, kFrom, {"a@b.example"}, "Subject: tls\r\n\r\nover TLS\r\n");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(sink->Messages().size(), 1u);
  EXPECT_EQ(sink->Messages()[0], "Subject: tls\r\n\r\nover TLS\r\n");

  // Another CA: the server is not trusted, nothing is sent.
  TestCa other = TestCa::CreateRoot("/CN=Other CA/C=VN");
  WriteTestFile(tmp_.file("other.pem"), CertToPem(other.cert()));
  o.ca = tmp_.file("other.pem");
  auto bad = client::SendMail(o, kFrom, {"a@b.example"}, "Subject: no\r\n\r\nno\r\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kUnavailable);
  EXPECT_EQ(sink->Messages().size(), 1u);
}

}  // namespace
}  // namespace sealpost
