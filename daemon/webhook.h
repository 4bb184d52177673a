// Channel `webhook`: a signed JSON notification to a union's webhook URL
// (a chat bridge such as a Zalo Official Account service), for unions
// whose policy entry lists the channel (docs/policy.md, "Channels"). The
// scheme, for bridge authors: docs/webhook.md.
//
//   POST <union webhook URL>
//   Content-Type: application/json
//   Sealpost-Timestamp: <unix seconds>
//   Sealpost-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//   Sealpost-Notification-Id: <document id>/<recipient union>
//
//   2xx                delivered (receipt_ref "webhook:<status>")
//   408, 429, 5xx,
//   network/TLS error  retried with the outbox's backoff
//   other statuses     refused (final)
//
// The outbox job's payload is the document's facts (WebhookPayload), written
// by the Exchange at submission; the body adds the recipient and the links
// at send time. Secrets are one file per union (LoadWebhookSecret), never
// logged; only HTTPS, the server certificate checked against a CA bundle or
// the system store.
#ifndef SEALPOST_DAEMON_WEBHOOK_H_
#define SEALPOST_DAEMON_WEBHOOK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/secret.h"
#include "base/status.h"
#include "client/https_client.h"
#include "policies/policy.h"
#include "storage/outbox.h"

namespace sealpost::daemon {

// What a notification says about a document.
struct WebhookDocument {
  std::string id;
  std::string type;         // document type id
  std::string type_name;    // its Vietnamese name (policy)
  std::string subject;
  std::string issuer;       // issuing union id
  std::string issuer_name;  // its name (policy)
  std::string reference;    // "" when the type has none
  std::string issued_at;    // RFC 3339, UTC
};

// The outbox payload of a webhook job: a JSON object of the fields above.
std::string WebhookPayload(const WebhookDocument& doc);
// Reads a payload back: exactly those members, all strings; DataError
// naming what is wrong otherwise.
[[nodiscard]] Result<WebhookDocument> ParseWebhookPayload(std::string_view payload);

// The body sent to `recipient`'s webhook: {"event":"document.issued",
// "notification_id", the document's fields, "recipient", and, when
// `public_base_url` is set, "verification_url" (the verification desk,
// <base>/api/v1/verify) and "document_url" (<base>/api/v1/documents/<id>)}.
std::string WebhookBody(const WebhookDocument& doc, const std::string& recipient,
                        const std::string& public_base_url);

// "v1=" + lower-case hex of HMAC-SHA256(secret, timestamp + "." + body).
std::string WebhookSignature(std::string_view secret, int64_t timestamp, std::string_view body);

// A webhook secret file: a regular file (not a symbolic link), not
// accessible by group or others (PermissionDenied naming the file and its
// mode otherwise), checked on the descriptor it is read from
// (base/file.h ReadPrivateSecretFile), holding one
// line of 32 to 1024 printable ASCII characters without spaces (one
// trailing newline allowed; e.g. `openssl rand -hex 32`). The secret is
// the line's bytes. Errors name the file, never its content.
[[nodiscard]] Result<SecretBytes> LoadWebhookSecret(const std::string& path);

// How notifications leave the appliance. Tests of the logic inject a fake;
// the daemon uses MakeWebhookHttpsTransport.
class WebhookTransport {
 public:
  virtual ~WebhookTransport() = default;
  // POSTs `body` (application/json) to the https `url`. Any HTTP status is a
  // response; Unavailable when it cannot be reached (connection, TLS,
  // timeout); InvalidArgument for a URL that is not https.
  [[nodiscard]] virtual Result<client::Response> Post(const std::string& url,
                                                      const std::string& body,
                                                      const client::Headers& headers) = 0;
};

// HTTPS through client::HttpsClient: server certificate checked against
// `ca_file` (empty: the system's CA store) and the URL's host. A new
// connection per notification.
std::unique_ptr<WebhookTransport> MakeWebhookHttpsTransport(std::string ca_file,
                                                            int connect_timeout_seconds,
                                                            int timeout_seconds);

struct WebhookOptions {
  // https://host[:port][/prefix] of our user listener as the recipients
  // reach it; empty: the notification carries no links.
  std::string public_base_url;
  std::map<std::string, std::string> secret_files;  // union id -> secret file
};

enum class WebhookOutcome { kDelivered, kRefused, kRetry };
struct WebhookResult {
  WebhookOutcome outcome = WebhookOutcome::kRetry;
  std::string detail;  // receipt_ref when delivered, else the error
};

// Thread-safety: Send may be called from several threads at once (the
// transport must allow it; MakeWebhookHttpsTransport's does).
class WebhookSender {
 public:
  // Loads every secret file (the errors of LoadWebhookSecret, with the
  // union named). InvalidArgument for a public_base_url that is not https or
  // a null transport.
  [[nodiscard]] static Result<std::unique_ptr<WebhookSender>> Create(
      const WebhookOptions& options, std::unique_ptr<WebhookTransport> transport);

  // Delivers one webhook job: the recipient's URL from `policy` (retried
  // when the registry names none, or when no secret is configured for it —
  // an operator can fix either), the body from the job's payload (refused
  // when it does not parse), signed with the recipient's secret at
  // `now_seconds`.
  WebhookResult Deliver(const policies::Policy& policy, const storage::Job& job,
                        int64_t now_seconds);

  bool HasSecret(const std::string& union_id) const { return secrets_.count(union_id) != 0; }

 private:
  WebhookSender() = default;
  std::string public_base_url_;
  std::map<std::string, SecretBytes> secrets_;  // read-only after Create
  std::unique_ptr<WebhookTransport> transport_;
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_WEBHOOK_H_
