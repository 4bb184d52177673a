#include "daemon/webhook.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/URI.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"

namespace sealpost::daemon {

namespace {

constexpr size_t kMinSecret = 32;
constexpr size_t kMaxSecret = 1024;

// The payload's members, in the order they are written.
constexpr const char* kPayloadKeys[] = {"id",          "type",      "type_name", "subject",
                                        "issuer",      "issuer_name", "reference", "issued_at"};

std::string* Member(WebhookDocument& d, std::string_view key) {
  if (key == "id") return &d.id;
  if (key == "type") return &d.type;
  if (key == "type_name") return &d.type_name;
  if (key == "subject") return &d.subject;
  if (key == "issuer") return &d.issuer;
  if (key == "issuer_name") return &d.issuer_name;
  if (key == "reference") return &d.reference;
  if (key == "issued_at") return &d.issued_at;
  return nullptr;
}

void AddMember(std::string* out, std::string_view key, std::string_view value) {
  if (out->size() > 1) *out += ',';
  *out += JsonString(key);
  *out += ':';
  *out += JsonString(value);
}

std::string TrimSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

class HttpsWebhookTransport : public WebhookTransport {
 public:
  HttpsWebhookTransport(std::string ca_file, int connect_timeout, int timeout)
      : ca_file_(std::move(ca_file)), connect_timeout_(connect_timeout), timeout_(timeout) {}

  Result<client::Response> Post(const std::string& url, const std::string& body,
                                const client::Headers& headers) override {
    client::ClientOptions o;
    std::string target;
    try {
      Poco::URI uri(url);
      if (uri.getScheme() != "https" || uri.getHost().empty() || !uri.getUserInfo().empty()) {
        return Err(Status::InvalidArgument("webhook " + url + " is not an https URL"));
      }
      o.host = uri.getHost();
      o.port = uri.getPort();
      target = uri.getPathAndQuery();
      if (target.empty()) target = "/";
    } catch (const Poco::Exception& e) {
      return Err(Status::InvalidArgument("webhook " + url + ": " + e.displayText()));
    }
    o.ca_file = ca_file_;
    o.system_cas = ca_file_.empty();
    o.verify_host = true;
    o.connect_timeout_seconds = connect_timeout_;
    o.timeout_seconds = timeout_;
    o.max_response_bytes = 64 * 1024;
    auto c = client::HttpsClient::Create(o);
    if (!c) return Err(c.error());
    return (*c)->Post(target, "application/json", body, headers);
  }

 private:
  std::string ca_file_;
  int connect_timeout_;
  int timeout_;
};

}  // namespace

std::string WebhookPayload(const WebhookDocument& doc) {
  WebhookDocument d = doc;
  std::string out = "{";
  for (const char* k : kPayloadKeys) AddMember(&out, k, *Member(d, k));
  return out + "}";
}

Result<WebhookDocument> ParseWebhookPayload(std::string_view payload) {
  Poco::JSON::Object::Ptr obj;
  try {
    Poco::JSON::Parser parser;
    auto v = parser.parse(std::string(payload));
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) {
      return Err(Status::DataError("webhook payload is not a JSON object"));
    }
    obj = v.extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    return Err(Status::DataError("webhook payload is not JSON: " + e.displayText()));
  } catch (const std::exception& e) {
    return Err(Status::DataError(std::string("webhook payload is not JSON: ") + e.what()));
  }
  WebhookDocument d;
  size_t seen = 0;
  for (const auto& [k, v] : *obj) {
    std::string* m = Member(d, k);
    if (m == nullptr) return Err(Status::DataError("webhook payload has an unknown member \"" + k + "\""));
    if (!v.isString()) return Err(Status::DataError("webhook payload: \"" + k + "\" is not a string"));
    *m = v.extract<std::string>();
    ++seen;
  }
  // Poco's object has no duplicate keys, so all known members present is
  // exactly `seen` == their count.
  if (seen != std::size(kPayloadKeys)) {
    for (const char* k : kPayloadKeys) {
      if (!obj->has(k)) return Err(Status::DataError("webhook payload lacks \"" + std::string(k) + "\""));
    }
  }
  if (d.id.empty() || d.issuer.empty()) {
    return Err(Status::DataError("webhook payload has an empty id or issuer"));
  }
  return d;
}

std::string WebhookBody(const WebhookDocument& doc, const std::string& recipient,
                        const std::string& public_base_url) {
  WebhookDocument d = doc;
  std::string out = "{";
  AddMember(&out, "event", "document.issued");
  AddMember(&out, "notification_id", d.id + "/" + recipient);
  for (const char* k : kPayloadKeys) AddMember(&out, k, *Member(d, k));
  AddMember(&out, "recipient", recipient);
  if (!public_base_url.empty()) {
    std::string base = TrimSlashes(public_base_url);
    AddMember(&out, "verification_url", base + "/api/v1/verify");
    AddMember(&out, "document_url", base + "/api/v1/documents/" + d.id);
  }
  return out + "}";
}

std::string WebhookSignature(std::string_view secret, int64_t timestamp, std::string_view body) {
  std::string message = std::to_string(timestamp);
  message += '.';
  message.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &len) == nullptr) {
    return "";  // only on allocation failure; an empty signature never verifies
  }
  return "v1=" + HexEncode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

Result<SecretBytes> LoadWebhookSecret(const std::string& path) {
  // One open, checked through its descriptor (no stat-then-open window).
  auto secret = ReadPrivateSecretFile(path, "webhook secret", kMaxSecret + 2);
  if (!secret) return Err(secret.error());
  std::string_view s = secret->view();
  if (s.size() < kMinSecret || s.size() > kMaxSecret) {
    return Err(Status::DataError("webhook secret " + path + ": must be one line of " +
                                 std::to_string(kMinSecret) + " to " + std::to_string(kMaxSecret) +
                                 " characters (has " + std::to_string(s.size()) + ")"));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x21 || c > 0x7e) {
      return Err(Status::DataError("webhook secret " + path + ": character " + std::to_string(i + 1) +
                                   " is not printable ASCII (spaces, line breaks and control "
                                   "characters are not allowed)"));
    }
  }
  return secret;
}

std::unique_ptr<WebhookTransport> MakeWebhookHttpsTransport(std::string ca_file,
                                                            int connect_timeout_seconds,
                                                            int timeout_seconds) {
  return std::make_unique<HttpsWebhookTransport>(std::move(ca_file), connect_timeout_seconds,
                                                 timeout_seconds);
}

Result<std::unique_ptr<WebhookSender>> WebhookSender::Create(
    const WebhookOptions& options, std::unique_ptr<WebhookTransport> transport) {
  if (!transport) return Err(Status::InvalidArgument("webhook: a transport is required"));
  if (!options.public_base_url.empty() && options.public_base_url.rfind("https://", 0) != 0) {
    return Err(Status::InvalidArgument("webhook public_base_url " + options.public_base_url +
                                       " is not an https URL"));
  }
  std::unique_ptr<WebhookSender> s(new WebhookSender());
  s->public_base_url_ = options.public_base_url;
  for (const auto& [union_id, file] : options.secret_files) {
    auto secret = LoadWebhookSecret(file);
    if (!secret) return Err(secret.error().WithContext("union " + union_id));
    s->secrets_.emplace(union_id, std::move(*secret));
  }
  s->transport_ = std::move(transport);
  return s;
}

WebhookResult WebhookSender::Deliver(const policies::Policy& policy, const storage::Job& job,
                                     int64_t now_seconds) {
  const std::string& rcpt = job.key.recipient;
  const policies::Union* u = policy.FindUnion(rcpt);
  if (u == nullptr || u->webhook.empty()) {
    return {WebhookOutcome::kRetry, "the registry names no webhook for union " + rcpt};
  }
  auto secret = secrets_.find(rcpt);
  if (secret == secrets_.end()) {
    return {WebhookOutcome::kRetry, "no webhook secret is configured for union " + rcpt};
  }
  auto doc = ParseWebhookPayload(job.payload);
  if (!doc) return {WebhookOutcome::kRefused, doc.error().message()};
  if (doc->id != job.key.document_id) {
    return {WebhookOutcome::kRefused, "webhook payload is for another document"};
  }
  const std::string body = WebhookBody(*doc, rcpt, public_base_url_);
  client::Headers h = {
      {"Sealpost-Timestamp", std::to_string(now_seconds)},
      {"Sealpost-Signature", WebhookSignature(secret->second.view(), now_seconds, body)},
      {"Sealpost-Notification-Id", doc->id + "/" + rcpt},
      {"User-Agent", "sealpostd"},
  };
  auto r = transport_->Post(u->webhook, body, h);
  if (!r) {
    if (r.error().code() == Code::kInvalidArgument) return {WebhookOutcome::kRefused, r.error().message()};
    return {WebhookOutcome::kRetry, r.error().message()};
  }
  const int status = r->status;
  if (status >= 200 && status < 300) return {WebhookOutcome::kDelivered, "webhook:" + std::to_string(status)};
  std::string what = "webhook " + u->webhook + " answered HTTP " + std::to_string(status);
  if (status == 408 || status == 429 || status >= 500) return {WebhookOutcome::kRetry, what};
  // 1xx/3xx (redirects are not followed) and other 4xx: the receiver will
  // not take it.
  return {WebhookOutcome::kRefused, what};
}

}  // namespace sealpost::daemon
