#include "daemon/config.h"

#include <charconv>
#include <functional>
#include <map>

#include "base/file.h"
#include "crypto/smime.h"
#include "policies/yaml_tree.h"
#include "storage/api_tokens.h"

namespace sealpost::daemon {
namespace {

using policies::Diagnostic;
using policies::YamlMapEntry;
using policies::YamlNode;

class Walker {
 public:
  explicit Walker(std::string file) : file_(std::move(file)) {
    auto slash = file_.rfind('/');
    base_dir_ = slash == std::string::npos ? "." : file_.substr(0, slash == 0 ? 1 : slash);
  }

  void Error(const policies::Mark& m, std::string message) {
    errors_.push_back(Diagnostic{file_, m.line, m.column, std::move(message)});
  }
  std::vector<Diagnostic>& errors() { return errors_; }

  // Walks a mapping: each key must be in `handlers`; required keys must appear.
  void Map(const YamlNode& n, std::string_view what,
           const std::map<std::string, std::function<void(const YamlNode&)>>& handlers,
           std::initializer_list<std::string_view> required = {}) {
    if (n.reported) return;
    if (!n.IsMap()) {
      Error(n.mark, std::string(what) + " must be a mapping");
      return;
    }
    for (const YamlMapEntry& e : n.entries) {
      auto it = handlers.find(e.key);
      if (it == handlers.end()) {
        std::string known;
        for (const auto& [k, _] : handlers) known += (known.empty() ? "" : ", ") + k;
        Error(e.key_mark, "unknown key '" + e.key + "' in " + std::string(what) + " (known: " +
                              known + ")");
        continue;
      }
      if (!e.value.reported) it->second(e.value);
    }
    for (std::string_view r : required) {
      bool found = false;
      for (const YamlMapEntry& e : n.entries) found = found || e.key == r;
      if (!found) Error(n.mark, std::string(what) + " needs '" + std::string(r) + "'");
    }
  }

  bool String(const YamlNode& n, std::string_view what, std::string* out) {
    if (!n.IsScalar() || n.IsNull() || n.value.empty()) {
      Error(n.mark, std::string(what) + " must be a non-empty string");
      return false;
    }
    *out = n.value;
    return true;
  }

  void Path(const YamlNode& n, std::string_view what, std::string* out) {
    if (!String(n, what, out)) return;
    if ((*out)[0] != '/') *out = base_dir_ + "/" + *out;
  }

  void PathList(const YamlNode& n, std::string_view what, std::vector<std::string>* out) {
    if (n.IsScalar() && !n.IsNull()) {
      out->emplace_back();
      Path(n, what, &out->back());
      return;
    }
    if (!n.IsSeq()) {
      Error(n.mark, std::string(what) + " must be a path or a list of paths");
      return;
    }
    for (const YamlNode& item : n.items) {
      out->emplace_back();
      Path(item, what, &out->back());
    }
  }

  template <typename T>
  void Integer(const YamlNode& n, std::string_view what, T min, T max, T* out) {
    // Plain decimal digits only: YAML 1.1 would read 010 as 8 and 1_000 as 1000.
    bool digits = n.IsScalar() && n.style == policies::ScalarStyle::kPlain && !n.value.empty() &&
                  n.value.size() <= 19 &&
                  n.value.find_first_not_of("0123456789") == std::string::npos &&
                  (n.value.size() == 1 || n.value[0] != '0');
    uint64_t v = 0;
    if (digits) {
      auto [p, ec] = std::from_chars(n.value.data(), n.value.data() + n.value.size(), v);
      digits = ec == std::errc() && p == n.value.data() + n.value.size();
    }
    if (!digits || v < static_cast<uint64_t>(min) || v > static_cast<uint64_t>(max)) {
      Error(n.mark, std::string(what) + " must be a decimal integer from " + std::to_string(min) +
                        " to " + std::to_string(max));
      return;
    }
    *out = static_cast<T>(v);
  }

 private:
  std::string file_;
  std::string base_dir_;
  std::vector<Diagnostic> errors_;
};

void Listener(Walker& w, const YamlNode& n, std::string_view what, bool peer, ListenerConfig* l) {
  std::map<std::string, std::function<void(const YamlNode&)>> h = {
      {"address", [&](const YamlNode& v) { w.String(v, "address", &l->address); }},
      {"port", [&](const YamlNode& v) { w.Integer(v, "port", 0, 65535, &l->port); }},
      {"certificate", [&](const YamlNode& v) { w.Path(v, "certificate", &l->certificate); }},
      {"key", [&](const YamlNode& v) { w.Path(v, "key", &l->key); }},
      {"client_ca", [&](const YamlNode& v) { w.Path(v, "client_ca", &l->client_ca); }},
  };
  if (!peer) {
    h["client_certificates"] = [&](const YamlNode& v) {
      if (!v.IsSeq()) {
        w.Error(v.mark, "client_certificates must be a list");
        return;
      }
      for (const YamlNode& item : v.items) {
        ClientCertificateRole c;
        w.Map(item, "a client certificate",
              {{"sha256",
                [&](const YamlNode& s) {
                  if (!w.String(s, "sha256", &c.sha256)) return;
                  if (c.sha256.size() != 64 ||
                      c.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
                    w.Error(s.mark, "sha256 must be 64 lower-case hex digits");
                  }
                }},
               {"role",
                [&](const YamlNode& s) {
                  if (!w.String(s, "role", &c.role)) return;
                  if (!storage::IsApiRole(c.role)) {
                    w.Error(s.mark, "unknown role '" + c.role +
                                        "' (clerk, officer, auditor, admin)");
                  }
                }},
               {"name", [&](const YamlNode& s) { w.String(s, "name", &c.name); }}},
              {"sha256", "role", "name"});
        l->client_certificates.push_back(std::move(c));
      }
    };
  }
  w.Map(n, what, h, peer ? std::initializer_list<std::string_view>{"port", "certificate", "key",
                                                                   "client_ca"}
                         : std::initializer_list<std::string_view>{"port", "certificate", "key"});
  if (!l->client_certificates.empty() && l->client_ca.empty()) {
    w.Error(n.mark, std::string(what) + ": client_certificates need client_ca");
  }
}

void Webhook(Walker& w, const YamlNode& n, WebhookConfig* c) {
  w.Map(n, "webhook",
        {{"public_base_url",
          [&](const YamlNode& v) {
            if (!w.String(v, "public_base_url", &c->public_base_url)) return;
            const std::string& u = c->public_base_url;
            if (u.rfind("https://", 0) != 0 || u.size() == 8 ||
                u.find_first_of(" \t\r\n?#") != std::string::npos) {
              w.Error(v.mark, "public_base_url must be an https:// URL without query or fragment");
            }
          }},
         {"ca", [&](const YamlNode& v) { w.Path(v, "ca", &c->ca); }},
         {"connect_timeout_seconds",
          [&](const YamlNode& v) {
            w.Integer(v, "connect_timeout_seconds", 1, 300, &c->connect_timeout_seconds);
          }},
         {"timeout_seconds",
          [&](const YamlNode& v) { w.Integer(v, "timeout_seconds", 1, 300, &c->timeout_seconds); }},
         {"secrets", [&](const YamlNode& v) {
            if (!v.IsMap()) {
              w.Error(v.mark, "webhook.secrets must be a mapping of union id to secret file");
              return;
            }
            for (const YamlMapEntry& e : v.entries) {
              if (e.key.empty() || e.key.size() > 64 ||
                  e.key.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") !=
                      std::string::npos) {
                w.Error(e.key_mark, "webhook.secrets: '" + e.key + "' is not a union id");
                continue;
              }
              std::string path;
              w.Path(e.value, "webhook.secrets." + e.key, &path);
              if (!path.empty()) c->secrets[e.key] = path;
            }
          }}});
}

}  // namespace

Result<Config> ParseConfig(std::string_view text, const std::string& file) {
  Walker w(file);
  policies::YamlLimits limits;
  limits.max_nodes = 100000;
  auto root = policies::ParseYaml(text, file, &w.errors(), limits);
  Config c;
  c.file = file;
  if (root) {
    w.Map(*root, "the configuration",
          {{"union", [&](const YamlNode& v) { w.String(v, "union", &c.union_id); }},
           {"state_dir", [&](const YamlNode& v) { w.Path(v, "state_dir", &c.state_dir); }},
           {"language",
            [&](const YamlNode& v) {
              std::string s;
              if (!w.String(v, "language", &s)) return;
              if (s == "vi") c.language = Lang::kVi;
              else if (s == "en") c.language = Lang::kEn;
              else w.Error(v.mark, "language must be vi or en");
            }},
           {"policy", [&](const YamlNode& v) { w.PathList(v, "policy", &c.policy_files); }},
           {"signer_socket",
            [&](const YamlNode& v) { w.Path(v, "signer_socket", &c.signer_socket); }},
           {"seal_key", [&](const YamlNode& v) { w.String(v, "seal_key", &c.seal_key); }},
           {"listeners",
            [&](const YamlNode& v) {
              w.Map(v, "listeners",
                    {{"peer", [&](const YamlNode& p) { Listener(w, p, "listeners.peer", true, &c.peer); }},
                     {"user", [&](const YamlNode& u) { Listener(w, u, "listeners.user", false, &c.user); }}},
                    {"peer", "user"});
            }},
           {"verify",
            [&](const YamlNode& v) {
              w.Map(v, "verify",
                    {{"trust_anchors",
                      [&](const YamlNode& a) { w.PathList(a, "trust_anchors", &c.trust_anchors); }},
                     {"crls", [&](const YamlNode& a) { w.PathList(a, "crls", &c.crls); }},
                     {"intermediates",
                      [&](const YamlNode& a) { w.PathList(a, "intermediates", &c.intermediates); }}},
                    {"trust_anchors"});
            }},
           {"delivery",
            [&](const YamlNode& v) {
              DeliveryConfig& d = c.delivery;
              w.Map(v, "delivery",
                    {{"certificate", [&](const YamlNode& x) { w.Path(x, "certificate", &d.certificate); }},
                     {"key", [&](const YamlNode& x) { w.Path(x, "key", &d.key); }},
                     {"ca", [&](const YamlNode& x) { w.Path(x, "ca", &d.ca); }},
                     {"threads", [&](const YamlNode& x) { w.Integer(x, "threads", 1, 256, &d.threads); }},
                     {"poll_millis",
                      [&](const YamlNode& x) { w.Integer(x, "poll_millis", 10, 60000, &d.poll_millis); }},
                     {"max_in_flight_per_recipient",
                      [&](const YamlNode& x) {
                        w.Integer(x, "max_in_flight_per_recipient", 1, 64,
                                  &d.max_in_flight_per_recipient);
                      }},
                     {"backoff_base_millis",
                      [&](const YamlNode& x) {
                        w.Integer<int64_t>(x, "backoff_base_millis", 1, 3'600'000,
                                           &d.backoff_base_millis);
                      }},
                     {"backoff_cap_millis",
                      [&](const YamlNode& x) {
                        w.Integer<int64_t>(x, "backoff_cap_millis", 1, 86'400'000,
                                           &d.backoff_cap_millis);
                      }},
                     {"max_attempts",
                      [&](const YamlNode& x) { w.Integer(x, "max_attempts", 1, 1000, &d.max_attempts); }},
                     {"lease_seconds",
                      [&](const YamlNode& x) {
                        int s = 60;
                        w.Integer(x, "lease_seconds", 5, 3600, &s);
                        d.lease_millis = static_cast<int64_t>(s) * 1000;
                      }},
                     {"attempts_flush_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "attempts_flush_seconds", 1, 86400, &d.attempts_flush_seconds);
                      }},
                     {"keep_delivered_days",
                      [&](const YamlNode& x) {
                        w.Integer(x, "keep_delivered_days", 0, 3650, &d.keep_delivered_days);
                      }},
                     {"prune_interval_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "prune_interval_seconds", 1, 86400, &d.prune_interval_seconds);
                      }}});
              if (d.certificate.empty() != d.key.empty()) {
                w.Error(v.mark, "delivery: certificate and key go together");
              }
            }},
           {"email",
            [&](const YamlNode& v) {
              EmailConfig& e = c.email;
              e.enabled = true;
              auto flag = [&](const YamlNode& x, std::string_view what, bool* out) {
                if (x.IsScalar() && x.style == policies::ScalarStyle::kPlain &&
                    (x.value == "true" || x.value == "false")) {
                  *out = x.value == "true";
                } else {
                  w.Error(x.mark, std::string(what) + " must be true or false");
                }
              };
              w.Map(v, "email",
                    {{"smtp_host", [&](const YamlNode& x) { w.String(x, "smtp_host", &e.smtp_host); }},
                     {"smtp_port",
                      [&](const YamlNode& x) { w.Integer(x, "smtp_port", 1, 65535, &e.smtp_port); }},
                     {"from",
                      [&](const YamlNode& x) {
                        if (w.String(x, "from", &e.from) && !crypto::IsMailAddress(e.from)) {
                          w.Error(x.mark, "email.from is not a mail address: " + e.from);
                        }
                      }},
                     {"starttls", [&](const YamlNode& x) { flag(x, "email.starttls", &e.starttls); }},
                     {"ca", [&](const YamlNode& x) { w.Path(x, "ca", &e.ca); }},
                     {"verify_url", [&](const YamlNode& x) { w.String(x, "verify_url", &e.verify_url); }},
                     {"timeout_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "timeout_seconds", 1, 600, &e.timeout_seconds);
                      }}},
                    {"smtp_host", "from"});
              if (!e.ca.empty() && !e.starttls) {
                w.Error(v.mark, "email: ca is only used with starttls: true");
              }
            }},
           {"webhook", [&](const YamlNode& v) { Webhook(w, v, &c.webhook); }},
           {"bundles",
            [&](const YamlNode& v) {
              BundlesConfig& b = c.bundles;
              w.Map(v, "bundles",
                    {{"memory_max_bytes",
                      [&](const YamlNode& x) {
                        w.Integer<uint64_t>(x, "memory_max_bytes", 0, 64ull << 20,
                                            &b.memory_max_bytes);
                      }},
                     {"cache_bytes",
                      [&](const YamlNode& x) {
                        w.Integer<uint64_t>(x, "cache_bytes", 0, 4ull << 30, &b.cache_bytes);
                      }}});
            }},
           {"crl_fetch",
            [&](const YamlNode& v) {
              CrlFetchConfig& f = c.crl_fetch;
              w.Map(v, "crl_fetch",
                    {{"interval_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "interval_seconds", 1, 7 * 86400, &f.interval_seconds);
                      }},
                     {"retry_seconds",
                      [&](const YamlNode& x) { w.Integer(x, "retry_seconds", 1, 86400, &f.retry_seconds); }},
                     {"timeout_seconds",
                      [&](const YamlNode& x) { w.Integer(x, "timeout_seconds", 1, 300, &f.timeout_seconds); }},
                     {"max_bytes",
                      [&](const YamlNode& x) {
                        w.Integer<uint64_t>(x, "max_bytes", 1024, 256ull << 20, &f.max_bytes);
                      }},
                     {"https_ca", [&](const YamlNode& x) { w.Path(x, "https_ca", &f.https_ca); }}});
            }},
           {"limits",
            [&](const YamlNode& v) {
              Limits& l = c.limits;
              w.Map(v, "limits",
                    {{"max_body_bytes",
                      [&](const YamlNode& x) {
                        w.Integer<uint64_t>(x, "max_body_bytes", 1024, 1ull << 40, &l.max_body_bytes);
                      }},
                     {"max_header_bytes",
                      [&](const YamlNode& x) {
                        w.Integer<uint64_t>(x, "max_header_bytes", 1024, 1 << 20, &l.max_header_bytes);
                      }},
                     {"read_timeout_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "read_timeout_seconds", 1, 3600, &l.read_timeout_seconds);
                      }},
                     {"keepalive_timeout_seconds",
                      [&](const YamlNode& x) {
                        w.Integer(x, "keepalive_timeout_seconds", 1, 3600,
                                  &l.keepalive_timeout_seconds);
                      }},
                     {"max_connections",
                      [&](const YamlNode& x) {
                        w.Integer(x, "max_connections", 1, 4096, &l.max_connections);
                      }},
                     {"max_queued",
                      [&](const YamlNode& x) { w.Integer(x, "max_queued", 1, 65536, &l.max_queued); }}});
            }}},
          {"union", "state_dir", "policy", "signer_socket", "listeners", "verify"});
  }
  if (c.delivery.certificate.empty()) {
    c.delivery.certificate = c.peer.certificate;
    c.delivery.key = c.peer.key;
  }
  if (c.delivery.ca.empty()) c.delivery.ca = c.peer.client_ca;
  if (!w.errors().empty()) {
    std::string msg;
    for (const Diagnostic& d : w.errors()) msg += (msg.empty() ? "" : "\n") + d.ToString();
    return Err(Status::DataError(msg));
  }
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  auto text = ReadFile(path, 1u << 20);
  if (!text) return Err(text.error().WithContext("configuration"));
  return ParseConfig(*text, path);
}

}  // namespace sealpost::daemon
