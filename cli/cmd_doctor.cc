// `sealpost doctor --config FILE [--json] [--full-audit] [--no-save]`
//
// Checks an appliance the way an operator would, and prints one line per
// check, OK / WARN / FAIL, with what to fix (docs/doctor.md):
//   config       the daemon's configuration loads (daemon/config.h)
//   policy       the federation policy loads and names this union
//   signer       sealpost-signer answers on its socket; the token is present
//                and logged in; its detail (PIN flags) — through the signer,
//                so the doctor never needs the PIN
//   certificate  each signer key's certificate (expired FAIL, < 30 days
//                WARN), and the TLS certificate of each listener and of
//                delivery
//   trust        the trust anchors (same expiry rule) and each configured
//                CRL: signed by an anchor, nextUpdate passed FAIL, within a
//                day WARN; the same for each CRL sealpostd fetched from the
//                policy's CRL sources (<state_dir>/crls), not fetched WARN
//   webhook      each webhook secret file: readable, private, long enough
//   archive      opens read-only, the head checkpoint verifies, and an audit
//                that fully checks the entries after the checkpoint the
//                last clean doctor run saved (<state_dir>/doctor/checkpoint)
//   daemon       GET /api/v1/health on the user listener
//   peer <id>    GET /api/v1/health on each registered peer endpoint over
//                mutual TLS with our delivery certificate
// Exit status: 0 all OK, 1 warnings only, 2 a failure, 64 usage.
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/openssl.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "client/https_client.h"
#include "crypto/certs.h"
#include "daemon/config.h"
#include "daemon/signer/remote_signer.h"
#include "policies/policy.h"
#include "storage/audit.h"
#include "storage/reader.h"

namespace sealpost::cli {
namespace {

constexpr const char* kDoctorUsage =
    "doctor: usage: sealpost doctor --config FILE [--json] [--full-audit] [--no-save] "
    "[--lang vi|en]";

constexpr int64_t kCertWarnSeconds = 30 * 86400;
constexpr int64_t kCrlWarnSeconds = 86400;

enum class Level { kOk, kWarn, kFail };
const char* LevelName(Level l) { return l == Level::kOk ? "OK" : l == Level::kWarn ? "WARN" : "FAIL"; }

struct Check {
  std::string name;
  Level level = Level::kOk;
  std::string detail;
  std::string fix;  // empty when OK
};

class Doctor {
 public:
  explicit Doctor(Lang lang) : lang_(lang) {}

  // The text in the caller's language.
  std::string T(const std::string& en, const std::string& vi) const {
    return lang_ == Lang::kVi ? vi : en;
  }
  void Add(std::string name, Level level, std::string detail, std::string fix = {}) {
    checks_.push_back({std::move(name), level, std::move(detail), std::move(fix)});
  }
  const std::vector<Check>& checks() const { return checks_; }
  Lang lang() const { return lang_; }
  int ExitCode() const {
    int code = 0;
    for (const Check& c : checks_) {
      if (c.level == Level::kFail) code = 2;
      else if (c.level == Level::kWarn && code == 0) code = 1;
    }
    return code;
  }

  // Expiry of a certificate (not_after, seconds since the epoch).
  void Expiry(const std::string& name, const std::string& what, int64_t not_after,
              const std::string& fix_en, const std::string& fix_vi) {
    int64_t now = std::time(nullptr);
    std::string date = Date(not_after);
    if (not_after <= now) {
      Add(name, Level::kFail, T(what + " expired on " + date, what + " đã hết hạn ngày " + date),
          T(fix_en, fix_vi));
    } else if (not_after - now < kCertWarnSeconds) {
      int64_t days = (not_after - now) / 86400;
      Add(name, Level::kWarn,
          T(what + " expires on " + date + " (in " + std::to_string(days) + " days)",
            what + " hết hạn ngày " + date + " (còn " + std::to_string(days) + " ngày)"),
          T(fix_en, fix_vi));
    } else {
      Add(name, Level::kOk, T(what + " valid until " + date, what + " còn hiệu lực đến " + date));
    }
  }

  static std::string Date(int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
  }

 private:
  Lang lang_;
  std::vector<Check> checks_;
};

int64_t NotAfter(const X509* cert) {
  const ASN1_TIME* t = X509_get0_notAfter(cert);
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// https://host[:port][/path] -> host, port, path (without a trailing '/').
bool ParseEndpoint(const std::string& url, std::string* host, int* port, std::string* path) {
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0) return false;
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  *path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path->empty() && path->back() == '/') path->pop_back();
  *port = 443;
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos) return false;
    *host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return false;
      *port = std::atoi(hostport.c_str() + close + 2);
    }
  } else {
    size_t colon = hostport.rfind(':');
    *host = hostport.substr(0, colon);
    if (colon != std::string::npos) *port = std::atoi(hostport.c_str() + colon + 1);
  }
  return !host->empty() && *port > 0 && *port < 65536;
}

void CheckSigner(Doctor& d, const daemon::Config& c) {
  signer::RemoteSignerOptions so;
  so.socket_path = c.signer_socket;
  signer::RemoteSigner rs(so);
  auto st = rs.QueryStatus(std::chrono::seconds(5));
  if (!st) {
    d.Add("signer", Level::kFail,
          d.T("sealpost-signer does not answer on " + c.signer_socket + ": " + st.error().message(),
              "sealpost-signer không trả lời tại " + c.signer_socket + ": " + st.error().message()),
          d.T("start it (systemctl start sealpost-signer) and read its log "
              "(journalctl -u sealpost-signer)",
              "khởi động nó (systemctl start sealpost-signer) và xem nhật ký "
              "(journalctl -u sealpost-signer)"));
    return;
  }
  if (!st->token_present) {
    d.Add("signer", Level::kFail,
          d.T("the token is absent" + (st->detail.empty() ? "" : " (" + st->detail + ")"),
              "không thấy khóa USB (token)" + (st->detail.empty() ? "" : " (" + st->detail + ")")),
          d.T("plug in the union's token, then restart sealpost-signer",
              "cắm khóa USB của công đoàn rồi khởi động lại sealpost-signer"));
  } else if (!st->logged_in) {
    d.Add("signer", Level::kFail,
          d.T("the token is present but not logged in" +
                  (st->detail.empty() ? "" : " (" + st->detail + ")"),
              "có khóa USB nhưng chưa đăng nhập" + (st->detail.empty() ? "" : " (" + st->detail + ")")),
          d.T("check the PIN credential (sealpost-token-pin) and the PIN flags; do not retry a "
              "wrong PIN",
              "kiểm tra PIN (sealpost-token-pin) và trạng thái PIN; đừng thử lại PIN sai"));
  } else if (st->detail.find("CKF_USER_PIN_LOCKED") != std::string::npos ||
             st->detail.find("CKF_USER_PIN_FINAL_TRY") != std::string::npos) {
    // Logged in now, but the signer will refuse to log in again after a
    // restart (docs/tokens.md): it stops working at the next restart.
    d.Add("signer", Level::kFail,
          d.T("token logged in, but: " + st->detail + "; the signer will not log in again after a "
              "restart",
              "khóa USB đang đăng nhập, nhưng: " + st->detail +
                  "; sau khi khởi động lại, signer sẽ không đăng nhập nữa"),
          d.T("unblock or reset the user PIN with the token's SO PIN (vendor tool or pkcs11-tool "
              "--init-pin), update the sealpost-token-pin credential, then restart the signer",
              "mở khóa hoặc đặt lại PIN người dùng bằng SO PIN (công cụ của hãng hoặc pkcs11-tool "
              "--init-pin), cập nhật sealpost-token-pin, rồi khởi động lại signer"));
  } else if (!st->detail.empty()) {
    d.Add("signer", Level::kWarn,
          d.T("token ready, but: " + st->detail, "khóa USB sẵn sàng, nhưng: " + st->detail),
          d.T("see docs/tokens.md (PIN count low: the next wrong PIN may lock the token)",
              "xem docs/tokens.md (sắp hết số lần nhập PIN)"));
  } else {
    d.Add("signer", Level::kOk,
          d.T("token present and logged in (" + c.signer_socket + ")",
              "khóa USB có mặt và đã đăng nhập (" + c.signer_socket + ")"));
  }
  for (const signer::KeyStatus& k : st->keys) {
    if (!k.certificate) {
      d.Add("certificate", Level::kWarn,
            d.T("no certificate on the token for key " + k.key,
                "không có chứng thư trên token cho khóa " + k.key),
            d.T("import it: sealpost token import-cert URI CERT",
                "nhập chứng thư: sealpost token import-cert URI CERT"));
      continue;
    }
    d.Expiry("certificate", d.T("seal certificate ", "chứng thư con dấu ") + k.key, k.not_after,
             "request a new certificate for the token's key (sealpost token csr) and import it",
             "xin chứng thư mới cho khóa trên token (sealpost token csr) rồi nhập vào");
  }
}

void CheckTlsCertificate(Doctor& d, const std::string& what, const std::string& path) {
  if (path.empty()) return;
  auto cert = crypto::LoadCertificate(path);
  if (!cert) {
    d.Add("certificate", Level::kFail, what + " " + path + ": " + cert.error().message(),
          d.T("fix the path in the configuration", "sửa đường dẫn trong tệp cấu hình"));
    return;
  }
  d.Expiry("certificate", what + " (" + path + ")", NotAfter(cert->get()),
           "issue a new TLS certificate and restart sealpostd",
           "cấp chứng thư TLS mới và khởi động lại sealpostd");
}

// An intermediate CA of verify.intermediates named `issuer` whose key signed
// `crl` and whose path to an anchor of `anchors` verifies now.
bool SignedByIntermediateUnderAnchor(X509_CRL* crl, X509_STORE* anchors,
                                     STACK_OF(X509)* intermediates) {
  for (int i = 0; intermediates != nullptr && i < sk_X509_num(intermediates); ++i) {
    X509* c = sk_X509_value(intermediates, i);
    if (X509_NAME_cmp(X509_get_subject_name(c), X509_CRL_get_issuer(crl)) != 0 ||
        X509_check_ca(c) == 0 || X509_CRL_verify(crl, X509_get0_pubkey(c)) != 1) {
      continue;
    }
    X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), anchors, c, intermediates) != 1) continue;
    X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_ANY);
    if (X509_verify_cert(ctx.get()) == 1) return true;
  }
  ClearOpenSslErrors();
  return false;
}

void CheckCrl(Doctor& d, X509_CRL* crl, const std::string& source, X509_STORE* anchors_out,
              int64_t now, STACK_OF(X509)* intermediates) {
  std::string issuer = crypto::NameToUtf8(X509_CRL_get_issuer(crl));
  // Signed by an anchor of ours?
  bool signed_ok = false;
  STACK_OF(X509_OBJECT)* objs = X509_STORE_get0_objects(anchors_out);
  for (int j = 0; j < sk_X509_OBJECT_num(objs); ++j) {
    X509* a = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, j));
    if (a == nullptr || X509_NAME_cmp(X509_get_subject_name(a), X509_CRL_get_issuer(crl)) != 0) {
      continue;
    }
    EVP_PKEY* pk = X509_get0_pubkey(a);
    if (pk != nullptr && X509_CRL_verify(crl, pk) == 1) signed_ok = true;
  }
  if (!signed_ok) signed_ok = SignedByIntermediateUnderAnchor(crl, anchors_out, intermediates);
  std::string what = "CRL " + source + " (" + issuer + ")";
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  std::tm tm{};
  int64_t next_t = next != nullptr && ASN1_TIME_to_tm(next, &tm) == 1 ? timegm(&tm) : 0;
  if (!signed_ok) {
    d.Add("trust", Level::kFail,
          d.T(what + " is not signed by a trust anchor nor by a CA of verify.intermediates under one",
              what + " không do gốc tin cậy hay CA trung gian (verify.intermediates) dưới gốc ký"),
          d.T("fetch the CRL from the CA's distribution point", "tải CRL từ điểm phân phối của CA"));
  } else if (next_t == 0) {
    d.Add("trust", Level::kWarn, d.T(what + " has no nextUpdate", what + " không có nextUpdate"),
          d.T("check the CA's CRL", "kiểm tra CRL của CA"));
  } else if (next_t <= now) {
    d.Add("trust", Level::kFail,
          d.T(what + " is stale: nextUpdate " + Doctor::Date(next_t) + " has passed",
              what + " đã cũ: nextUpdate " + Doctor::Date(next_t) + " đã qua"),
          d.T("fetch a fresh CRL (verification reports INDETERMINATE meanwhile)",
              "tải CRL mới (trong lúc này kết quả kiểm tra là INDETERMINATE)"));
  } else if (next_t - now < kCrlWarnSeconds) {
    d.Add("trust", Level::kWarn,
          d.T(what + ": nextUpdate " + Doctor::Date(next_t) + " is within a day",
              what + ": nextUpdate " + Doctor::Date(next_t) + " còn dưới một ngày"),
          d.T("make sure the CRL is fetched again before then", "bảo đảm CRL được tải lại trước đó"));
  } else {
    d.Add("trust", Level::kOk,
          d.T(what + " fresh until " + Doctor::Date(next_t), what + " còn mới đến " + Doctor::Date(next_t)));
  }
}

// The certificates of verify.intermediates (untrusted); unreadable files FAIL.
X509StackPtr LoadIntermediates(Doctor& d, const daemon::Config& c) {
  X509StackPtr out(sk_X509_new_null());
  for (const std::string& file : c.intermediates) {
    auto certs = crypto::LoadCertificates(file);
    if (!certs) {
      d.Add("trust", Level::kFail, file + ": " + certs.error().message(),
            d.T("fix verify.intermediates", "sửa verify.intermediates"));
      continue;
    }
    while (out && sk_X509_num(certs->get()) > 0) sk_X509_push(out.get(), sk_X509_shift(certs->get()));
  }
  return out;
}

void CheckTrust(Doctor& d, const daemon::Config& c, X509_STORE* anchors_out,
                STACK_OF(X509)* intermediates) {
  for (const std::string& file : c.trust_anchors) {
    auto certs = crypto::LoadCertificates(file);
    if (!certs) {
      d.Add("trust", Level::kFail, file + ": " + certs.error().message(),
            d.T("fix verify.trust_anchors", "sửa verify.trust_anchors"));
      continue;
    }
    for (int i = 0; i < sk_X509_num(certs->get()); ++i) {
      X509* cert = sk_X509_value(certs->get(), i);
      X509_STORE_add_cert(anchors_out, cert);
      d.Expiry("trust", d.T("trust anchor ", "gốc tin cậy ") + crypto::DisplayName(cert),
               NotAfter(cert), "install the CA's new root certificate in verify.trust_anchors",
               "cài chứng thư gốc mới của CA vào verify.trust_anchors");
    }
  }
  int64_t now = std::time(nullptr);
  for (const std::string& file : c.crls) {
    auto crls = crypto::LoadCrls(file);
    if (!crls) {
      d.Add("trust", Level::kFail, file + ": " + crls.error().message(),
            d.T("fix verify.crls or fetch the CRL again", "sửa verify.crls hoặc tải lại CRL"));
      continue;
    }
    for (int i = 0; i < sk_X509_CRL_num(crls->get()); ++i) {
      X509_CRL* crl = sk_X509_CRL_value(crls->get(), i);
      CheckCrl(d, crl, file, anchors_out, now, intermediates);
    }
  }
}

// The CRLs sealpostd fetched from the policy's CRL sources (daemon/crls.cc
// keeps each in <state_dir>/crls/<anchor>-<first 16 hex of SHA-256(url)>.der):
// one not there yet is a warning (the daemon has not fetched it: not
// running, or the source unreachable); one there is checked like a
// configured CRL.
void CheckFetchedCrls(Doctor& d, const daemon::Config& c, const policies::Policy& p,
                      X509_STORE* anchors, STACK_OF(X509)* intermediates) {
  const int64_t now = std::time(nullptr);
  for (const policies::CrlSource& src : p.crl_sources) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(src.url.data(), src.url.size(), md, &n, EVP_sha256(), nullptr) != 1) continue;
    const std::string file = c.state_dir + "/crls/" + src.anchor + "-" +
                             HexEncode(std::string_view(reinterpret_cast<const char*>(md), n)).substr(0, 16) +
                             ".der";
    const std::string source = src.url + d.T(" (fetched, ", " (đã tải, ") + file + ")";
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      d.Add("trust", Level::kWarn,
            d.T("CRL " + src.url + " of " + src.anchor + " not fetched yet (no " + file + ")",
                "CRL " + src.url + " của " + src.anchor + " chưa được tải (không có " + file + ")"),
            d.T("start sealpostd and check that it reaches the URL (its log: \"CRL fetch\")",
                "khởi động sealpostd và kiểm tra nó truy cập được URL (nhật ký: \"CRL fetch\")"));
      continue;
    }
    auto crls = crypto::LoadCrls(file);
    if (!crls || sk_X509_CRL_num(crls->get()) == 0) {
      d.Add("trust", Level::kFail,
            "CRL " + source + ": " + (crls ? std::string("empty") : crls.error().message()),
            d.T("remove the file; sealpostd fetches the CRL again", "xóa tệp; sealpostd sẽ tải lại CRL"));
      continue;
    }
    for (int i = 0; i < sk_X509_CRL_num(crls->get()); ++i) {
      CheckCrl(d, sk_X509_CRL_value(crls->get(), i), source, anchors, now, intermediates);
    }
  }
}

// Each webhook secret file of the configuration, read as sealpostd reads it
// (one open with O_NOFOLLOW, checked on the descriptor): present, private
// to its owner, not empty. The content is never printed.
void CheckWebhookSecrets(Doctor& d, const daemon::Config& c) {
  for (const auto& [union_id, file] : c.webhook.secrets) {
    auto secret = ReadPrivateSecretFile(file, "webhook secret", 4096);
    if (!secret) {
      d.Add("webhook", Level::kFail, d.T("union ", "công đoàn ") + union_id + ": " + secret.error().message(),
            d.T("write the secret (openssl rand -hex 32 > FILE), chmod 600 FILE, owned by sealpostd's user",
                "ghi khóa bí mật (openssl rand -hex 32 > TỆP), chmod 600 TỆP, thuộc người dùng của sealpostd"));
    } else if (secret->view().size() < 32) {
      d.Add("webhook", Level::kFail,
            d.T("union " + union_id + ": webhook secret " + file + " is shorter than 32 characters",
                "công đoàn " + union_id + ": khóa webhook " + file + " ngắn hơn 32 ký tự"),
            d.T("openssl rand -hex 32 > FILE", "openssl rand -hex 32 > TỆP"));
    } else {
      d.Add("webhook", Level::kOk,
            d.T("union " + union_id + ": secret " + file + " readable, mode 0600 or stricter",
                "công đoàn " + union_id + ": khóa " + file + " đọc được, quyền 0600 hoặc chặt hơn"));
    }
  }
}

void CheckArchive(Doctor& d, const daemon::Config& c, bool full, bool save) {
  const std::string dir = c.state_dir + "/archive";
  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) {
    d.Add("archive", Level::kFail, dir + ": " + reader.error().message(),
          d.T("restore the archive from a mirror (docs/archive.md) or check state_dir",
              "khôi phục kho từ bản sao (docs/archive.md) hoặc kiểm tra state_dir"));
    return;
  }
  const std::string saved = c.state_dir + "/doctor/checkpoint";
  storage::AuditOptions o;
  o.trust_files = c.trust_anchors;
  o.jobs = 1;
  bool incremental = false;
  if (!full) {
    auto body = ReadFile(saved, 1u << 20);
    auto sig = ReadFile(saved + ".p7s", 1u << 20);
    if (body) {
      auto t = storage::ParseTrustedCheckpoint(
          *body, sig ? std::optional<std::string_view>(*sig) : std::nullopt, saved);
      if (t) {
        o.trusted = std::move(*t);
        incremental = true;
      }
    }
  }
  auto started = std::chrono::steady_clock::now();
  auto report = storage::Audit(dir, o);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!report) {
    d.Add("archive", Level::kFail, d.T("audit: ", "kiểm toán: ") + report.error().message(),
          d.T("run sealpost audit on the archive and restore from a mirror",
              "chạy sealpost audit trên kho và khôi phục từ bản sao"));
    return;
  }
  char took[32];
  std::snprintf(took, sizeof took, "%.2f s", secs);
  std::string summary =
      d.T(std::to_string((*reader)->size()) + " entries, checkpoint verified, head " +
              (*reader)->head().substr(0, 12) + "; audit checked " +
              std::to_string(report->entries_checked) + " entries" +
              (incremental ? " after the checkpoint of the last clean check (size " +
                                 std::to_string(report->trusted_size) + ")"
                           : " (full)") +
              " in " + took,
          std::to_string((*reader)->size()) + " mục, checkpoint hợp lệ, head " +
              (*reader)->head().substr(0, 12) + "; đã kiểm toán " +
              std::to_string(report->entries_checked) + " mục" +
              (incremental ? " sau checkpoint của lần kiểm tra sạch trước (cỡ " +
                                 std::to_string(report->trusted_size) + ")"
                           : " (toàn bộ)") +
              " trong " + took);
  if (!report->problems.empty()) {
    const storage::AuditProblem& p = report->problems.front();
    Level l = report->ExitCode() == 1 ? Level::kFail : Level::kWarn;
    d.Add("archive", l,
          summary + "; " + std::to_string(report->problems.size()) +
              d.T(" problem(s), first: ", " vấn đề, đầu tiên: ") +
              storage::AuditProblemSentence(p, d.lang()) +
              " [" + p.code + (p.seq != 0 ? " seq " + std::to_string(p.seq) : "") + "]",
          d.T("stop the daemon, run sealpost audit " + dir + " --trust ... and compare with a "
              "mirror (docs/archive.md)",
              "dừng daemon, chạy sealpost audit " + dir + " --trust ... và so với bản sao "
              "(docs/archive.md)"));
    return;
  }
  d.Add("archive", Level::kOk, summary);
  if (save) {
    // The head checkpoint, trusted by the next run: only after a clean audit.
    ::mkdir((c.state_dir + "/doctor").c_str(), 0700);
    Status a = WriteFileAtomic(saved, (*reader)->checkpoint_body());
    Status b = WriteFileAtomic(saved + ".p7s", (*reader)->checkpoint_signature());
    (void)a;
    (void)b;
  }
}

void CheckHealth(Doctor& d, const std::string& name, const std::string& host, int port,
                 const std::string& path, const daemon::Config& c, bool mutual, bool verify_host) {
  client::ClientOptions o;
  o.host = host;
  o.port = port;
  o.ca_file = c.delivery.ca;
  if (mutual) {
    o.cert_file = c.delivery.certificate;
    o.key_file = c.delivery.key;
  }
  o.verify_host = verify_host;
  o.connect_timeout_seconds = 5;
  o.timeout_seconds = 10;
  o.max_response_bytes = 1u << 20;
  const std::string where = "https://" + host + ":" + std::to_string(port) + path;
  auto cl = client::HttpsClient::Create(o);
  Result<client::Response> r = cl ? (*cl)->Get(path + "/api/v1/health")
                                  : Result<client::Response>(Err(cl.error()));
  if (!r) {
    bool self = !mutual;
    d.Add(name, self ? Level::kFail : Level::kWarn,
          d.T(where + " unreachable: " + r.error().message(),
              where + " không kết nối được: " + r.error().message()),
          self ? d.T("start sealpostd (systemctl start sealpostd; journalctl -u sealpostd)",
                     "khởi động sealpostd (systemctl start sealpostd; journalctl -u sealpostd)")
               : d.T("the peer's appliance or the network is down: tell its operator; "
                     "deliveries are retried meanwhile",
                     "thiết bị của đơn vị kia hoặc mạng đang lỗi: báo người quản trị bên đó; "
                     "việc gửi sẽ được thử lại"));
    return;
  }
  if (r->status != 200) {
    d.Add(name, Level::kFail,
          d.T(where + " answered " + std::to_string(r->status),
              where + " trả lời " + std::to_string(r->status)),
          mutual ? d.T("the peer does not accept our certificate: check tls_identity in the "
                       "policy registry",
                       "đơn vị kia không chấp nhận chứng thư của ta: kiểm tra tls_identity trong "
                       "sổ đăng ký chính sách")
                 : d.T("read the daemon's log", "xem nhật ký của daemon"));
    return;
  }
  bool degraded = r->body.find("\"status\":\"degraded\"") != std::string::npos;
  if (degraded) {
    d.Add(name, Level::kWarn, d.T(where + " reports degraded: ", where + " báo suy giảm: ") + r->body.substr(0, 300),
          d.T("see the other checks and the daemon's log", "xem các mục khác và nhật ký của daemon"));
  } else {
    d.Add(name, Level::kOk, d.T(where + " healthy", where + " hoạt động tốt"));
  }
}

}  // namespace

int RunDoctor(Context& ctx, const std::vector<std::string>& argv) {
  if (argv.size() == 1 && (argv[0] == "--help" || argv[0] == "-h")) {
    std::fprintf(ctx.out,
                 "%s\nChecks: config, policy, signer, certificate, trust, archive, daemon, peer <id>; "
                 "one OK/WARN/FAIL line each.\nExit status: 0 all OK, 1 warnings only, 2 a failure, "
                 "64 usage. See docs/doctor.md.\n",
                 kDoctorUsage);
    return 0;
  }
  FlagSpec spec;
  spec.with_value = {"--config"};
  spec.boolean = {"--json", "--full-audit", "--no-save"};
  auto args = Args::Parse(argv, spec);
  if (!args) return Fail(ctx, args.error().WithContext("doctor"));
  if (!args->positional().empty() || !args->Get("--config")) {
    return Fail(ctx, Status::InvalidArgument(kDoctorUsage));
  }
  Doctor d(ctx.lang);
  const std::string file = *args->Get("--config");
  auto config = daemon::LoadConfig(file);
  if (!config) {
    d.Add("config", Level::kFail, config.error().message(),
          d.T("fix the configuration (docs/daemon.md, examples/sealpostd.yaml)",
              "sửa tệp cấu hình (docs/daemon.md, examples/sealpostd.yaml)"));
  } else {
    const daemon::Config& c = *config;
    d.Add("config", Level::kOk, file + d.T(": union ", ": công đoàn ") + c.union_id);
    auto policy = policies::LoadPolicyFiles(c.policy_files);
    const policies::Policy* p = policy ? policy->get() : nullptr;
    if (!policy) {
      d.Add("policy", Level::kFail, policy.error().message(),
            d.T("fix the policy files (sealpost policy check FILE...)",
                "sửa tệp chính sách (sealpost policy check FILE...)"));
    } else if (p->FindUnion(c.union_id) == nullptr) {
      d.Add("policy", Level::kFail,
            d.T("union " + c.union_id + " is not in the policy registry",
                "công đoàn " + c.union_id + " không có trong sổ đăng ký"),
            d.T("fix `union` in the configuration or the registry",
                "sửa `union` trong cấu hình hoặc sổ đăng ký"));
    } else {
      d.Add("policy", Level::kOk,
            d.T(std::to_string(p->unions.size()) + " unions, " + std::to_string(p->document_types.size()) +
                    " document types",
                std::to_string(p->unions.size()) + " công đoàn, " + std::to_string(p->document_types.size()) +
                    " loại văn bản"));
    }
    CheckSigner(d, c);
    CheckTlsCertificate(d, d.T("peer listener certificate", "chứng thư cổng ngang hàng"),
                        c.peer.certificate);
    CheckTlsCertificate(d, d.T("user listener certificate", "chứng thư cổng người dùng"),
                        c.user.certificate);
    if (c.delivery.certificate != c.peer.certificate) {
      CheckTlsCertificate(d, d.T("delivery certificate", "chứng thư gửi"), c.delivery.certificate);
    }
    X509StorePtr anchors(X509_STORE_new());
    X509StackPtr intermediates = LoadIntermediates(d, c);
    CheckTrust(d, c, anchors.get(), intermediates.get());
    if (p != nullptr) CheckFetchedCrls(d, c, *p, anchors.get(), intermediates.get());
    CheckWebhookSecrets(d, c);
    CheckArchive(d, c, args->Has("--full-audit"), !args->Has("--no-save"));
    if (c.user.port != 0) {
      std::string host = c.user.address == "0.0.0.0" || c.user.address.empty() ? "127.0.0.1"
                                                                                 : c.user.address;
      CheckHealth(d, "daemon", host, c.user.port, "", c, /*mutual=*/false, /*verify_host=*/false);
    }
    if (p != nullptr) {
      for (const policies::Union& u : p->unions) {
        if (u.id == c.union_id || u.endpoint.empty()) continue;
        std::string host, path;
        int port = 0;
        if (!ParseEndpoint(u.endpoint, &host, &port, &path)) {
          d.Add("peer " + u.id, Level::kFail, u.endpoint + d.T(" is not an https URL", " không phải URL https"),
                d.T("fix the endpoint in the registry", "sửa endpoint trong sổ đăng ký"));
          continue;
        }
        CheckHealth(d, "peer " + u.id, host, port, path, c, /*mutual=*/true, /*verify_host=*/true);
      }
    }
  }
  int code = d.ExitCode();
  if (args->Has("--json")) {
    std::string out = "{\"status\":" + JsonString(code == 0 ? "ok" : code == 1 ? "warn" : "fail") +
                      ",\"exit\":" + std::to_string(code) + ",\"checks\":[";
    bool first = true;
    for (const Check& c : d.checks()) {
      out += (first ? "" : ",");
      first = false;
      out += "{\"check\":" + JsonString(c.name) + ",\"status\":" + JsonString(LevelName(c.level)) +
             ",\"detail\":" + JsonString(c.detail);
      if (!c.fix.empty()) out += ",\"fix\":" + JsonString(c.fix);
      out += "}";
    }
    out += "]}\n";
    std::fputs(out.c_str(), ctx.out);
  } else {
    for (const Check& c : d.checks()) {
      std::fprintf(ctx.out, "%-4s  %-12s %s\n", LevelName(c.level), c.name.c_str(), c.detail.c_str());
      if (!c.fix.empty()) std::fprintf(ctx.out, "      %s %s\n", d.T("fix:", "cách sửa:").c_str(), c.fix.c_str());
    }
    std::fputs(code == 0   ? d.T("doctor: all checks passed\n", "doctor: mọi kiểm tra đều đạt\n").c_str()
               : code == 1 ? d.T("doctor: warnings\n", "doctor: có cảnh báo\n").c_str()
                           : d.T("doctor: failures\n", "doctor: có lỗi\n").c_str(),
               ctx.out);
  }
  std::fflush(ctx.out);
  return code;
}

}  // namespace sealpost::cli
