// Channel webhook without processes: the HMAC signature (a vector computed
// with Python's hmac and `openssl dgst -hmac`), the payload and body
// builders, the secret file checks, the configuration section, the
// sender's outcome for each kind of answer (through a fake transport), and
// the policy's per-union channels (defaults, explicit lists, canonical
// hash). The real thing (sealpostd + signer + an HTTPS receiver in Python):
// tests/webhook_e2e_test.cc.
#include "daemon/webhook.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/config.h"
#include "policies/policy.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using sealpost::testing::TempDir;
using sealpost::testing::WriteTestFile;

constexpr const char* kSecret = "0123456789abcdef0123456789abcdef";

TEST(WebhookSignatureTest, MatchesHmacSha256OfTimestampDotBody) {
  // python3: hmac.new(secret, "1765000000.{\"a\":\"Công đoàn\"}".encode(), sha256)
  EXPECT_EQ(WebhookSignature(kSecret, 1765000000, "{\"a\":\"Công đoàn\"}"),
            "v1=0c74827a137ed06e5da1d61bd3b19f39270b00c9044e2e4e01d439211d735e47");
  // Every part counts.
  EXPECT_NE(WebhookSignature(kSecret, 1765000001, "{\"a\":\"Công đoàn\"}"),
            WebhookSignature(kSecret, 1765000000, "{\"a\":\"Công đoàn\"}"));
  EXPECT_NE(WebhookSignature("0123456789abcdef0123456789abcdeF", 1765000000, "{}"),
            WebhookSignature(kSecret, 1765000000, "{}"));
}

WebhookDocument SampleDocument() {
  WebhookDocument d;
  d.id = "7f0c2a5e-0d4b-4c53-9a7e-0b1f7c3d2e11";
  d.type = "directive";
  d.type_name = "Chỉ thị";
  d.subject = "Họp \"ban chấp hành\"\nquý IV";
  d.issuer = "ldld-ha-long";
  d.issuer_name = "Liên đoàn Lao động thành phố Hạ Long";
  d.reference = "12/2026/CT-LĐLĐ";
  d.issued_at = "2026-12-07T01:02:03Z";
  return d;
}

TEST(WebhookPayloadTest, RoundTripKeepsEveryField) {
  WebhookDocument d = SampleDocument();
  auto back = ParseWebhookPayload(WebhookPayload(d));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(back->id, d.id);
  EXPECT_EQ(back->type, d.type);
  EXPECT_EQ(back->type_name, d.type_name);
  EXPECT_EQ(back->subject, d.subject);
  EXPECT_EQ(back->issuer, d.issuer);
  EXPECT_EQ(back->issuer_name, d.issuer_name);
  EXPECT_EQ(back->reference, d.reference);
  EXPECT_EQ(back->issued_at, d.issued_at);
}

TEST(WebhookPayloadTest, ParseMalformedPayloadFailsNamingTheProblem) {
  std::string good = WebhookPayload(SampleDocument());
  struct Case {
    std::string text;
    std::string expect;
  } cases[] = {
      {"", "not JSON"},
      {"[]", "not a JSON object"},
      {"{\"id\":\"x\"}", "lacks \"type\""},
      {good.substr(0, good.size() - 1) + ",\"extra\":\"1\"}", "unknown member \"extra\""},
      {"{\"id\":1,\"type\":\"\",\"type_name\":\"\",\"subject\":\"\",\"issuer\":\"a\","
       "\"issuer_name\":\"\",\"reference\":\"\",\"issued_at\":\"\"}",
       "\"id\" is not a string"},
      {"{\"id\":\"\",\"type\":\"\",\"type_name\":\"\",\"subject\":\"\",\"issuer\":\"a\","
       "\"issuer_name\":\"\",\"reference\":\"\",\"issued_at\":\"\"}",
       "empty id"},
  };
  for (const Case& c : cases) {
    auto r = ParseWebhookPayload(c.text);
    ASSERT_FALSE(r.has_value()) << c.text;
    EXPECT_EQ(r.error().code(), Code::kDataError);
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos) << r.error().message();
  }
}

TEST(WebhookBodyTest, BodyIsEscapedJsonWithRecipientAndLinks) {
  std::string body = WebhookBody(SampleDocument(), "cd-mn-bai-chay", "https://sealpost.example.vn:9443/");
  EXPECT_EQ(body,
            "{\"event\":\"document.issued\","
            "\"notification_id\":\"7f0c2a5e-0d4b-4c53-9a7e-0b1f7c3d2e11/cd-mn-bai-chay\","
            "\"id\":\"7f0c2a5e-0d4b-4c53-9a7e-0b1f7c3d2e11\",\"type\":\"directive\","
            "\"type_name\":\"Chỉ thị\",\"subject\":\"Họp \\\"ban chấp hành\\\"\\nquý IV\","
            "\"issuer\":\"ldld-ha-long\",\"issuer_name\":\"Liên đoàn Lao động thành phố Hạ Long\","
            "\"reference\":\"12/2026/CT-LĐLĐ\",\"issued_at\":\"2026-12-07T01:02:03Z\","
            "\"recipient\":\"cd-mn-bai-chay\","
            "\"verification_url\":\"https://sealpost.example.vn:9443/api/v1/verify\","
            "\"document_url\":\"https://sealpost.example.vn:9443/api/v1/documents/"
            "7f0c2a5e-0d4b-4c53-9a7e-0b1f7c3d2e11\"}");
  std::string bare = WebhookBody(SampleDocument(), "cd-x", "");
  EXPECT_EQ(bare.find("_url"), std::string::npos);
}

TEST(WebhookSecretTest, LoadChecksModeLengthAndCharacters) {
  TempDir t;
  std::string good = t.file("good");
  WriteTestFile(good, std::string(kSecret) + "\n");
  ASSERT_EQ(::chmod(good.c_str(), 0600), 0);
  auto s = LoadWebhookSecret(good);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->view(), kSecret);  // the newline is not part of it

  ASSERT_EQ(::chmod(good.c_str(), 0640), 0);
  auto open = LoadWebhookSecret(good);
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code(), Code::kPermissionDenied);
  EXPECT_NE(open.error().message().find("mode 0640"), std::string::npos) << open.error().message();
  EXPECT_EQ(open.error().message().find(kSecret), std::string::npos);

  struct Case {
    std::string content;
    std::string expect;
  } cases[] = {
      {"short\n", "32 to 1024 characters (has 5)"},
      {std::string(1025, 'a'), "32 to 1024 characters"},
      {"0123456789abcdef 0123456789abcdef", "character 17 is not printable ASCII"},
      {std::string(kSecret) + "\n\n", "not printable ASCII"},
      {std::string(kSecret) + "\xc3\xa9", "not printable ASCII"},
  };
  for (const Case& c : cases) {
    std::string f = t.file("bad");
    WriteTestFile(f, c.content);
    ASSERT_EQ(::chmod(f.c_str(), 0600), 0);
    auto r = LoadWebhookSecret(f);
    ASSERT_FALSE(r.has_value()) << c.expect;
    EXPECT_EQ(r.error().code(), Code::kDataError);
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find(f), std::string::npos);
  }
  auto missing = LoadWebhookSecret(t.file("none"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_FALSE(LoadWebhookSecret(t.path()).has_value());  // a directory
}

TEST(WebhookSecretTest, SymlinkAndFifoAreRefusedWithoutReading) {
  TempDir t;
  std::string good = t.file("good");
  WriteTestFile(good, std::string(kSecret) + "\n");
  ASSERT_EQ(::chmod(good.c_str(), 0600), 0);
  // A link to a good secret: whoever may write the directory could point
  // it elsewhere between a check and a read; it is refused outright.
  std::string link = t.file("link");
  ASSERT_EQ(::symlink(good.c_str(), link.c_str()), 0);
  auto linked = LoadWebhookSecret(link);
  ASSERT_FALSE(linked.has_value());
  EXPECT_EQ(linked.error().code(), Code::kDataError);
  EXPECT_NE(linked.error().message().find("symbolic link"), std::string::npos) << linked.error().message();
  EXPECT_NE(linked.error().message().find(link), std::string::npos);
  // A FIFO (mode 0600) is not a regular file: refused without blocking.
  std::string fifo = t.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto piped = LoadWebhookSecret(fifo);
  ASSERT_FALSE(piped.has_value());
  EXPECT_EQ(piped.error().code(), Code::kDataError);
  EXPECT_NE(piped.error().message().find("not a regular file"), std::string::npos) << piped.error().message();
}

// --- configuration ------------------------------------------------------------

const char* kConfigHead =
    "union: ldld-ha-long\n"
    "state_dir: /var/lib/sealpost\n"
    "policy: federation.yaml\n"
    "signer_socket: /run/sealpost/signer.sock\n"
    "listeners:\n"
    "  peer: {port: 8443, certificate: tls.pem, key: tls-key.pem, client_ca: ca.pem}\n"
    "  user: {port: 9443, certificate: tls.pem, key: tls-key.pem}\n"
    "verify: {trust_anchors: roots.pem}\n";

TEST(WebhookConfigTest, ParseSectionResolvesPaths) {
  auto c = ParseConfig(std::string(kConfigHead) +
                           "webhook:\n"
                           "  public_base_url: \"https://sealpost.example.vn:9443\"\n"
                           "  ca: webhook-ca.pem\n"
                           "  timeout_seconds: 5\n"
                           "  secrets:\n"
                           "    cd-mn-bai-chay: secrets/cd-mn-bai-chay\n"
                           "    cd-b: /etc/sealpost/b.secret\n",
                       "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->webhook.public_base_url, "https://sealpost.example.vn:9443");
  EXPECT_EQ(c->webhook.ca, "/etc/sealpost/webhook-ca.pem");
  EXPECT_EQ(c->webhook.timeout_seconds, 5);
  EXPECT_EQ(c->webhook.connect_timeout_seconds, 10);
  ASSERT_EQ(c->webhook.secrets.size(), 2u);
  EXPECT_EQ(c->webhook.secrets.at("cd-mn-bai-chay"), "/etc/sealpost/secrets/cd-mn-bai-chay");
  EXPECT_EQ(c->webhook.secrets.at("cd-b"), "/etc/sealpost/b.secret");

  auto none = ParseConfig(kConfigHead, "/etc/sealpost/sealpostd.yaml");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->webhook.secrets.empty());
  EXPECT_TRUE(none->webhook.ca.empty());
}

TEST(WebhookConfigTest, ParseBadSectionReportsEveryErrorWithPosition) {
  auto c = ParseConfig(std::string(kConfigHead) +
                           "webhook:\n"
                           "  public_base_url: \"http://sealpost.example.vn\"\n"
                           "  timeout_seconds: 0\n"
                           "  secret: x\n"
                           "  secrets:\n"
                           "    Bad Union: b.secret\n"
                           "    cd-c: \"\"\n",
                       "/etc/sealpost/sealpostd.yaml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message(),
            "/etc/sealpost/sealpostd.yaml:10:20: public_base_url must be an https:// URL without "
            "query or fragment\n"
            "/etc/sealpost/sealpostd.yaml:11:20: timeout_seconds must be a decimal integer from 1 to 300\n"
            "/etc/sealpost/sealpostd.yaml:12:3: unknown key 'secret' in webhook (known: ca, "
            "connect_timeout_seconds, public_base_url, secrets, timeout_seconds)\n"
            "/etc/sealpost/sealpostd.yaml:14:5: webhook.secrets: 'Bad Union' is not a union id\n"
            "/etc/sealpost/sealpostd.yaml:15:11: webhook.secrets.cd-c must be a non-empty string");
}

// --- the sender ---------------------------------------------------------------

struct Call {
  std::string url;
  std::string body;
  client::Headers headers;
  std::string Header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return "";
  }
};

class FakeTransport : public WebhookTransport {
 public:
  FakeTransport(std::vector<Call>* calls, Result<client::Response>* answer)
      : calls_(calls), answer_(answer) {}
  Result<client::Response> Post(const std::string& url, const std::string& body,
                                const client::Headers& headers) override {
    calls_->push_back(Call{url, body, headers});
    return *answer_;
  }

 private:
  std::vector<Call>* calls_;
  Result<client::Response>* answer_;
};

const char* kPolicy =
    "federation: {id: f, name: \"Liên đoàn\"}\n"
    "unions:\n"
    "  - {id: ldld-a, name: \"LĐLĐ A\", level: district}\n"
    "  - {id: cd-hook, name: \"CĐCS Hook\", level: grassroots, parent: ldld-a,\n"
    "     webhook: \"https://bridge.example.vn/hooks/sealpost?union=cd-hook\"}\n"
    "  - {id: cd-nosecret, name: \"CĐCS không khóa\", level: grassroots, parent: ldld-a,\n"
    "     webhook: \"https://bridge.example.vn/x\"}\n"
    "  - {id: cd-plain, name: \"CĐCS thường\", level: grassroots, parent: ldld-a,\n"
    "     endpoint: \"https://cd-plain.example.vn:8443\"}\n"
    "document_types: []\n";

class WebhookSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<policies::Diagnostic> diags;
    auto p = policies::LoadPolicy({policies::PolicySource{"p.yaml", kPolicy}}, &diags);
    ASSERT_TRUE(p.has_value()) << p.error().message();
    policy_ = *p;
    std::string secret = tmp_.file("cd-hook.secret");
    WriteTestFile(secret, std::string(kSecret) + "\n");
    ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
    WebhookOptions o;
    o.public_base_url = "https://ldld-a.example.vn:9443";
    o.secret_files["cd-hook"] = secret;
    o.secret_files["cd-plain"] = secret;
    auto s = WebhookSender::Create(o, std::make_unique<FakeTransport>(&calls_, &answer_));
    ASSERT_TRUE(s.has_value()) << s.error().message();
    sender_ = std::move(*s);
  }

  storage::Job JobFor(const std::string& recipient) {
    storage::Job j;
    j.key = {SampleDocument().id, recipient, storage::Channel::kWebhook};
    j.payload = WebhookPayload(SampleDocument());
    j.attempt = 1;
    return j;
  }

  void Answer(int status) {
    client::Response r;
    r.status = status;
    answer_ = r;
  }

  TempDir tmp_;
  std::shared_ptr<const policies::Policy> policy_;
  std::vector<Call> calls_;
  Result<client::Response> answer_ = Err(Status::Unavailable("unset"));
  std::unique_ptr<WebhookSender> sender_;
};

TEST_F(WebhookSenderTest, Success2xxDeliversWithVerifiableSignature) {
  Answer(204);
  WebhookResult r = sender_->Deliver(*policy_, JobFor("cd-hook"), 1765000000);
  EXPECT_EQ(r.outcome, WebhookOutcome::kDelivered) << r.detail;
  EXPECT_EQ(r.detail, "webhook:204");
  ASSERT_EQ(calls_.size(), 1u);
  const Call& c = calls_[0];
  EXPECT_EQ(c.url, "https://bridge.example.vn/hooks/sealpost?union=cd-hook");
  EXPECT_EQ(c.body, WebhookBody(SampleDocument(), "cd-hook", "https://ldld-a.example.vn:9443"));
  EXPECT_EQ(c.Header("Sealpost-Timestamp"), "1765000000");
  EXPECT_EQ(c.Header("Sealpost-Signature"), WebhookSignature(kSecret, 1765000000, c.body));
  EXPECT_EQ(c.Header("Sealpost-Notification-Id"), SampleDocument().id + "/cd-hook");
}

TEST_F(WebhookSenderTest, AnswersMapToRetryOrRefusal) {
  struct Case {
    int status;
    WebhookOutcome outcome;
  } cases[] = {{200, WebhookOutcome::kDelivered}, {500, WebhookOutcome::kRetry},
               {503, WebhookOutcome::kRetry},     {408, WebhookOutcome::kRetry},
               {429, WebhookOutcome::kRetry},     {400, WebhookOutcome::kRefused},
               {401, WebhookOutcome::kRefused},   {404, WebhookOutcome::kRefused},
               {301, WebhookOutcome::kRefused}};
  for (const Case& c : cases) {
    Answer(c.status);
    WebhookResult r = sender_->Deliver(*policy_, JobFor("cd-hook"), 1765000000);
    EXPECT_EQ(r.outcome, c.outcome) << c.status << ": " << r.detail;
    if (c.outcome != WebhookOutcome::kDelivered) {
      EXPECT_NE(r.detail.find("answered HTTP " + std::to_string(c.status)), std::string::npos)
          << r.detail;
    }
  }
  answer_ = Err(Status::Unavailable("127.0.0.1:1: connection refused"));
  EXPECT_EQ(sender_->Deliver(*policy_, JobFor("cd-hook"), 1).outcome, WebhookOutcome::kRetry);
  answer_ = Err(Status::InvalidArgument("webhook x is not an https URL"));
  EXPECT_EQ(sender_->Deliver(*policy_, JobFor("cd-hook"), 1).outcome, WebhookOutcome::kRefused);
}

TEST_F(WebhookSenderTest, MissingSecretOrUrlIsRetriedAndBadPayloadRefusedWithoutSending) {
  Answer(200);
  WebhookResult nosecret = sender_->Deliver(*policy_, JobFor("cd-nosecret"), 1);
  EXPECT_EQ(nosecret.outcome, WebhookOutcome::kRetry);
  EXPECT_EQ(nosecret.detail, "no webhook secret is configured for union cd-nosecret");
  WebhookResult nourl = sender_->Deliver(*policy_, JobFor("cd-plain"), 1);
  EXPECT_EQ(nourl.outcome, WebhookOutcome::kRetry);
  EXPECT_EQ(nourl.detail, "the registry names no webhook for union cd-plain");
  storage::Job bad = JobFor("cd-hook");
  bad.payload = "{}";
  EXPECT_EQ(sender_->Deliver(*policy_, bad, 1).outcome, WebhookOutcome::kRefused);
  storage::Job other = JobFor("cd-hook");
  other.key.document_id = "another";
  EXPECT_EQ(sender_->Deliver(*policy_, other, 1).outcome, WebhookOutcome::kRefused);
  EXPECT_TRUE(calls_.empty());
}

TEST(WebhookSenderCreateTest, CreateWithUnreadableSecretFailsNamingTheUnion) {
  TempDir t;
  std::string f = t.file("s");
  WriteTestFile(f, std::string(kSecret));
  ASSERT_EQ(::chmod(f.c_str(), 0644), 0);
  WebhookOptions o;
  o.secret_files["cd-x"] = f;
  auto s = WebhookSender::Create(o, MakeWebhookHttpsTransport("", 1, 1));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kPermissionDenied);
  EXPECT_NE(s.error().message().find("union cd-x"), std::string::npos) << s.error().message();
  WebhookOptions http;
  http.public_base_url = "http://x";
  EXPECT_FALSE(WebhookSender::Create(http, MakeWebhookHttpsTransport("", 1, 1)).has_value());
}

TEST(WebhookTransportTest, PostToNonHttpsUrlIsInvalidArgument) {
  auto t = MakeWebhookHttpsTransport("", 1, 1);
  for (const char* url : {"http://127.0.0.1:1/x", "https://user:pw@127.0.0.1:1/x", "127.0.0.1"}) {
    auto r = t->Post(url, "{}", {});
    ASSERT_FALSE(r.has_value()) << url;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << url << ": " << r.error().message();
  }
}

// --- channels in the policy -----------------------------------------------------

std::shared_ptr<const policies::Policy> Load(const std::string& unions) {
  std::vector<policies::Diagnostic> diags;
  auto p = policies::LoadPolicy(
      {policies::PolicySource{"p.yaml", "federation: {id: f, name: \"F\"}\nunions:\n" + unions}},
      &diags);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  if (!p) return nullptr;
  return *p;
}

using policies::Channel;

TEST(PolicyChannelsTest, DefaultsFollowTheAddresses) {
  auto p = Load(
      "  - {id: a, name: A, level: district, endpoint: \"https://a.example.vn\", email: a@a.vn,\n"
      "     webhook: \"https://hook.example.vn/a\"}\n"
      "  - {id: b, name: B, level: grassroots, email: b@b.vn}\n"
      "  - {id: c, name: C, level: grassroots, email: c@c.vn, webhook: \"https://hook.example.vn/c\"}\n"
      "  - {id: d, name: D, level: grassroots}\n");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->FindUnion("a")->channels, (std::vector<Channel>{Channel::kAppliance, Channel::kWebhook}));
  EXPECT_EQ(p->FindUnion("b")->channels, (std::vector<Channel>{Channel::kEmail}));
  EXPECT_EQ(p->FindUnion("c")->channels, (std::vector<Channel>{Channel::kEmail, Channel::kWebhook}));
  EXPECT_TRUE(p->FindUnion("d")->channels.empty());
}

TEST(PolicyChannelsTest, ExplicitListIsSortedAndChangesTheHashOnlyWhenNotTheDefault) {
  const std::string base =
      "  - {id: a, name: A, level: district, endpoint: \"https://a.example.vn\", email: a@a.vn,\n"
      "     webhook: \"https://hook.example.vn/a\"";
  auto implicit = Load(base + "}\n");
  auto same = Load(base + ", channels: [webhook, appliance]}\n");
  auto other = Load(base + ", channels: [webhook, email]}\n");
  ASSERT_NE(implicit, nullptr);
  ASSERT_NE(same, nullptr);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(same->FindUnion("a")->channels, (std::vector<Channel>{Channel::kAppliance, Channel::kWebhook}));
  EXPECT_EQ(other->FindUnion("a")->channels, (std::vector<Channel>{Channel::kEmail, Channel::kWebhook}));
  EXPECT_EQ(implicit->sha256, same->sha256);
  EXPECT_NE(implicit->sha256, other->sha256);
  EXPECT_NE(other->canonical_json.find("\"channels\":[\"email\",\"webhook\"]"), std::string::npos)
      << other->canonical_json;
  EXPECT_EQ(implicit->canonical_json.find("channels"), std::string::npos);
}

}  // namespace
}  // namespace sealpost::daemon
