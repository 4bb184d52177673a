// `sealpost archive init|append|change-seal|list|show|checkpoint|prove|verify-proof|mirror|reindex`:
// the offline archive of a union without the daemon (docs/archive.md, "The
// `sealpost archive` command").
//
// Order of work in the writing commands (init, append), so that bad input
// costs no PIN and changes nothing: arguments, the archive (read-only), the
// files and the signature check, the entry (validated); only then the token
// and the writer lock; the index is updated after the append (it is a
// cache: a failure there is a warning, the entry is archived).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/cms.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/utf8.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/certs.h"
#include "crypto/checkpoint.h"
#include "crypto/digest.h"
#include "crypto/merkle.h"
#include "crypto/report.h"
#include "crypto/verify.h"
#include "crypto/path.h"
#include "pkcs11/open.h"
#include "pkcs11/token.h"
#include "pkcs11/uri.h"
#include "storage/archive.h"
#include "storage/entry.h"
#include "storage/index.h"
#include "storage/reader.h"

namespace sealpost::cli {
namespace {

namespace fs = std::filesystem;
namespace merkle = crypto::merkle;

constexpr const char* kArchiveUsage =
    "usage: sealpost archive <subcommand> ...\n"
    "  init DIR --key URI --origin NAME [--trust ROOTS.pem] [--crl CRL] [--pin-file F]\n"
    "  append DIR FILE [FILE.p7s] --type T --subject S [--from U] [--to U,...] [--reference R]\n"
    "         [--media-type M] [--kind sent|received] [--id ID] [--origin NAME] [--key URI]\n"
    "         [--pin-file F] [--crl CRL]...\n"
    "  change-seal DIR --new-key URI [--new-cert CERT.pem] [--new-pin-file F] [--key URI]\n"
    "         [--pin-file F] [--trust ROOTS.pem]\n"
    "  list DIR [--kind K] [--type T] [--counterpart U] [--since D] [--until D] [--json]\n"
    "  show DIR SEQ|ID [--json]\n"
    "  checkpoint DIR [-o FILE]            (FILE: the body, FILE.p7s: its CMS signature)\n"
    "  prove DIR SEQ [--checkpoint FILE] [-o FILE]\n"
    "  verify-proof PROOF [--checkpoint TRUSTED] [--seal CERT.pem]\n"
    "  mirror DIR REMOTE                   (a path or file:// URL; never forced)\n"
    "  reindex DIR\n"
    "common: [--timeout SECONDS] (bound on each token call, default 20)\n";

constexpr size_t kMaxSignatureBytes = 64u << 20;
constexpr size_t kMaxProofBytes = 16u << 20;

// Tr() as a std::string, so messages can be built with operator+.
std::string T(Lang lang, std::string_view en, std::string_view vi) {
  return std::string(Tr(lang, en, vi));
}

Status Translated(const Context& ctx, const Status& s, std::string_view en, std::string_view vi) {
  return Status(s.code(), std::string(T(ctx.lang, en, vi)) + ": " + s.message());
}

int Usage(const Context& ctx, const std::string& en, const std::string& vi) {
  std::fprintf(ctx.err, "sealpost: %s\n%s", std::string(T(ctx.lang, en, vi)).c_str(),
               kArchiveUsage);
  return 64;
}

void Say(const Context& ctx, std::string_view en, std::string_view vi) {
  std::fprintf(ctx.out, "%s\n", std::string(T(ctx.lang, en, vi)).c_str());
}

void Warn(const Context& ctx, std::string_view en, std::string_view vi) {
  std::fprintf(ctx.err, "sealpost: %s\n", std::string(T(ctx.lang, en, vi)).c_str());
}

Result<Args> ParseOrUsage(const Context& ctx, const std::vector<std::string>& argv,
                          FlagSpec spec, int* code) {
  spec.with_value.insert("--timeout");
  auto args = Args::Parse(argv, spec);
  if (!args) {
    *code = Usage(ctx, "invalid arguments: " + args.error().message(),
                  "tham số không hợp lệ: " + args.error().message());
  }
  return args;
}

Result<std::optional<std::chrono::milliseconds>> ParseTimeout(const Args& args) {
  auto t = args.Get("--timeout");
  if (!t) return std::optional<std::chrono::milliseconds>();
  char* end = nullptr;
  double secs = std::strtod(t->c_str(), &end);
  if (end == t->c_str() || *end != '\0' || !(secs > 0) || secs > 3600) {
    return Err(Status::InvalidArgument("--timeout: \"" + *t +
                                       "\" is not a number of seconds (0-3600]"));
  }
  return std::optional<std::chrono::milliseconds>(
      std::chrono::milliseconds(static_cast<long>(secs * 1000)));
}

Result<uint64_t> ParseSeq(const std::string& text) {
  if (text.empty() || text.size() > 19 || text[0] == '0' ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Err(Status::InvalidArgument("\"" + text + "\" is not an entry number (1, 2, ...)"));
  }
  return static_cast<uint64_t>(std::strtoull(text.c_str(), nullptr, 10));
}

bool IsDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string part = s.substr(start, end - start);
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    while (!part.empty() && part.back() == ' ') part.pop_back();
    if (!part.empty()) out.push_back(part);
    start = end + 1;
  }
  return out;
}

std::string GuessMediaType(const std::string& name) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".pdf", "application/pdf"},   {".txt", "text/plain"},
      {".xml", "application/xml"},   {".json", "application/json"},
      {".doc", "application/msword"},
      {".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {".xls", "application/vnd.ms-excel"},
      {".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
      {".odt", "application/vnd.oasis.opendocument.text"},
      {".png", "image/png"},         {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},       {".zip", "application/zip"},
  };
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [ext, type] : kTypes) {
    if (lower.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

Result<std::string> NewUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return Err(OpenSslStatus(Code::kInternal, "RAND_bytes"));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(std::string_view(reinterpret_cast<const char*>(b), sizeof b));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string PemOfCert(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string PemOfCrl(X509_CRL* crl) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl) != 1) return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// A date for --since/--until: "YYYY-MM-DD" (the whole day, UTC) or RFC 3339.
Result<std::string> NormalizeDate(const std::string& text, bool end_of_day) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    auto t = crypto::ParseRfc3339(text + (end_of_day ? "T23:59:59Z" : "T00:00:00Z"));
    if (!t) return Err(Status::InvalidArgument("\"" + text + "\" is not a date (YYYY-MM-DD)"));
    return crypto::FormatRfc3339(*t);
  }
  auto t = crypto::ParseRfc3339(text);
  if (!t) {
    return Err(Status::InvalidArgument("\"" + text +
                                       "\" is not a date (YYYY-MM-DD or RFC 3339)"));
  }
  return crypto::FormatRfc3339(*t);
}

Result<std::string> EntryKindArg(const std::string& k) {
  if (k == "sent") return std::string("document-sent");
  if (k == "received") return std::string("document-received");
  auto kind = storage::ParseEntryKind(k);
  if (!kind) {
    return Err(Status::InvalidArgument(
        "--kind \"" + k +
        "\": one of sent, received, document-sent, document-received, delivery-receipt, "
        "policy-version, checkpoint, key-change, withdrawal, delivery-attempts, crl"));
  }
  return std::string(storage::EntryKindName(*kind));
}

// Opens (and brings up to date) the index of the archive; a damaged index
// file is a cache: it is removed and rebuilt.
Result<std::unique_ptr<storage::Index>> FreshIndex(storage::ArchiveReader& reader,
                                                   storage::IndexUpdate* update = nullptr) {
  const std::string path = storage::Index::PathFor(reader.state_dir());
  auto index = storage::Index::Open(path);
  if (!index && index.error().code() == Code::kDataError) {
    SP_RETURN_IF_ERROR(storage::Index::Remove(path));
    index = storage::Index::Open(path);
  }
  if (!index) return Err(index.error());
  auto u = (*index)->Update(reader);
  if (!u) return Err(u.error());
  if (update) *update = *u;
  return index;
}

std::unique_ptr<crypto::Signer>* g_signer = nullptr;  // set by RunArchive for the writers
std::unique_ptr<crypto::Signer>* g_new_signer = nullptr;  // change-seal's second token

Result<std::unique_ptr<crypto::Signer>*> OpenSigner(const Context& ctx, const Args& args,
                                                    const std::string& key_uri) {
  pkcs11::OpenOptions o;
  o.lang = ctx.lang;
  o.pin_file = args.Get("--pin-file");
  o.interactive = ::isatty(STDIN_FILENO) == 1;
  auto timeout = ParseTimeout(args);
  if (!timeout) return Err(timeout.error());
  if (*timeout) o.call_timeout = **timeout;
  auto opened = pkcs11::OpenTokenSigner(key_uri, o);
  if (!opened) return Err(opened.error());
  *g_signer = std::move(*opened);
  return g_signer;
}

// ---------------------------------------------------------------- init

int Init(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--key", "--origin", "--trust", "--crl", "--pin-file"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive init needs exactly one DIR", "lệnh archive init cần đúng một THƯ MỤC");
  }
  const std::string dir = args->positional()[0];
  auto key = args->Get("--key");
  auto origin = args->Get("--origin");
  if (!key || key->empty() || !origin || origin->empty()) {
    return Usage(ctx, "archive init needs --key URI and --origin NAME",
                 "lệnh archive init cần --key URI và --origin TÊN");
  }
  if (key->find("pin-value") != std::string::npos) {
    return Usage(ctx, "the key URI carries a PIN (pin-value): it would be stored in the archive's "
                      "configuration; use pin-source=file:... or --pin-file",
                 "URI khóa chứa mã PIN (pin-value): nó sẽ bị lưu vào cấu hình kho lưu trữ; hãy "
                 "dùng pin-source=file:... hoặc --pin-file");
  }
  if (auto t = ParseTimeout(*args); !t) return Fail(ctx, t.error());
  if (auto probe = crypto::SerializeCheckpoint({*origin, 0, merkle::EmptyRoot(), {}}); !probe) {
    return Usage(ctx, "--origin: " + probe.error().message(), "--origin: " + probe.error().message());
  }
  std::vector<std::pair<std::string, std::string>> config = {{"sealpost.origin", *origin},
                                                             {"sealpost.key", *key}};
  std::error_code ec;
  if (auto trust = args->Get("--trust")) {
    auto certs = crypto::LoadCertificates(*trust);
    if (!certs) {
      return Fail(ctx, Translated(ctx, certs.error(), "cannot use --trust " + *trust,
                                  "không dùng được --trust " + *trust));
    }
    config.push_back({"sealpost.trust", fs::absolute(*trust, ec).lexically_normal().string()});
  }
  if (auto crl = args->Get("--crl")) {
    auto crls = crypto::LoadCrls(*crl);
    if (!crls) {
      return Fail(ctx, Translated(ctx, crls.error(), "cannot use --crl " + *crl,
                                  "không dùng được --crl " + *crl));
    }
    config.push_back({"sealpost.crls", fs::absolute(*crl, ec).lexically_normal().string()});
  }
  // Checked before the token: Archive::Create checks again.
  bool existed = fs::exists(dir, ec);
  if (existed && (!fs::is_directory(dir, ec) || !fs::is_empty(dir, ec))) {
    return Fail(ctx, Status::FailedPrecondition(
                         std::string(T(ctx.lang, "cannot create the archive: ",
                                        "không tạo được kho lưu trữ: ")) +
                         dir + T(ctx.lang, " exists and is not an empty directory",
                                  " đã tồn tại và không phải thư mục rỗng")));
  }

  auto signer = OpenSigner(ctx, *args, *key);
  if (!signer) {
    return Fail(ctx, Translated(ctx, signer.error(), "cannot use the seal key",
                                "không dùng được khóa con dấu"));
  }
  storage::ArchiveOptions o;
  o.origin = *origin;
  o.signer = (*signer)->get();
  o.seal_key = crypto::KeyRef{*key};
  auto archive = storage::Archive::Create(dir, o);
  if (!archive) {
    return Fail(ctx, Translated(ctx, archive.error(), "cannot create the archive",
                                "không tạo được kho lưu trữ"));
  }
  std::string head = (*archive)->head();
  archive->reset();  // releases the writer lock
  if (Status s = storage::SetArchiveConfig(dir, config); !s.ok()) {
    // An archive without its configuration is not what was asked for.
    if (existed) {
      for (const auto& e : fs::directory_iterator(dir, ec)) fs::remove_all(e.path(), ec);
    } else {
      fs::remove_all(dir, ec);
    }
    return Fail(ctx, Translated(ctx, s, "cannot record the archive's configuration",
                                "không ghi được cấu hình của kho lưu trữ"));
  }
  auto reader = storage::ArchiveReader::Open(dir);
  if (reader) {
    if (auto index = FreshIndex(**reader); !index) {
      Warn(ctx, "the index was not built (run `sealpost archive reindex`): " + index.error().message(),
           "chưa xây được chỉ mục (hãy chạy `sealpost archive reindex`): " + index.error().message());
    }
  }
  std::string seal = reader ? crypto::DisplayName((*reader)->seal()) : std::string();
  Say(ctx, "created archive " + dir + " (origin " + *origin + ", seal: " + seal + ")",
      "đã tạo kho lưu trữ " + dir + " (nguồn " + *origin + ", con dấu: " + seal + ")");
  std::fprintf(ctx.out, "head %s\n", head.c_str());
  return 0;
}

// ---------------------------------------------------------------- change-seal

// A token key as it takes part in a seal change: signatures by the token,
// and the certificate that stands for the key in the change — the seal in
// force as the archive announced it (the token may already hold a renewed
// certificate for the same key), or the new certificate (from --new-cert
// or the token). The key's public key was checked against it.
class ChangeSealKey final : public crypto::Signer {
 public:
  ChangeSealKey(std::unique_ptr<pkcs11::Token> token, X509Ptr cert)
      : token_(std::move(token)), cert_(std::move(cert)) {}
  Result<X509Ptr> Certificate(const crypto::KeyRef&) override {
    X509Ptr copy(X509_dup(cert_.get()));
    if (!copy) return Err(OpenSslStatus(Code::kInternal, "X509_dup"));
    return copy;
  }
  Result<std::string> Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                           std::string_view digest) override {
    return token_->Sign(key, alg, digest);
  }
  pkcs11::Token& token() { return *token_; }

 private:
  std::unique_ptr<pkcs11::Token> token_;
  X509Ptr cert_;
};

// Whether two key URIs name the same token (then one PIN serves both).
bool SameToken(const std::string& a, const std::string& b) {
  auto ua = pkcs11::ParseUri(a);
  auto ub = pkcs11::ParseUri(b);
  if (!ua || !ub) return false;
  return ua->token == ub->token && ua->serial == ub->serial &&
         ua->module_path == ub->module_path && ua->module_name == ub->module_name;
}

int ChangeSeal(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--key", "--pin-file", "--new-key", "--new-cert", "--new-pin-file", "--trust"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive change-seal needs exactly one DIR",
                 "lệnh archive change-seal cần đúng một THƯ MỤC");
  }
  const std::string dir = args->positional()[0];
  auto new_key = args->Get("--new-key");
  if (!new_key || new_key->empty()) {
    return Usage(ctx, "archive change-seal needs --new-key URI (the new seal's key)",
                 "lệnh archive change-seal cần --new-key URI (khóa của con dấu mới)");
  }
  if (new_key->find("pin-value") != std::string::npos) {
    return Usage(ctx, "the new key URI carries a PIN (pin-value): it would be stored in the "
                      "archive's configuration; use pin-source=file:... or --new-pin-file",
                 "URI khóa mới chứa mã PIN (pin-value): nó sẽ bị lưu vào cấu hình kho lưu trữ; "
                 "hãy dùng pin-source=file:... hoặc --new-pin-file");
  }
  auto timeout = ParseTimeout(*args);
  if (!timeout) return Fail(ctx, timeout.error());

  // The archive, read-only: the seal in force, the key and trust recorded.
  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) {
    return Fail(ctx, Translated(ctx, reader.error(), "cannot use the archive",
                                "không dùng được kho lưu trữ"));
  }
  const std::string origin = (*reader)->origin();
  X509Ptr in_force(X509_dup((*reader)->seal()));
  if (!in_force) return Fail(ctx, Status::DataError(dir + ": no seal certificate at head"));
  auto old_key = args->Get("--key");
  if (!old_key) old_key = (*reader)->ConfigString("sealpost.key");
  if (!old_key || old_key->empty()) {
    return Usage(ctx,
                 "no --key URI given for the seal in force and none recorded in the archive "
                 "(sealpost.key)",
                 "không có --key URI của con dấu đang dùng và kho lưu trữ chưa ghi khóa nào "
                 "(sealpost.key)");
  }
  std::optional<std::string> trust = args->Get("--trust");
  if (!trust) trust = (*reader)->ConfigString("sealpost.trust");
  reader->reset();

  std::optional<crypto::TrustStore> anchors;
  if (trust) {
    crypto::TrustFiles files;
    files.anchors = {*trust};
    crypto::TrustOptions topts;
    topts.check_revocation = false;  // no CRLs at hand here; the audit checks with its own
    auto store = crypto::LoadTrustStore(files, topts);
    if (!store) {
      return Fail(ctx, Translated(ctx, store.error(), "cannot use the trust anchors " + *trust,
                                  "không dùng được chứng thư gốc " + *trust));
    }
    anchors.emplace(std::move(*store));
  }
  // What every new seal certificate must be: another certificate than the
  // one in force, issued under the archive's trust anchors (the audit
  // checks each commit's seal against them), usable for signing now.
  auto check_new = [&](X509* cert, const std::string& what) -> Status {
    if (X509_cmp(cert, in_force.get()) == 0) {
      return Status::FailedPrecondition(
          what + T(ctx.lang, " is the seal certificate in force (", " là chứng thư con dấu đang dùng (") +
          crypto::DisplayName(cert) + T(ctx.lang, "): nothing to change", "): không có gì để đổi"));
    }
    if (anchors) {
      crypto::PathResult path =
          anchors->Validate(cert, nullptr, std::time(nullptr), crypto::Usage::kDocumentSigning);
      if (!path.ok()) {
        return Status::FailedPrecondition(
            what + " (" + crypto::DisplayName(cert) + T(ctx.lang, ", issued by ", ", do ") +
            crypto::NameToUtf8(X509_get_issuer_name(cert)) + T(ctx.lang, ")", " cấp)") +
            T(ctx.lang, " is not usable as the seal under the trust anchors ",
              " không dùng được làm con dấu theo chứng thư gốc ") +
            *trust + ": " + std::string(crypto::SubIndicationName(path.sub_indication)) + " — " +
            crypto::ReasonText(path.reason, ctx.lang) + (path.detail.empty() ? "" : " (" + path.detail + ")"));
      }
    }
    return Status::Ok();
  };
  X509Ptr given;
  std::string given_path;
  if (auto c = args->Get("--new-cert")) {
    given_path = *c;
    auto cert = crypto::LoadCertificate(*c);
    if (!cert) {
      return Fail(ctx, Translated(ctx, cert.error(), "cannot use --new-cert " + *c,
                                  "không dùng được --new-cert " + *c));
    }
    given = std::move(*cert);
    if (Status s = check_new(given.get(), *c); !s.ok()) return Fail(ctx, s);
  }
  if (!anchors) {
    Warn(ctx, "no trust anchors (--trust, or recorded at init): the new certificate's issuer is not checked",
         "không có chứng thư gốc (--trust, hoặc ghi khi init): chưa kiểm tra bên cấp chứng thư mới");
  }

  // The tokens: the seal in force signs the change too, so its token must
  // be there.
  pkcs11::OpenOptions o;
  o.lang = ctx.lang;
  o.interactive = ::isatty(STDIN_FILENO) == 1;
  if (*timeout) o.call_timeout = **timeout;
  o.pin_file = args->Get("--pin-file");
  auto old_token = pkcs11::Token::Open(*old_key, o);
  if (!old_token) {
    return Fail(ctx, Translated(ctx, old_token.error(),
                                "cannot use the seal in force (" + *old_key +
                                    "); a seal change is signed by the seal in force and the new "
                                    "one, so its token must be present (a lost token: "
                                    "docs/operator-guide.md, \"Replace a token or a certificate\")",
                                "không dùng được con dấu đang dùng (" + *old_key +
                                    "); việc đổi con dấu được ký bởi cả con dấu đang dùng và con "
                                    "dấu mới, nên phải có token của nó (mất token: "
                                    "docs/operator-guide.md)"));
  }
  auto old_pub = (*old_token)->PublicKey(crypto::KeyRef{*old_key});
  if (!old_pub) {
    return Fail(ctx, Translated(ctx, old_pub.error(), "cannot use the seal in force",
                                "không dùng được con dấu đang dùng"));
  }
  if (EVP_PKEY_eq(old_pub->get(), X509_get0_pubkey(in_force.get())) != 1) {
    return Fail(ctx, Status::FailedPrecondition(
                         *old_key + T(ctx.lang, " is not the key of the archive's seal in force (",
                                      " không phải khóa của con dấu đang dùng của kho lưu trữ (") +
                         crypto::DisplayName(in_force.get()) + ")"));
  }
  pkcs11::OpenOptions n = o;
  n.pin_file = args->Get("--new-pin-file");
  if (!n.pin_file && SameToken(*old_key, *new_key)) n.pin_file = o.pin_file;
  n.read_write = static_cast<bool>(given);  // to store the new certificate beside its key
  auto new_token = pkcs11::Token::Open(*new_key, n);
  if (!new_token) {
    return Fail(ctx, Translated(ctx, new_token.error(), "cannot use the new seal key " + *new_key,
                                "không dùng được khóa con dấu mới " + *new_key));
  }
  auto new_pub = (*new_token)->PublicKey(crypto::KeyRef{*new_key});
  if (!new_pub) {
    return Fail(ctx, Translated(ctx, new_pub.error(), "cannot use the new seal key",
                                "không dùng được khóa con dấu mới"));
  }
  X509Ptr new_cert;
  if (given) {
    if (EVP_PKEY_eq(new_pub->get(), X509_get0_pubkey(given.get())) != 1) {
      return Fail(ctx, Status::FailedPrecondition(
                           given_path + " (" + crypto::DisplayName(given.get()) + ")" +
                           T(ctx.lang, " is not a certificate of the new key ",
                             " không phải chứng thư của khóa mới ") +
                           *new_key));
    }
    new_cert.reset(X509_dup(given.get()));
  } else {
    auto stored = (*new_token)->Certificate(crypto::KeyRef{*new_key});
    if (!stored) {
      return Fail(ctx, Translated(ctx, stored.error(),
                                  "no certificate for the new seal key on its token: give "
                                  "--new-cert FILE (or `sealpost token import-cert` first)",
                                  "token không có chứng thư cho khóa con dấu mới: hãy dùng "
                                  "--new-cert TỆP (hoặc `sealpost token import-cert` trước)"));
    }
    new_cert = std::move(*stored);
    if (Status s = check_new(new_cert.get(), T(ctx.lang, "the certificate on the token of ",
                                                "chứng thư trên token của ") + *new_key);
        !s.ok()) {
      return Fail(ctx, s);
    }
  }
  const bool renew = EVP_PKEY_eq(new_pub->get(), old_pub->get()) == 1;

  *g_signer = std::make_unique<ChangeSealKey>(std::move(*old_token), X509Ptr(X509_dup(in_force.get())));
  auto* new_signer = new ChangeSealKey(std::move(*new_token), X509Ptr(X509_dup(new_cert.get())));
  g_new_signer->reset(new_signer);

  // The change: one entry, signed by both seals, in a commit by the new one.
  storage::ArchiveOptions ao;
  ao.origin = origin;
  ao.signer = g_signer->get();
  ao.seal_key = crypto::KeyRef{*old_key};
  auto archive = storage::Archive::Open(dir, ao);
  if (!archive) {
    return Fail(ctx, Translated(ctx, archive.error(), "cannot open the archive for writing",
                                "không mở được kho lưu trữ để ghi"));
  }
  auto changed = (*archive)->ChangeSeal(new_signer, crypto::KeyRef{*new_key});
  std::string head = (*archive)->head();
  archive->reset();  // releases the writer lock
  if (!changed) {
    return Fail(ctx, Translated(ctx, changed.error(), "the seal was not changed",
                                "chưa đổi được con dấu"));
  }
  const std::string seq = std::to_string(changed->seq);
  int rc = 0;
  if (Status s = storage::SetArchiveConfig(dir, {{"sealpost.key", *new_key}}); !s.ok()) {
    // The change is made and durable; only the remembered URI is stale.
    Warn(ctx, "the seal was changed (entry #" + seq + ") but the new key URI was not recorded (" +
                  s.message() + "): give --key " + *new_key + " to the next append",
         "đã đổi con dấu (mục #" + seq + ") nhưng chưa ghi được URI khóa mới (" + s.message() +
             "): hãy dùng --key " + *new_key + " cho lần ghi tiếp theo");
    rc = ExitCodeFor(s);
  }
  if (auto r = storage::ArchiveReader::Open(dir)) {
    if (auto index = FreshIndex(**r); !index) {
      Warn(ctx, "the index was not updated (run `sealpost archive reindex`): " + index.error().message(),
           "chưa cập nhật được chỉ mục (hãy chạy `sealpost archive reindex`): " + index.error().message());
    }
  }
  // The daemon's signer reads the seal certificate from the token: put the
  // one given there, beside its key.
  if (given) {
    Status stored = new_signer->token().StoreCertificate(crypto::KeyRef{*new_key}, given.get());
    if (!stored.ok()) {
      Warn(ctx, "the new certificate is not on the token (" + stored.message() +
                    "); sealpost-signer and sealpostd need it there: replace the token's "
                    "certificate object of the key, then `sealpost token import-cert " + *new_key +
                    " " + given_path + "`",
           "chứng thư mới chưa có trên token (" + stored.message() +
               "); sealpost-signer và sealpostd cần nó ở đó: hãy thay chứng thư của khóa trên "
               "token, rồi `sealpost token import-cert " + *new_key + " " + given_path + "`");
    }
  }
  const std::string what = renew ? "renew" : "rotate";
  const std::string from = crypto::DisplayName(in_force.get()) + " [" + crypto::SerialHex(in_force.get()) + "]";
  const std::string to = crypto::DisplayName(new_cert.get()) + " [" + crypto::SerialHex(new_cert.get()) + "]";
  Say(ctx, "seal changed (" + what + ") in entry #" + seq + ": " + from + " -> " + to,
      "đã đổi con dấu (" + what + ") ở mục #" + seq + ": " + from + " -> " + to);
  std::fprintf(ctx.out, "head %s\n", head.c_str());
  return rc;
}

// ---------------------------------------------------------------- append

// The signature check of an append: the whole report, and the evidence
// (certificates below the anchors, CRLs) when a chain was validated.
struct Checked {
  crypto::Report report;
  std::string certs_pem;
  std::string crls_pem;
  bool chain_checked = false;
};

bool IsPathReason(crypto::Reason r) {
  using crypto::Reason;
  switch (r) {
    case Reason::kNoChain:
    case Reason::kCertExpired:
    case Reason::kCertNotYetValid:
    case Reason::kCrlMissing:
    case Reason::kCrlOutdated:
    case Reason::kCrlInvalid:
    case Reason::kChainInvalid:
    case Reason::kKeyUsageRefused:
    case Reason::kExtKeyUsageRefused:
      return true;
    default:
      return false;
  }
}

Result<Checked> CheckSignature(const std::string& content, const std::string& der,
                               const std::optional<std::string>& trust,
                               const std::vector<std::string>& crl_files) {
  Checked out;
  if (trust) {
    crypto::TrustFiles files;
    files.anchors = {*trust};
    files.crls = crl_files;
    auto store = crypto::LoadTrustStore(files, crypto::TrustOptions{});
    if (!store) return Err(store.error());
    auto verifier = crypto::Verifier::Create(std::move(*store));
    if (!verifier) return Err(verifier.error());
    auto report = verifier->VerifyBytes(content, der);
    if (!report) return Err(report.error());
    out.report = std::move(*report);
    out.chain_checked = true;
    if (out.report.indication != crypto::Indication::kPassed) return out;
    // Evidence: every certificate of the verified chains but the anchors,
    // and the CRLs issued by a certificate of those chains.
    std::vector<X509*> kept;
    std::vector<X509_NAME*> issuers;
    for (const crypto::SignerReport& s : out.report.signers) {
      if (!s.chain) continue;
      int n = sk_X509_num(s.chain.get());
      for (int i = 0; i < n; ++i) {
        X509* c = sk_X509_value(s.chain.get(), i);
        issuers.push_back(X509_get_subject_name(c));
        if (i == n - 1) continue;  // the trust anchor
        bool dup = std::any_of(kept.begin(), kept.end(), [&](X509* k) { return X509_cmp(k, c) == 0; });
        if (!dup) {
          kept.push_back(c);
          out.certs_pem += PemOfCert(c);
        }
      }
    }
    for (const std::string& f : crl_files) {
      auto crls = crypto::LoadCrls(f);
      if (!crls) return Err(crls.error());
      for (int i = 0; i < sk_X509_CRL_num(crls->get()); ++i) {
        X509_CRL* crl = sk_X509_CRL_value(crls->get(), i);
        bool used = std::any_of(issuers.begin(), issuers.end(), [&](X509_NAME* n) {
          return X509_NAME_cmp(n, X509_CRL_get_issuer(crl)) == 0;
        });
        std::string pem = PemOfCrl(crl);
        if (used && out.crls_pem.find(pem) == std::string::npos) out.crls_pem += pem;
      }
    }
    return out;
  }
  // No trust anchors configured: integrity only. The certificates carried
  // in the signature stand in as anchors so the signer's certificate is
  // found; path problems are then not judged (and not recorded as evidence).
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms) return Err(Status::DataError("the signature is not a CMS SignedData"));
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  if (!certs || sk_X509_num(certs.get()) == 0) {
    crypto::SignerReport s;
    s.indication = crypto::Indication::kIndeterminate;
    s.sub_indication = crypto::SubIndication::kNoSigningCertificateFound;
    s.reason = crypto::Reason::kSignerCertNotFound;
    out.report.signers.push_back(s);
    crypto::Summarize(out.report);
    return out;
  }
  crypto::TrustOptions options;
  options.check_revocation = false;
  auto store = crypto::TrustStore::Create(std::move(certs), nullptr, nullptr, options);
  if (!store) return Err(store.error());
  auto verifier = crypto::Verifier::Create(std::move(*store));
  if (!verifier) return Err(verifier.error());
  auto report = verifier->VerifyBytes(content, der);
  if (!report) return Err(report.error());
  out.report = std::move(*report);
  // Only integrity counts here: a path result is not a verdict.
  for (crypto::SignerReport& s : out.report.signers) {
    if (IsPathReason(s.reason)) {
      s.indication = crypto::Indication::kPassed;
      s.sub_indication = crypto::SubIndication::kNone;
    }
  }
  crypto::Summarize(out.report);
  return out;
}

int Append(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--type", "--subject", "--from",  "--to",       "--reference", "--media-type",
                     "--key",  "--pin-file", "--crl",  "--kind",     "--id",        "--origin"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  const auto& pos = args->positional();
  if (pos.size() < 2 || pos.size() > 3) {
    return Usage(ctx, "archive append needs DIR FILE [FILE.p7s]",
                 "lệnh archive append cần THƯ_MỤC TỆP [TỆP.p7s]");
  }
  const std::string dir = pos[0], file = pos[1];
  const std::string sig_path = pos.size() == 3 ? pos[2] : file + ".p7s";
  auto type = args->Get("--type");
  auto subject = args->Get("--subject");
  if (!type || type->empty() || !subject || subject->empty()) {
    return Usage(ctx, "archive append needs --type T and --subject S",
                 "lệnh archive append cần --type LOẠI và --subject TRÍCH_YẾU");
  }
  storage::EntryKind kind = storage::EntryKind::kDocumentSent;
  if (auto k = args->Get("--kind")) {
    if (*k == "received" || *k == "document-received") {
      kind = storage::EntryKind::kDocumentReceived;
    } else if (*k != "sent" && *k != "document-sent") {
      return Usage(ctx, "--kind must be sent or received", "--kind phải là sent hoặc received");
    }
  }
  if (auto t = ParseTimeout(*args); !t) return Fail(ctx, t.error());

  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) {
    return Fail(ctx, Translated(ctx, reader.error(), "cannot use the archive",
                                "không dùng được kho lưu trữ"));
  }
  const std::string origin = (*reader)->origin();
  if (auto o = args->Get("--origin"); o && *o != origin) {
    return Fail(ctx, Status::FailedPrecondition(
                         std::string(T(ctx.lang, "wrong archive: ", "sai kho lưu trữ: ")) + dir +
                         T(ctx.lang, " belongs to \"", " thuộc về \"") + origin +
                         T(ctx.lang, "\", not to \"", "\", không phải \"") + *o + "\""));
  }
  if (auto o = (*reader)->ConfigString("sealpost.origin"); o && *o != origin) {
    return Fail(ctx, Status::DataError(
                         dir + ": " +
                         std::string(T(ctx.lang, "configuration names origin \"",
                                        "cấu hình ghi nguồn \"")) +
                         *o + T(ctx.lang, "\" but the log is \"", "\" nhưng nhật ký là \"") +
                         origin + "\""));
  }
  auto key = args->Get("--key");
  if (!key) key = (*reader)->ConfigString("sealpost.key");
  if (!key || key->empty()) {
    return Usage(ctx, "no --key URI given and none recorded in the archive (sealpost.key)",
                 "không có --key URI và kho lưu trữ chưa ghi khóa nào (sealpost.key)");
  }
  std::optional<std::string> trust = (*reader)->ConfigString("sealpost.trust");
  std::vector<std::string> crl_files;
  if (auto c = (*reader)->ConfigString("sealpost.crls")) crl_files.push_back(*c);
  for (const std::string& c : args->GetAll("--crl")) crl_files.push_back(c);

  auto content = ReadFile(file, storage::kMaxEntryBytes / 2);
  if (!content) {
    return Fail(ctx, Translated(ctx, content.error(), "cannot read the document",
                                "không đọc được văn bản"));
  }
  auto sig_data = ReadFile(sig_path, kMaxSignatureBytes);
  if (!sig_data) {
    return Fail(ctx, Translated(ctx, sig_data.error(), "cannot read the signature",
                                "không đọc được chữ ký"));
  }
  auto der = crypto::DecodeSignature(*sig_data, sig_path);
  if (!der) {
    return Fail(ctx, Translated(ctx, der.error(), "not a signature", "không phải chữ ký"));
  }
  auto checked = CheckSignature(*content, *der, trust, crl_files);
  if (!checked) {
    return Fail(ctx, Translated(ctx, checked.error().WithContext(sig_path),
                                "the signature cannot be checked", "không kiểm tra được chữ ký"));
  }
  if (checked->report.indication != crypto::Indication::kPassed) {
    std::fputs(crypto::ReportToText(checked->report, ctx.lang).c_str(), ctx.err);
    std::fprintf(ctx.err, "sealpost: %s\n",
                 (std::string(T(ctx.lang, "refused: the signature of ", "từ chối: chữ ký của ")) +
                  file + " (" + sig_path + ") " +
                  std::string(T(ctx.lang, "is ", "có kết quả ")) +
                  std::string(crypto::IndicationName(checked->report.indication)) + "/" +
                  std::string(crypto::SubIndicationName(checked->report.sub_indication)) +
                  std::string(T(ctx.lang, "; nothing was archived", "; không lưu gì vào kho")))
                     .c_str());
    return checked->report.indication == crypto::Indication::kFailed ? 1 : 2;
  }

  // The entry (conventions: docs/archive.md, "Entries written by the CLI").
  std::string name = fs::path(file).filename().string();
  if (!IsCleanUtf8Text(name)) {
    return Fail(ctx, Status::InvalidArgument(
                         std::string(T(ctx.lang, "the file name is not UTF-8 text: ",
                                        "tên tệp không phải văn bản UTF-8: ")) + file));
  }
  storage::EntryInput e;
  e.kind = kind;
  std::string id;
  if (auto given = args->Get("--id")) {
    id = *given;
  } else {
    auto uuid = NewUuid();
    if (!uuid) return Fail(ctx, uuid.error());
    id = *uuid;
  }
  std::time_t issued = std::time(nullptr);
  for (const crypto::SignerReport& s : checked->report.signers) {
    if (s.signing_time && *s.signing_time < issued) issued = *s.signing_time;
  }
  std::vector<std::string> recipients;
  for (const std::string& to : args->GetAll("--to")) {
    for (std::string& r : SplitComma(to)) recipients.push_back(std::move(r));
  }
  std::string joined;
  for (const std::string& r : recipients) joined += (joined.empty() ? "" : ",") + r;
  auto sha = crypto::DigestBytes(EVP_sha256(), *content);
  if (!sha) return Fail(ctx, sha.error());
  e.fields = {{"id", id},
              {"type", *type},
              {"reference", args->Get("--reference").value_or("")},
              {"subject", *subject},
              {"issuer", args->Get("--from").value_or("")},
              {"recipients", joined},
              {"issued_at", crypto::FormatRfc3339(issued)},
              {"content_name", name},
              {"content_media_type", args->Get("--media-type").value_or(GuessMediaType(name))},
              {"content_size", std::to_string(content->size())},
              {"content_sha256", HexEncode(*sha)},
              {"policy_sha256", ""},
              {"verification", checked->chain_checked ? "chain" : "integrity-only"}};
  e.files.push_back({"content", std::move(*content)});
  e.files.push_back({"content.p7s", *der});
  if (!checked->certs_pem.empty()) e.files.push_back({"certs.pem", checked->certs_pem});
  if (!checked->crls_pem.empty()) e.files.push_back({"crls.pem", checked->crls_pem});
  if (Status s = storage::ValidateEntry(e); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "the entry is not acceptable", "mục lưu trữ không hợp lệ"));
  }
  // A document id is archived once per kind.
  if (auto index = FreshIndex(**reader)) {
    storage::IndexQuery q;
    q.id = id;
    q.kind = std::string(storage::EntryKindName(kind));
    auto found = (*index)->Query(q);
    if (found && !found->empty()) {
      return Fail(ctx, Status::FailedPrecondition(
                           std::string(T(ctx.lang, "document id ", "mã văn bản ")) + id +
                           T(ctx.lang, " is already archived as #", " đã được lưu với số #") +
                           std::to_string(found->front().seq)));
    }
  } else {
    Warn(ctx, "the index cannot be used (duplicate ids not checked): " + index.error().message(),
         "không dùng được chỉ mục (không kiểm tra trùng mã): " + index.error().message());
  }
  reader->reset();

  auto signer = OpenSigner(ctx, *args, *key);
  if (!signer) {
    return Fail(ctx, Translated(ctx, signer.error(), "cannot use the seal key",
                                "không dùng được khóa con dấu"));
  }
  storage::ArchiveOptions o;
  o.origin = origin;
  o.signer = (*signer)->get();
  o.seal_key = crypto::KeyRef{*key};
  auto archive = storage::Archive::Open(dir, o);
  if (!archive) {
    return Fail(ctx, Translated(ctx, archive.error(), "cannot open the archive for writing",
                                "không mở được kho lưu trữ để ghi"));
  }
  auto appended = (*archive)->Append(std::move(e));
  archive->reset();
  if (!appended) {
    return Fail(ctx, Translated(ctx, appended.error(), "the entry was not archived",
                                "chưa lưu được vào kho"));
  }
  Say(ctx, "archived " + file + " as #" + std::to_string(appended->seq),
      "đã lưu " + file + " với số #" + std::to_string(appended->seq));
  std::fprintf(ctx.out, "seq %llu\nid %s\ncommit %s\n",
               static_cast<unsigned long long>(appended->seq), id.c_str(), appended->commit.c_str());
  auto after = storage::ArchiveReader::Open(dir);
  auto index = after ? FreshIndex(**after) : Result<std::unique_ptr<storage::Index>>(Err(after.error()));
  if (!index) {
    Warn(ctx, "the index was not updated (run `sealpost archive reindex`): " + index.error().message(),
         "chưa cập nhật được chỉ mục (hãy chạy `sealpost archive reindex`): " +
             index.error().message());
  }
  return 0;
}

// ---------------------------------------------------------------- list / show

std::string EntryJson(const storage::IndexedEntry& e) {
  return "{\"seq\":" + std::to_string(e.seq) + ",\"kind\":" + JsonString(e.kind) +
         ",\"id\":" + JsonString(e.id) + ",\"type\":" + JsonString(e.type) +
         ",\"subject\":" + JsonString(e.subject) + ",\"reference\":" + JsonString(e.reference) +
         ",\"issuer\":" + JsonString(e.issuer) + ",\"recipients\":" + JsonString(e.recipients) +
         ",\"issued_at\":" + JsonString(e.issued_at) + ",\"time\":" + JsonString(e.time) +
         ",\"content_name\":" + JsonString(e.content_name) +
         ",\"refers_to\":" + std::to_string(e.refers_to) + ",\"commit\":" + JsonString(e.commit) +
         "}";
}

Result<std::unique_ptr<storage::ArchiveReader>> OpenReader(const Context& ctx, const std::string& dir) {
  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) {
    return Err(Translated(ctx, reader.error(), "cannot use the archive", "không dùng được kho lưu trữ"));
  }
  return reader;
}

int List(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--kind", "--type", "--counterpart", "--since", "--until", "--id"};
  spec.boolean = {"--json"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive list needs exactly one DIR", "lệnh archive list cần đúng một THƯ MỤC");
  }
  storage::IndexQuery q;
  q.type = args->Get("--type");
  q.counterpart = args->Get("--counterpart");
  q.id = args->Get("--id");
  if (auto k = args->Get("--kind")) {
    auto kind = EntryKindArg(*k);
    if (!kind) return Usage(ctx, kind.error().message(), kind.error().message());
    q.kind = *kind;
  }
  if (auto d = args->Get("--since")) {
    auto v = NormalizeDate(*d, false);
    if (!v) return Usage(ctx, "--since: " + v.error().message(), "--since: " + v.error().message());
    q.since = *v;
  }
  if (auto d = args->Get("--until")) {
    auto v = NormalizeDate(*d, true);
    if (!v) return Usage(ctx, "--until: " + v.error().message(), "--until: " + v.error().message());
    q.until = *v;
  }
  auto reader = OpenReader(ctx, args->positional()[0]);
  if (!reader) return Fail(ctx, reader.error());
  auto index = FreshIndex(**reader);
  if (!index) {
    return Fail(ctx, Translated(ctx, index.error(), "cannot use the index", "không dùng được chỉ mục"));
  }
  auto rows = (*index)->Query(q);
  if (!rows) {
    return Fail(ctx, Translated(ctx, rows.error(), "cannot query the index", "không truy vấn được chỉ mục"));
  }
  if (args->Has("--json")) {
    std::string out = "[";
    for (size_t i = 0; i < rows->size(); ++i) out += (i ? ",\n" : "\n") + EntryJson((*rows)[i]);
    out += rows->empty() ? "]\n" : "\n]\n";
    std::fputs(out.c_str(), ctx.out);
    return 0;
  }
  for (const storage::IndexedEntry& e : *rows) {
    std::string line = "#" + std::to_string(e.seq) + "  " + e.date + "  " + e.kind;
    if (!e.type.empty()) line += "  " + e.type;
    if (!e.id.empty()) line += "  " + e.id;
    if (!e.subject.empty()) line += "  \"" + e.subject + "\"";
    if (!e.issuer.empty() || !e.recipients.empty()) line += "  " + e.issuer + " -> " + e.recipients;
    std::fprintf(ctx.out, "%s\n", line.c_str());
  }
  Say(ctx, std::to_string(rows->size()) + " entries (archive has " +
               std::to_string((*reader)->size()) + ")",
      std::to_string(rows->size()) + " mục (kho có " + std::to_string((*reader)->size()) + ")");
  return 0;
}

int Show(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.boolean = {"--json"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 2) {
    return Usage(ctx, "archive show needs DIR and SEQ or ID", "lệnh archive show cần THƯ_MỤC và SỐ hoặc MÃ");
  }
  auto reader = OpenReader(ctx, args->positional()[0]);
  if (!reader) return Fail(ctx, reader.error());
  const std::string which = args->positional()[1];
  auto index = FreshIndex(**reader);
  uint64_t seq = 0;
  if (IsDigits(which)) {
    auto s = ParseSeq(which);
    if (!s) return Usage(ctx, s.error().message(), s.error().message());
    seq = *s;
  } else {
    if (!index) {
      return Fail(ctx, Translated(ctx, index.error(), "cannot use the index", "không dùng được chỉ mục"));
    }
    storage::IndexQuery q;
    q.id = which;
    auto rows = (*index)->Query(q);
    if (!rows) return Fail(ctx, rows.error());
    // A document rather than a receipt that names its id.
    for (const storage::IndexedEntry& e : *rows) {
      if (e.kind.starts_with("document-")) {
        seq = e.seq;
        break;
      }
    }
    if (seq == 0 && !rows->empty()) seq = rows->front().seq;
    if (seq == 0) {
      return Fail(ctx, Status::NotFound(std::string(T(ctx.lang, "no entry with id ", "không có mục nào mã ")) +
                                        which + T(ctx.lang, " in ", " trong ") + (*reader)->dir()));
    }
  }
  auto manifest_text = (*reader)->ReadEntryFile(seq, "manifest.json");
  if (!manifest_text) {
    return Fail(ctx, Translated(ctx, manifest_text.error(), "cannot show entry #" + std::to_string(seq),
                                "không hiển thị được mục #" + std::to_string(seq)));
  }
  auto m = (*reader)->ReadManifest(seq);
  if (!m) return Fail(ctx, m.error());
  // Each file is read and checked against the manifest: a missing or
  // altered object is reported here, naming it.
  for (const storage::ManifestFile& f : m->files) {
    auto data = (*reader)->ReadEntryFile(seq, f.name);
    if (!data) {
      return Fail(ctx, Status(Code::kDataError, data.error().message()));
    }
    auto sha = crypto::DigestBytes(EVP_sha256(), *data);
    if (!sha || HexEncode(*sha) != f.sha256 || data->size() != f.size) {
      return Fail(ctx, Status::DataError((*reader)->dir() + ": " + storage::EntryDir(seq) + "/" +
                                         f.name +
                                         std::string(T(ctx.lang, " does not match its manifest",
                                                        " không khớp với bản kê"))));
    }
  }
  std::string commit;
  if (index) {
    if (auto row = (*index)->FindSeq(seq); row && *row) commit = (*row)->commit;
  }
  if (args->Has("--json")) {
    std::fprintf(ctx.out, "{\"commit\":%s,\"path\":%s,\"manifest\":%s}\n", JsonString(commit).c_str(),
                 JsonString(storage::EntryDir(seq)).c_str(), manifest_text->c_str());
    return 0;
  }
  std::string out;
  out += std::string(T(ctx.lang, "entry   #", "mục     #")) + std::to_string(seq) + "\n";
  out += std::string(T(ctx.lang, "kind    ", "loại mục ")) + std::string(storage::EntryKindName(m->kind)) + "\n";
  out += std::string(T(ctx.lang, "time    ", "lúc lưu ")) + m->time + "\n";
  out += std::string(T(ctx.lang, "origin  ", "nguồn   ")) + m->origin + "\n";
  if (m->refers_to) out += std::string(T(ctx.lang, "refers  #", "liên quan #")) + std::to_string(m->refers_to) + "\n";
  out += "commit  " + commit + "\n";
  out += "path    " + storage::EntryDir(seq) + "\n";
  out += std::string(T(ctx.lang, "fields:\n", "trường:\n"));
  for (const auto& [k, v] : m->fields) out += "  " + k + ": " + v + "\n";
  out += std::string(T(ctx.lang, "files:\n", "tệp:\n"));
  for (const storage::ManifestFile& f : m->files) {
    out += "  " + f.name + "  " + std::to_string(f.size) + "  sha256:" + f.sha256 + "\n";
  }
  std::fputs(out.c_str(), ctx.out);
  return 0;
}

// ---------------------------------------------------------------- checkpoint / prove

int Checkpoint(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"-o", "--output"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive checkpoint needs exactly one DIR", "lệnh archive checkpoint cần đúng một THƯ MỤC");
  }
  auto reader = OpenReader(ctx, args->positional()[0]);
  if (!reader) return Fail(ctx, reader.error());
  auto out = args->Get("-o");
  if (!out) out = args->Get("--output");
  if (!out) {
    std::fputs((*reader)->checkpoint_body().c_str(), ctx.out);
    return 0;
  }
  if (Status s = WriteFileAtomic(*out + ".p7s", (*reader)->checkpoint_signature()); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "cannot write the checkpoint", "không ghi được điểm kiểm"));
  }
  if (Status s = WriteFileAtomic(*out, (*reader)->checkpoint_body()); !s.ok()) {
    std::error_code ec;
    fs::remove(*out + ".p7s", ec);
    return Fail(ctx, Translated(ctx, s, "cannot write the checkpoint", "không ghi được điểm kiểm"));
  }
  Say(ctx, "checkpoint of " + std::to_string((*reader)->size()) + " entries -> " + *out + " and " +
               *out + ".p7s",
      "điểm kiểm của " + std::to_string((*reader)->size()) + " mục -> " + *out + " và " + *out +
          ".p7s");
  return 0;
}

// The inclusion proof file (docs/archive.md, "Inclusion proofs"): lines
// "<key> <value>", in this order; "hash" repeats; the two checkpoint lines
// are optional (absent together).
constexpr const char* kProofHeader = "sealpost inclusion proof 1";

struct ProofFile {
  std::string origin;
  uint64_t seq = 0;
  uint64_t tree_size = 0;
  merkle::Hash root{};
  merkle::Hash leaf{};
  std::string manifest;
  std::vector<merkle::Hash> hashes;
  std::string checkpoint;            // body, may be empty
  std::string checkpoint_signature;  // DER, may be empty
};

std::string SerializeProof(const ProofFile& p) {
  std::string out = std::string(kProofHeader) + "\n";
  out += "origin " + p.origin + "\n";
  out += "seq " + std::to_string(p.seq) + "\n";
  out += "tree-size " + std::to_string(p.tree_size) + "\n";
  out += "root " + merkle::ToHex(p.root) + "\n";
  out += "leaf " + merkle::ToHex(p.leaf) + "\n";
  out += "manifest " + Base64Encode(p.manifest) + "\n";
  for (const merkle::Hash& h : p.hashes) out += "hash " + merkle::ToHex(h) + "\n";
  if (!p.checkpoint.empty()) {
    out += "checkpoint " + Base64Encode(p.checkpoint) + "\n";
    out += "checkpoint-signature " + Base64Encode(p.checkpoint_signature) + "\n";
  }
  return out;
}

Result<ProofFile> ParseProof(std::string_view text, const std::string& source) {
  auto bad = [&](size_t line, const std::string& what) {
    return Err(Status::DataError(source + ":" + std::to_string(line) + ": " + what));
  };
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return bad(lines.size() + 1, "no newline at the end");
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.empty() || lines[0] != kProofHeader) return bad(1, "not a sealpost inclusion proof");
  ProofFile p;
  size_t i = 1;
  auto field = [&](const char* key) -> Result<std::string> {
    std::string prefix = std::string(key) + " ";
    if (i >= lines.size() || !lines[i].starts_with(prefix)) {
      return Err(Status::DataError(source + ":" + std::to_string(i + 1) + ": expected \"" + key + "\""));
    }
    return std::string(lines[i++].substr(prefix.size()));
  };
  auto hash = [&](const std::string& hex, const char* what) -> Result<merkle::Hash> {
    auto bytes = HexDecode(hex);
    if (!bytes || HexEncode(*bytes) != hex) {
      return Err(Status::DataError(source + ":" + std::to_string(i) + ": " + what + " is not lower-case hex"));
    }
    return merkle::HashFromBytes(*bytes, source + ": " + what);
  };
  auto number = [&](const std::string& v, const char* what) -> Result<uint64_t> {
    auto n = ParseSeq(v);
    if (!n) return Err(Status::DataError(source + ":" + std::to_string(i) + ": " + what + " is not a number"));
    return *n;
  };
  auto origin = field("origin");
  if (!origin) return Err(origin.error());
  p.origin = *origin;
  auto seq = field("seq");
  if (!seq) return Err(seq.error());
  auto seq_n = number(*seq, "seq");
  if (!seq_n) return Err(seq_n.error());
  p.seq = *seq_n;
  auto size = field("tree-size");
  if (!size) return Err(size.error());
  auto size_n = number(*size, "tree-size");
  if (!size_n) return Err(size_n.error());
  p.tree_size = *size_n;
  auto root = field("root");
  if (!root) return Err(root.error());
  auto root_h = hash(*root, "root");
  if (!root_h) return Err(root_h.error());
  p.root = *root_h;
  auto leaf = field("leaf");
  if (!leaf) return Err(leaf.error());
  auto leaf_h = hash(*leaf, "leaf");
  if (!leaf_h) return Err(leaf_h.error());
  p.leaf = *leaf_h;
  auto manifest = field("manifest");
  if (!manifest) return Err(manifest.error());
  auto manifest_bytes = Base64Decode(*manifest);
  if (!manifest_bytes) return bad(i, "manifest is not base64");
  p.manifest = std::move(*manifest_bytes);
  while (i < lines.size() && lines[i].starts_with("hash ")) {
    if (p.hashes.size() >= 64) return bad(i + 1, "more than 64 hashes");
    auto h = hash(std::string(lines[i++].substr(5)), "hash");
    if (!h) return Err(h.error());
    p.hashes.push_back(*h);
  }
  if (i < lines.size()) {
    auto cp = field("checkpoint");
    if (!cp) return Err(cp.error());
    auto cp_bytes = Base64Decode(*cp);
    if (!cp_bytes) return bad(i, "checkpoint is not base64");
    auto sig = field("checkpoint-signature");
    if (!sig) return Err(sig.error());
    auto sig_bytes = Base64Decode(*sig);
    if (!sig_bytes) return bad(i, "checkpoint-signature is not base64");
    p.checkpoint = std::move(*cp_bytes);
    p.checkpoint_signature = std::move(*sig_bytes);
  }
  if (i != lines.size()) return bad(i + 1, "unexpected line");
  return p;
}

int Prove(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--checkpoint", "-o", "--output"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 2) {
    return Usage(ctx, "archive prove needs DIR and SEQ", "lệnh archive prove cần THƯ_MỤC và SỐ");
  }
  auto seq = ParseSeq(args->positional()[1]);
  if (!seq) return Usage(ctx, seq.error().message(), seq.error().message());
  auto reader = OpenReader(ctx, args->positional()[0]);
  if (!reader) return Fail(ctx, reader.error());
  ProofFile p;
  p.origin = (*reader)->origin();
  p.seq = *seq;
  std::optional<crypto::Checkpoint> trusted;
  if (auto cp_path = args->Get("--checkpoint")) {
    auto body = ReadFile(*cp_path, crypto::kCheckpointMaxBytes);
    if (!body) {
      return Fail(ctx, Translated(ctx, body.error(), "cannot read the checkpoint", "không đọc được điểm kiểm"));
    }
    auto cp = crypto::ParseCheckpoint(*body, *cp_path);
    if (!cp) return Fail(ctx, cp.error());
    if (cp->origin != p.origin) {
      return Fail(ctx, Status::FailedPrecondition(
                           *cp_path + T(ctx.lang, ": a checkpoint of \"", ": điểm kiểm của \"") +
                           cp->origin + T(ctx.lang, "\", not of this archive (\"", "\", không phải của kho này (\"") +
                           p.origin + "\")"));
    }
    if (cp->size > (*reader)->size()) {
      return Fail(ctx, Status::FailedPrecondition(
                           *cp_path + T(ctx.lang, ": the checkpoint has ", ": điểm kiểm có ") +
                           std::to_string(cp->size) +
                           T(ctx.lang, " entries, more than the archive (", " mục, nhiều hơn kho (") +
                           std::to_string((*reader)->size()) + ")"));
    }
    p.tree_size = cp->size;
    p.root = cp->root;
    p.checkpoint = *body;
    auto sig = ReadFile(*cp_path + ".p7s", crypto::kCheckpointMaxBytes * 64);
    if (sig) p.checkpoint_signature = *sig;
    else p.checkpoint.clear();  // the body alone travels in the auditor's own file
    trusted = *cp;
  } else {
    p.tree_size = (*reader)->size();
    p.root = (*reader)->checkpoint().root;
    p.checkpoint = (*reader)->checkpoint_body();
    p.checkpoint_signature = (*reader)->checkpoint_signature();
  }
  if (p.seq > p.tree_size) {
    return Fail(ctx, Status::InvalidArgument(
                         std::string(T(ctx.lang, "entry #", "mục #")) + std::to_string(p.seq) +
                         T(ctx.lang, " is not in a tree of ", " không nằm trong cây ") +
                         std::to_string(p.tree_size) + T(ctx.lang, " entries", " mục")));
  }
  auto leaves = (*reader)->ReadLeafHashes(p.tree_size);
  if (!leaves) return Fail(ctx, leaves.error());
  if (merkle::RootFromLeafHashes(*leaves) != p.root) {
    return Fail(ctx, Status::FailedPrecondition(
                         (*reader)->dir() +
                         std::string(Tr(ctx.lang,
                                        ": the archive's first entries do not match the checkpoint's root "
                                        "(history rewritten?)",
                                        ": các mục đầu của kho không khớp với gốc của điểm kiểm "
                                        "(lịch sử bị viết lại?)"))));
  }
  auto manifest = (*reader)->ReadEntryFile(p.seq, "manifest.json");
  if (!manifest) return Fail(ctx, manifest.error());
  p.manifest = *manifest;
  p.leaf = (*leaves)[p.seq - 1];
  auto proof = merkle::InclusionProof(*leaves, p.seq - 1);
  if (!proof) return Fail(ctx, proof.error());
  p.hashes = std::move(*proof);
  if (Status s = merkle::VerifyInclusion(p.leaf, p.seq - 1, p.tree_size, p.hashes, p.root); !s.ok()) {
    return Fail(ctx, Status(Code::kInternal, "proof does not verify: " + s.message()));
  }
  std::string text = SerializeProof(p);
  auto out = args->Get("-o");
  if (!out) out = args->Get("--output");
  if (!out) {
    std::fputs(text.c_str(), ctx.out);
    return 0;
  }
  if (Status s = WriteFileAtomic(*out, text); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "cannot write the proof", "không ghi được bằng chứng"));
  }
  Say(ctx, "inclusion proof of #" + std::to_string(p.seq) + " in the tree of " +
               std::to_string(p.tree_size) + " entries -> " + *out,
      "bằng chứng mục #" + std::to_string(p.seq) + " thuộc cây " + std::to_string(p.tree_size) +
          " mục -> " + *out);
  return 0;
}

int VerifyProof(Context& ctx, const std::vector<std::string>& argv) {
  FlagSpec spec;
  spec.with_value = {"--checkpoint", "--seal"};
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, spec, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive verify-proof needs one PROOF file", "lệnh archive verify-proof cần một tệp BẰNG CHỨNG");
  }
  const std::string path = args->positional()[0];
  auto text = ReadFile(path, kMaxProofBytes);
  if (!text) return Fail(ctx, Translated(ctx, text.error(), "cannot read the proof", "không đọc được bằng chứng"));
  auto p = ParseProof(*text, path);
  if (!p) return Fail(ctx, p.error());
  auto failed = [&](const std::string& en, const std::string& vi) {
    std::fprintf(ctx.out, "FAILED: %s\n", std::string(T(ctx.lang, en, vi)).c_str());
    return 1;
  };
  // The entry: its manifest is the leaf, and names this log and seq.
  if (merkle::LeafHash(p->manifest) != p->leaf) {
    return failed("the manifest in the proof is not the leaf", "bản kê trong bằng chứng không phải là lá");
  }
  auto m = storage::ParseManifest(p->manifest, path + ": manifest");
  if (!m) return Fail(ctx, m.error());
  if (m->seq != p->seq || m->origin != p->origin) {
    return failed("the manifest names another entry or log", "bản kê ghi một mục hoặc nhật ký khác");
  }
  if (Status s = merkle::VerifyInclusion(p->leaf, p->seq - 1, p->tree_size, p->hashes, p->root);
      !s.ok()) {
    return failed("the inclusion proof does not verify: " + s.message(),
                  "bằng chứng không hợp lệ: " + s.message());
  }
  // The root: from a checkpoint the auditor trusts, or from the carried
  // checkpoint signed by a seal certificate the auditor names.
  std::string how;
  if (auto cp_path = args->Get("--checkpoint")) {
    auto body = ReadFile(*cp_path, crypto::kCheckpointMaxBytes);
    if (!body) return Fail(ctx, Translated(ctx, body.error(), "cannot read the checkpoint", "không đọc được điểm kiểm"));
    auto cp = crypto::ParseCheckpoint(*body, *cp_path);
    if (!cp) return Fail(ctx, cp.error());
    if (cp->origin != p->origin || cp->size != p->tree_size || cp->root != p->root) {
      return failed("the proof is not against the trusted checkpoint " + *cp_path,
                    "bằng chứng không dựa trên điểm kiểm tin cậy " + *cp_path);
    }
    how = *cp_path;
  } else if (auto seal_path = args->Get("--seal")) {
    if (p->checkpoint.empty()) {
      return failed("the proof carries no signed checkpoint", "bằng chứng không kèm điểm kiểm có chữ ký");
    }
    auto seal = crypto::LoadCertificate(*seal_path);
    if (!seal) return Fail(ctx, Translated(ctx, seal.error(), "cannot use --seal", "không dùng được --seal"));
    auto cp = crypto::ParseCheckpoint(p->checkpoint, path + ": checkpoint");
    if (!cp) return Fail(ctx, cp.error());
    if (cp->origin != p->origin || cp->size != p->tree_size || cp->root != p->root) {
      return failed("the carried checkpoint is not the proof's tree", "điểm kiểm kèm theo không phải cây của bằng chứng");
    }
    if (Status s = crypto::VerifyCheckpointSignature(p->checkpoint, p->checkpoint_signature,
                                                     seal->get(), path + ": checkpoint-signature");
        !s.ok()) {
      return failed("the checkpoint signature does not verify: " + s.message(),
                    "chữ ký điểm kiểm không hợp lệ: " + s.message());
    }
    how = crypto::DisplayName(seal->get());
  } else {
    std::fprintf(ctx.out, "INDETERMINATE: %s\n",
                 std::string(Tr(ctx.lang,
                                "the proof is consistent but its root is not authenticated: give "
                                "--checkpoint TRUSTED or --seal CERT",
                                "bằng chứng nhất quán nhưng gốc chưa được xác thực: hãy đưa "
                                "--checkpoint TIN_CẬY hoặc --seal CHỨNG_THƯ"))
                     .c_str());
    return 2;
  }
  std::fprintf(ctx.out, "PASSED: %s\n",
               (std::string(T(ctx.lang, "entry #", "mục #")) + std::to_string(p->seq) + " (" +
                m->Field("id") + ") " + std::string(T(ctx.lang, "is in the log ", "nằm trong nhật ký ")) +
                p->origin + std::string(T(ctx.lang, " of size ", " cỡ ")) + std::to_string(p->tree_size) +
                " (" + how + ")")
                   .c_str());
  return 0;
}

// ---------------------------------------------------------------- mirror / reindex

int Mirror(Context& ctx, const std::vector<std::string>& argv) {
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, FlagSpec{}, &code);
  if (!args) return code;
  if (args->positional().size() != 2) {
    return Usage(ctx, "archive mirror needs DIR and REMOTE", "lệnh archive mirror cần THƯ_MỤC và ĐÍCH");
  }
  const std::string remote = args->positional()[1];
  auto r = storage::MirrorMain(args->positional()[0], remote);
  if (!r) {
    return Fail(ctx, Translated(ctx, r.error(), "mirror refused or failed",
                                "sao lưu bị từ chối hoặc không thành công"));
  }
  if (r->remote_before == r->head) {
    Say(ctx, remote + " is up to date (" + r->head + ")", remote + " đã cập nhật (" + r->head + ")");
  } else {
    Say(ctx, "pushed main " + r->head + " to " + remote,
        "đã đẩy main " + r->head + " tới " + remote);
  }
  return 0;
}

int Reindex(Context& ctx, const std::vector<std::string>& argv) {
  int code = 0;
  auto args = ParseOrUsage(ctx, argv, FlagSpec{}, &code);
  if (!args) return code;
  if (args->positional().size() != 1) {
    return Usage(ctx, "archive reindex needs exactly one DIR", "lệnh archive reindex cần đúng một THƯ MỤC");
  }
  auto reader = OpenReader(ctx, args->positional()[0]);
  if (!reader) return Fail(ctx, reader.error());
  const std::string path = storage::Index::PathFor((*reader)->state_dir());
  if (Status s = storage::Index::Remove(path); !s.ok()) return Fail(ctx, s);
  auto index = storage::Index::Open(path);
  if (!index) return Fail(ctx, index.error());
  auto u = (*index)->Rebuild(**reader);
  if (!u) {
    return Fail(ctx, Translated(ctx, u.error(), "cannot rebuild the index", "không xây lại được chỉ mục"));
  }
  Say(ctx, "index rebuilt: " + std::to_string(u->size) + " entries, head " + (*reader)->head(),
      "đã xây lại chỉ mục: " + std::to_string(u->size) + " mục, đầu " + (*reader)->head());
  return 0;
}

}  // namespace

int RunArchive(Context& ctx, const std::vector<std::string>& argv) {
  if (argv.empty()) {
    std::fputs(kArchiveUsage, ctx.err);
    return 64;
  }
  const std::string sub = argv[0];
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fputs(kArchiveUsage, ctx.out);
    return 0;
  }
  // The token-backed signer outlives the command, so that after a token
  // call was abandoned the process can leave without destroying it.
  std::unique_ptr<crypto::Signer> signer, new_signer;
  g_signer = &signer;
  g_new_signer = &new_signer;
  int code = 64;
  if (sub == "init") code = Init(ctx, rest);
  else if (sub == "append") code = Append(ctx, rest);
  else if (sub == "change-seal") code = ChangeSeal(ctx, rest);
  else if (sub == "list") code = List(ctx, rest);
  else if (sub == "show") code = Show(ctx, rest);
  else if (sub == "checkpoint") code = Checkpoint(ctx, rest);
  else if (sub == "prove") code = Prove(ctx, rest);
  else if (sub == "verify-proof") code = VerifyProof(ctx, rest);
  else if (sub == "mirror") code = Mirror(ctx, rest);
  else if (sub == "reindex") code = Reindex(ctx, rest);
  else code = Usage(ctx, "unknown archive subcommand '" + sub + "'",
                    "lệnh con archive không hợp lệ '" + sub + "'");
  g_signer = nullptr;
  g_new_signer = nullptr;
  if (pkcs11::TokenCallAbandoned()) {
    std::fflush(nullptr);
    ::_exit(code);
  }
  return code;
}

}  // namespace sealpost::cli
