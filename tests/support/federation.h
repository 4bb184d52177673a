// A federation of real appliances on 127.0.0.1 for end-to-end tests: one
// district union and N grassroots unions under it, each with
//   - its own SoftHSM2 token holding a P-256 seal key GENERATED ON THE TOKEN,
//     with a seal certificate (the union's name) from the federation's
//     throwaway CA stored back on the token;
//   - a TLS certificate (serverAuth + clientAuth, IP:127.0.0.1) used by its
//     peer listener, its user listener and its deliveries;
//   - a sealpost-signer process (PIN from a 0600 file, journal on);
//   - a sealpostd process with a peer and a user listener on ports chosen up
//     front, so that the one shared policy can list every union's `endpoint`;
//   - an API token of a clerk (`sealpost admin token create`).
// The district chair has a personal token (P-256, generated on the token) and
// signs with `sealpost sign` as an officer would on her own PC.
//
// The shared policy (policy.yaml in dir()):
//   directive  district -> children, the chair (or vice-chair) + the seal;
//   report     grassroots -> parent, the seal;
//   registry   tls_identity, seal and endpoint of every union.
// Unions in FederationOptions::lenient get policy-lenient.yaml instead: any
// union may issue any type to anyone with only its seal (a misconfigured or
// hostile sender, for refusal tests on the receiving side).
//
//   auto fed = Federation::Start();              // null (and a test failure) on error
//   Appliance& d = fed->district();
//   auto sig = fed->SignAsChair(file);           // file + ".p7s"
//   auto a = d.Submit({.file = file, .type = "directive", .recipients = fed->grassroots_ids(),
//                      .signature = sig});
//   EXPECT_EQ(a.status, 201) << a.body;
//   EXPECT_EQ(d.Stop(), 0);
//
// Files: dir()/ca.pem (trust anchor for TLS and signatures), policy.yaml,
// stranger.pem/-key.pem (a TLS client certificate of the same CA that no union
// claims), chair.pem; per appliance dir()/<union>/: sealpostd.yaml, state/
// (archive/, outbox.sqlite, ...), tls.pem/tls-key.pem, seal.pem, signer.sock,
// signer.pin, signer-journal.jsonl, sealpostd.log, signer.log, softhsm/ (the
// union's own SoftHSM2 token directory and softhsm2.conf: its signer is
// started with that SOFTHSM2_CONF; the chair's token is in the process's).
//
// On destruction every process still running is SIGKILLed; when the current
// test has failed, the tail of every log is printed first.
//
// Thread-safety: none; use from the test's main thread.
#ifndef SEALPOST_TESTS_SUPPORT_FEDERATION_H_
#define SEALPOST_TESTS_SUPPORT_FEDERATION_H_

#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "storage/outbox.h"
#include "storage/reader.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {

struct FederationOptions {
  int grassroots = 3;
  // YAML appended to every sealpostd.yaml (e.g. a `delivery:` section with
  // a short backoff once the daemon has one).
  std::string extra_config;
  // Unions whose appliance runs policy-lenient.yaml (see the file comment).
  std::set<std::string> lenient;
  std::string language = "en";
  // YAML lines appended inside the policies' `trust:` mapping (indented by
  // two spaces), e.g. "  crl_sources:\n    - {anchor: test-ca, url: ...}\n".
  std::string policy_trust_extra;
  // YAML list items appended to the policies' `document_types` (e.g. a
  // `policy` type for policy updates, docs/policy.md "Policy updates").
  std::string policy_types_extra;
  // How the registry names each union's seal: by the SHA-256 of its public
  // key (default), or by its subject under the federation's CA (then a new
  // key with a certificate of the same subject from the same CA is the same
  // seal to the peers; docs/operator-guide.md, "Replace a token").
  bool seal_by_subject = false;
};

// An HTTP answer as curl saw it. status 0: no HTTP answer (curl_exit says why:
// 7 connection refused, 35/56 TLS refused, 28 timeout...).
struct HttpAnswer {
  int status = 0;
  int curl_exit = 0;
  std::string body;
  std::string error;  // curl's stderr when it failed
};

struct SubmitSpec {
  std::string file;  // the content
  std::string type;
  std::string subject = "Văn bản thử nghiệm";
  std::vector<std::string> recipients;
  std::string name;  // default: the file's base name
  std::string media_type = "text/plain";
  std::string signature;  // officers' .p7s (DER), optional
  std::string token;      // default: the appliance's clerk
};

class Federation;

class Appliance {
 public:
  const std::string& id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  std::string state_dir() const { return file("state"); }
  std::string archive_dir() const { return file("state/archive"); }
  int peer_port() const { return peer_port_; }
  int user_port() const { return user_port_; }
  pid_t pid() const { return daemon_pid_; }
  pid_t signer_pid() const { return signer_pid_; }
  bool running() const { return daemon_pid_ > 0; }
  // The clerk's API token (kept in a 0600 file; never on a command line).
  const std::string& clerk_token() const { return clerk_token_; }
  // The seal key as sealpost-signer names it (no PIN in it).
  const std::string& seal_key() const { return seal_key_; }

  // sealpostd: start and wait (30 s) for READY=1 with the expected ports.
  bool Start();
  // SIGTERM, wait; the exit status (128+signal when killed, -1 on timeout).
  int Stop(int timeout_seconds = 30);
  // SIGKILL, reaped.
  void Kill();
  // Start() after Kill()/Stop() (Kill()s first if still running).
  bool Restart();
  // The signer: SIGKILL it / start it again and wait until its socket accepts.
  void KillSigner();
  bool StartSigner();
  // StartSigner() in two halves (a federation spawns every signer, then
  // waits for all): spawn only; wait until the socket accepts.
  bool SpawnSigner();
  bool WaitSigner(double limit_seconds);
  // SOFTHSM2_CONF of this union's own token directory (its seal token).
  const std::string& softhsm_conf() const { return softhsm_conf_; }
  int StopSigner(int timeout_seconds = 15);

  std::string Log() const;
  std::string SignerLog() const;

  // HTTPS request to the user listener (or the peer listener with `peer`,
  // then authenticated by this appliance's TLS client certificate).
  // `token`: "" none, "clerk" this appliance's clerk, anything else: a token.
  HttpAnswer Get(const std::string& path, const std::string& token = "clerk",
                 bool peer = false) const;
  // POST /api/v1/documents (curl today; headers from a 0600 file).
  HttpAnswer Submit(const SubmitSpec& spec) const;
  // Any curl request: "curl -sS --cacert ca.pem <extra> https://127.0.0.1:<port><path>";
  // `token` as for Get().
  HttpAnswer Curl(const std::string& path, const std::string& extra, const std::string& token,
                  bool peer) const;

  // The seal key the signer and the daemon use from their next start: the
  // signer's --key and PIN file, and `seal_key:` in sealpostd.yaml.
  bool UseSealKey(const std::string& key_uri, const std::string& pin);

  // `sealpost admin token create --state <state> --role R --name N`; "" on failure.
  std::string CreateToken(const std::string& role, const std::string& name) const;

  Appliance(const Appliance&) = delete;
  Appliance& operator=(const Appliance&) = delete;
  ~Appliance();

 private:
  friend class Federation;
  Appliance() = default;
  bool WaitReady(int notify_fd, double limit_seconds);
  std::string TokenHeaderFile(const std::string& token) const;

  const Federation* fed_ = nullptr;
  std::string id_, name_, level_, dir_;
  int peer_port_ = 0;
  int user_port_ = 0;
  std::string seal_key_;
  std::string softhsm_conf_;
  std::string seal_spki_, tls_spki_;
  std::string clerk_token_;
  pid_t daemon_pid_ = -1;
  pid_t signer_pid_ = -1;
  int notify_fd_ = -1;
  bool lenient_ = false;
  mutable int header_files_ = 0;
};

class Federation {
 public:
  static constexpr const char* kDistrict = "ldld-ha-long";
  static constexpr const char* kChairName = "Nguyễn Thị Duyên";

  // Builds every token, certificate, policy and configuration (the
  // unions' tokens and clerks' API tokens in parallel), spawns every signer
  // and waits for all, then every daemon and waits for READY=1 of all,
  // then opens every archive. On failure: a test failure (with logs), null.
  static std::unique_ptr<Federation> Start(const FederationOptions& options = FederationOptions());
  ~Federation();

  const std::string& dir() const { return tmp_.path(); }
  std::string file(const std::string& name) const { return tmp_.file(name); }
  std::string ca_pem() const { return file("ca.pem"); }
  // The federation's throwaway CA (e.g. to issue CRLs; anchor id "test-ca").
  TestCa& ca() { return *ca_; }

  Appliance& district() { return *appliances_[0]; }
  Appliance& grassroots(size_t i) { return *appliances_.at(i + 1); }
  size_t grassroots_count() const { return appliances_.size() - 1; }
  std::vector<std::string> grassroots_ids() const;
  // Null if no such union.
  Appliance* Find(const std::string& union_id);
  const std::vector<std::unique_ptr<Appliance>>& appliances() const { return appliances_; }

  // A new seal token for `a`, in `a`'s own token directory (so its signer
  // finds it): a SoftHSM2 token `label` with PIN `pin`, a
  // P-256 key generated on it (label "seal"), a certificate with the
  // subject of `a`'s seal from the federation's CA, stored on the token.
  // The key URI (no PIN in it), or "" and a test failure.
  std::string NewSealToken(const Appliance& a, const std::string& label, const std::string& pin);

  // The chair's key URI (with its PIN file as pin-source) on her personal token.
  const std::string& chair_key() const { return chair_key_; }
  // `sealpost sign --key <chair> FILE` → FILE.p7s (returned; "" + a test
  // failure on error).
  std::string SignAsChair(const std::string& content_path) const;

  // Runs the CLI with the federation's SoftHSM2 environment (the chair's
  // token) or, given `tokens_of`, that appliance's (its seal tokens);
  // exit status, stdout+stderr in *out.
  int Sealpost(const std::string& args, std::string* out = nullptr,
               const Appliance* tokens_of = nullptr) const;

  // `sealpost audit <archive> --trust ca.pem`: exit status, output in *out.
  int Audit(const Appliance& a, std::string* out = nullptr) const;

  // Every entry of the appliance's archive, oldest first (a snapshot read
  // beside the running daemon); empty + a test failure when unreadable.
  std::vector<storage::Manifest> ArchiveEntries(const Appliance& a) const;
  // How many entries of `kind` ("document-sent", "delivery-receipt", ...).
  size_t CountEntries(const Appliance& a, const std::string& kind) const;

  // SIGTERM to every daemon then every signer; true when all exited 0.
  bool StopAll();

  // Prints the tail of every log (done by the destructor on test failure).
  void DumpLogs() const;

  // What Start() spent its time on: one line per phase, "<seconds> s  <phase>".
  const std::string& setup_report() const { return setup_report_; }

  Federation(const Federation&) = delete;
  Federation& operator=(const Federation&) = delete;

 private:
  friend class Appliance;
  Federation() = default;
  bool Build(const FederationOptions& o);

  TempDir tmp_;
  std::unique_ptr<SoftHsm> hsm_;
  std::unique_ptr<TestCa> ca_;
  std::vector<std::unique_ptr<Appliance>> appliances_;
  std::string chair_key_;
  std::string language_ = "en";
  std::string setup_report_;
};

// Small helpers shared by the end-to-end tests.

// Quick delivery for tests that wait for it (append to
// FederationOptions::extra_config): short polls and backoff.
inline constexpr char kFastDeliveryConfig[] =
    "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
    "  lease_seconds: 10, attempts_flush_seconds: 1, max_attempts: 1000}\n";

// The same with a 5 s lease and the default max_attempts (the suites that
// predate kFastDeliveryConfig: federation, inbox_concurrent_e2e,
// policy_update, seal_change_e2e).
inline constexpr char kFastDeliveryShortLeaseConfig[] =
    "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
    "  lease_seconds: 5, attempts_flush_seconds: 1}\n";

bool Contains(const std::string& haystack, const std::string& needle);

// The first "id" member of a JSON answer (a submission's 201), "" if none.
std::string IdOf(const std::string& body);

// A directive from the district, signed by the chair (content `text` in the
// federation's file `name`), to `recipients` (all grassroots unions when
// empty); the submission's answer.
HttpAnswer SubmitDirective(Federation& fed, const std::string& name, const std::string& text,
                           const std::vector<std::string>& recipients = {});

// Entries of `kind` about document `id` in the appliance's archive (of
// `recipient` when given; for "delivery-receipt", delivery receipts only,
// not read notices).
size_t CountDocumentEntries(const Federation& fed, const Appliance& a, const std::string& kind,
                            const std::string& id, const std::string& recipient = "");

// The outbox's delivery state of `id` per recipient (read beside the
// running daemon); empty when unreadable.
std::vector<storage::DeliveryState> DeliveryStates(const Appliance& a, const std::string& id);
// Every one of `recipients` jobs of `id` delivered (or read).
bool AllDelivered(const Appliance& a, const std::string& id, size_t recipients);

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_FEDERATION_H_
