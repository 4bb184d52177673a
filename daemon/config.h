// The configuration of sealpostd: one YAML file, loaded strictly (unknown
// keys, wrong types, missing required values are errors reported as
// "file:line:column: message", every one of them). Relative paths are taken
// relative to the directory of the configuration file. The commented
// default: examples/sealpostd.yaml; the reference: docs/daemon.md.
#ifndef SEALPOST_DAEMON_CONFIG_H_
#define SEALPOST_DAEMON_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/lang.h"
#include "base/status.h"

namespace sealpost::daemon {

// A client certificate of the user listener mapped to a role.
struct ClientCertificateRole {
  std::string sha256;  // SHA-256 of the certificate's DER, 64 lower-case hex digits
  std::string role;    // clerk, officer, auditor, admin
  std::string name;    // who it is, for logs
};

struct ListenerConfig {
  std::string address = "127.0.0.1";
  int port = 0;             // 0: any free port (reported through sd_notify STATUS)
  std::string certificate;  // PEM, the server's certificate (chain after it)
  std::string key;          // PEM, unencrypted private key (file mode 0600)
  std::string client_ca;    // PEM bundle; required for peers, optional for users
  std::vector<ClientCertificateRole> client_certificates;  // user listener only
};

struct Limits {
  uint64_t max_body_bytes = 64ull << 20;
  uint64_t max_header_bytes = 16384;   // request line + every header, in bytes
  int read_timeout_seconds = 30;       // per read: a silent client is dropped after this
  int keepalive_timeout_seconds = 10;  // idle time between requests on one connection
  int max_connections = 32;            // worker threads per listener
  int max_queued = 64;                 // accepted connections waiting for a worker
};

// The delivery worker (daemon/delivery.h) and the outbox it drains.
struct DeliveryConfig {
  // Mutual TLS towards other appliances: our client certificate and key, and
  // the CA bundle their server certificates must chain to. Empty: the peer
  // listener's certificate, key and client_ca.
  std::string certificate;
  std::string key;
  std::string ca;
  int threads = 32;                  // deliveries in parallel, all recipients (1-256)
  int poll_millis = 250;             // idle look at the outbox
  int max_in_flight_per_recipient = 4;
  int64_t backoff_base_millis = 1000;
  int64_t backoff_cap_millis = 3'600'000;
  int max_attempts = 16;
  int64_t lease_millis = 60'000;
  int attempts_flush_seconds = 60;   // archive finished attempts at least this often
  // Delivered and read jobs are forgotten by the outbox this long after
  // delivery (their attempts archived first); 0: kept for ever.
  int keep_delivered_days = 30;
  int prune_interval_seconds = 3600;  // how often the prune looks (and once at start)
};

// Mail delivery (channel email, docs/email.md). Absent section: no mail
// is sent (email jobs wait and are retried).
struct EmailConfig {
  bool enabled = false;    // the section is present
  std::string smtp_host;   // the relay (required)
  int smtp_port = 25;
  std::string from;        // the union's address: the seal's rfc822Name (required)
  bool starttls = false;   // STARTTLS required before MAIL
  std::string ca;          // PEM bundle for the relay's certificate; empty: the system's
  std::string verify_url;  // the verification desk named in the mail's text; optional
  int timeout_seconds = 30;
};

// Channel webhook (daemon/webhook.h, docs/webhook.md).
struct WebhookConfig {
  // https URL of our user listener as recipients reach it: the links to the
  // verification desk and the document in each notification. Empty: none.
  std::string public_base_url;
  std::string ca;  // CA bundle for the receivers' certificates; empty: the system store
  int connect_timeout_seconds = 10;
  int timeout_seconds = 30;
  std::map<std::string, std::string> secrets;  // union id -> secret file (mode 0600)
};

// Fetching the CRLs of the policy's CRL sources (daemon/crls.h).
struct CrlFetchConfig {
  int interval_seconds = 3600;  // every source at least this often (and before nextUpdate)
  int retry_seconds = 300;      // after a failure, or past nextUpdate
  int timeout_seconds = 15;     // connect and each read
  uint64_t max_bytes = 16u << 20;
  std::string https_ca;  // https:// sources: CA bundle for their servers ("": system CAs)
};

// Bundles of the documents sent from here (docs/daemon.md "Bundles",
// docs/decisions/0014-small-bundles-in-memory.md): one estimated at most
// memory_max_bytes is made in memory and kept in a cache of cache_bytes
// (least recently used dropped first) instead of a file; a miss makes the
// file from the archive. Either 0: every bundle is a file.
struct BundlesConfig {
  uint64_t memory_max_bytes = 1u << 20;
  uint64_t cache_bytes = 64u << 20;
};

struct Config {
  std::string file;       // the configuration file as given
  std::string union_id;   // this appliance's union (an id of the policy registry)
  std::string state_dir;  // archive/, databases, spool/
  Lang language = Lang::kVi;  // default language of messages (Accept-Language wins)
  std::vector<std::string> policy_files;
  std::string signer_socket;
  // The union seal's key as sealpost-signer names it (a PKCS#11 URI without
  // PIN). Empty: no document submission (POST /api/v1/documents is 503).
  std::string seal_key;
  ListenerConfig peer;
  ListenerConfig user;
  // The verification desk's trust: anchors (required) and CRLs.
  std::vector<std::string> trust_anchors;
  std::vector<std::string> crls;
  // Intermediate CA certificates (optional): untrusted, offered for path
  // building and for verifying the CRLs such a CA signs (daemon/trust.h).
  std::vector<std::string> intermediates;
  Limits limits;
  DeliveryConfig delivery;
  EmailConfig email;
  WebhookConfig webhook;
  CrlFetchConfig crl_fetch;
  BundlesConfig bundles;
};

// Parses the YAML text of a configuration named `file` (for positions and
// for resolving relative paths). DataError listing every problem, one per
// line, "file:line:column: message".
[[nodiscard]] Result<Config> ParseConfig(std::string_view text, const std::string& file);
// Reads and parses `path` (NotFound if unreadable, at most 1 MiB).
[[nodiscard]] Result<Config> LoadConfig(const std::string& path);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_CONFIG_H_
