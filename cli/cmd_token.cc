// `sealpost token`: list modules/slots/tokens, list keys and certificates,
// make a CSR signed by a token key, store an issued certificate next to its
// key. See docs/tokens.md.
//
// Bad input (flags, subject, e-mail, certificate file, output directory) is
// checked before the token is touched, so it costs no PIN. When a token call
// was abandoned as hung, the process leaves with _exit() after flushing:
// the hung thread can be neither joined nor cancelled.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/pem.h>

#include "base/json.h"
#include "base/encoding.h"
#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/certs.h"
#include "pkcs11/allowlist.h"
#include "pkcs11/csr.h"
#include "pkcs11/open.h"
#include "pkcs11/token.h"
#include "pkcs11/uri.h"

namespace sealpost::cli {
namespace {

constexpr const char* kTokenUsage =
    "usage: sealpost token list [--module PATH]... [--json]\n"
    "       sealpost token keys URI [--pin-file FILE] [--json]\n"
    "       sealpost token csr URI --subject \"/CN=.../O=...\" [--email ADDR] -o REQ.pem "
    "[--pin-file FILE]\n"
    "       sealpost token import-cert URI CERT.pem [--pin-file FILE]\n"
    "common: [--timeout SECONDS] (bound on each token call, default 20)\n";

int Usage(const Context& ctx, const std::string& en, const std::string& vi) {
  std::fprintf(ctx.err, "sealpost: %s\n%s", std::string(Tr(ctx.lang, en, vi)).c_str(), kTokenUsage);
  return 64;
}

// Leaves at once when a token call hung: destructors and atexit handlers
// could wait on the module forever.
int Finish(const Context& ctx, int code) {
  if (pkcs11::TokenCallAbandoned()) {
    std::fflush(ctx.out);
    std::fflush(ctx.err);
    std::fflush(nullptr);
    ::_exit(code);
  }
  return code;
}

int FailToken(const Context& ctx, const Status& s) { return Finish(ctx, Fail(ctx, s)); }

Result<pkcs11::OpenOptions> Options(const Context& ctx, const Args& args) {
  pkcs11::OpenOptions o;
  o.lang = ctx.lang;
  o.pin_file = args.Get("--pin-file");
  o.interactive = true;
  if (auto t = args.Get("--timeout")) {
    char* end = nullptr;
    double secs = std::strtod(t->c_str(), &end);
    if (end == t->c_str() || *end != '\0' || !(secs > 0) || secs > 3600) {
      return Err(Status::InvalidArgument("--timeout: \"" + *t + "\" is not a number of seconds (0-3600]"));
    }
    o.call_timeout = std::chrono::milliseconds(static_cast<long>(secs * 1000));
  }
  return o;
}


// The token layer already logged each warning (level=warn, in ctx.lang) to
// stderr; printing them again would only repeat them.
void DrainWarnings(pkcs11::Token& token) { (void)token.TakeWarnings(); }

// ------------------------------------------------------------------ list

int RunList(Context& ctx, const Args& args) {
  if (!args.positional().empty()) {
    return Usage(ctx, "token list takes no arguments", "token list không nhận tham số");
  }
  auto opts = Options(ctx, args);
  if (!opts) return Fail(ctx, opts.error());
  std::vector<std::string> modules = args.GetAll("--module");
  bool explicit_modules = !modules.empty();
  if (!explicit_modules) {
    auto allowed = pkcs11::LoadAllowlist();
    if (!allowed) return Fail(ctx, allowed.error());
    for (const auto& m : *allowed) modules.push_back(m.real_path);
    if (modules.empty()) {
      return Fail(ctx, Status::NotFound(std::string(Tr(
                           ctx.lang, "no allowlisted PKCS#11 module is installed",
                           "không có mô-đun PKCS#11 nào trong danh sách cho phép được cài đặt"))));
    }
  }
  bool json = args.Has("--json");
  std::string js = "[";
  int failures = 0;
  Status last_error;
  for (const auto& path : modules) {
    auto listing = pkcs11::ListModule(path, *opts);
    if (!listing) {
      ++failures;
      last_error = listing.error();
      std::fprintf(ctx.err, "sealpost: %s\n", listing.error().message().c_str());
      if (pkcs11::TokenCallAbandoned()) break;
      continue;
    }
    if (json) {
      if (js.size() > 1) js += ",";
      js += "{\"module\":" + JsonString(listing->path) + ",\"manufacturer\":" +
            JsonString(listing->manufacturer) + ",\"description\":" + JsonString(listing->description) +
            ",\"slots\":[";
      bool first = true;
      for (const auto& s : listing->slots) {
        if (!first) js += ",";
        first = false;
        js += "{\"slot_id\":" + std::to_string(s.slot_id) + ",\"description\":" +
              JsonString(s.description) + ",\"token_present\":" + (s.token_present ? "true" : "false");
        if (s.token_present) {
          js += ",\"token\":{\"label\":" + JsonString(s.token.label) + ",\"serial\":" +
                JsonString(s.token.serial) + ",\"manufacturer\":" + JsonString(s.token.manufacturer) +
                ",\"model\":" + JsonString(s.token.model) + ",\"initialized\":" +
                (s.token_initialized ? "true" : "false") + ",\"flags\":" +
                JsonString(pkcs11::TokenFlagNames(s.token.flags)) + ",\"uri\":" + JsonString(s.token.uri) + "}";
        }
        js += "}";
      }
      js += "]}";
      continue;
    }
    std::fprintf(ctx.out, "%s %s (%s / %s)\n", std::string(Tr(ctx.lang, "Module", "Mô-đun")).c_str(),
                 listing->path.c_str(), listing->manufacturer.c_str(), listing->description.c_str());
    if (listing->slots.empty()) {
      std::fprintf(ctx.out, "  %s\n", std::string(Tr(ctx.lang, "(no slots)", "(không có khe nào)")).c_str());
    }
    for (const auto& s : listing->slots) {
      std::fprintf(ctx.out, "  %s %lu: %s\n", std::string(Tr(ctx.lang, "Slot", "Khe")).c_str(), s.slot_id,
                   s.description.c_str());
      if (!s.token_present) {
        std::fprintf(ctx.out, "    %s\n", std::string(Tr(ctx.lang, "(no token)", "(không có token)")).c_str());
        continue;
      }
      if (!s.token_initialized) {
        std::fprintf(ctx.out, "    %s\n",
                     std::string(Tr(ctx.lang, "(token not initialised)", "(token chưa khởi tạo)")).c_str());
        continue;
      }
      std::fprintf(ctx.out, "    Token: %s\n", s.token.label.c_str());
      std::fprintf(ctx.out, "    %s: %s\n", std::string(Tr(ctx.lang, "Serial", "Số sê-ri")).c_str(),
                   s.token.serial.c_str());
      std::fprintf(ctx.out, "    %s: %s %s\n", std::string(Tr(ctx.lang, "Manufacturer", "Nhà sản xuất")).c_str(),
                   s.token.manufacturer.c_str(), s.token.model.c_str());
      std::fprintf(ctx.out, "    %s: %s\n", std::string(Tr(ctx.lang, "Flags", "Cờ")).c_str(),
                   pkcs11::TokenFlagNames(s.token.flags).c_str());
      std::fprintf(ctx.out, "    URI: %s\n", s.token.uri.c_str());
    }
  }
  if (json) std::fprintf(ctx.out, "%s]\n", js.c_str());
  if (failures > 0 && (explicit_modules || failures == static_cast<int>(modules.size()))) {
    return Finish(ctx, ExitCodeFor(last_error));
  }
  return Finish(ctx, 0);
}

// ------------------------------------------------------------------ keys

int RunKeys(Context& ctx, const Args& args) {
  if (args.positional().size() != 1) {
    return Usage(ctx, "token keys needs one URI", "token keys cần đúng một URI");
  }
  auto opts = Options(ctx, args);
  if (!opts) return Fail(ctx, opts.error());
  auto token = pkcs11::Token::Open(args.positional()[0], *opts);
  if (!token) return FailToken(ctx, token.error());
  DrainWarnings(**token);
  auto objects = (*token)->ListObjects();
  if (!objects) return FailToken(ctx, objects.error());
  auto kind_name = [&](pkcs11::ObjectInfo::Kind k, bool machine) -> std::string {
    switch (k) {
      case pkcs11::ObjectInfo::Kind::kPrivateKey:
        return machine ? "private-key" : std::string(Tr(ctx.lang, "Private key", "Khoá riêng"));
      case pkcs11::ObjectInfo::Kind::kPublicKey:
        return machine ? "public-key" : std::string(Tr(ctx.lang, "Public key", "Khoá công khai"));
      case pkcs11::ObjectInfo::Kind::kCertificate:
        return machine ? "certificate" : std::string(Tr(ctx.lang, "Certificate", "Chứng thư"));
    }
    return "";
  };
  if (args.Has("--json")) {
    std::string js = "[";
    for (const auto& o : *objects) {
      if (js.size() > 1) js += ",";
      js += "{\"kind\":" + JsonString(kind_name(o.kind, true)) + ",\"label\":" + JsonString(o.label) +
            ",\"id\":" + JsonString(HexEncode(o.id)) + ",\"algorithm\":" + JsonString(o.algorithm);
      if (!o.subject.empty()) js += ",\"subject\":" + JsonString(o.subject);
      js += ",\"uri\":" + JsonString(o.uri) + "}";
    }
    std::fprintf(ctx.out, "%s]\n", js.c_str());
    return Finish(ctx, 0);
  }
  std::fprintf(ctx.out, "Token: %s (%s)\n", (*token)->label().c_str(), (*token)->module_path().c_str());
  if (objects->empty()) {
    std::fprintf(ctx.out, "  %s\n",
                 std::string(Tr(ctx.lang, "(no keys or certificates)", "(không có khoá hay chứng thư nào)")).c_str());
  }
  for (const auto& o : *objects) {
    std::fprintf(ctx.out, "%s: %s  id=%s  %s\n", kind_name(o.kind, false).c_str(), o.label.c_str(),
                 HexEncode(o.id).c_str(), o.algorithm.c_str());
    if (!o.subject.empty()) {
      std::fprintf(ctx.out, "  %s: %s\n", std::string(Tr(ctx.lang, "Subject", "Chủ thể")).c_str(),
                   o.subject.c_str());
    }
    std::fprintf(ctx.out, "  URI: %s\n", o.uri.c_str());
  }
  return Finish(ctx, 0);
}

// ------------------------------------------------------------------- csr

Status CheckWritableDir(const std::string& out) {
  std::string dir = ".";
  if (auto slash = out.rfind('/'); slash != std::string::npos) dir = slash == 0 ? "/" : out.substr(0, slash);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::IoError(out + ": directory " + dir + " does not exist");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return Status::IoError(dir + ": " + std::strerror(errno));
  return Status::Ok();
}

int RunCsr(Context& ctx, const Args& args) {
  if (args.positional().size() != 1) return Usage(ctx, "token csr needs one key URI", "token csr cần đúng một URI khoá");
  auto subject_text = args.Get("--subject");
  auto out_path = args.Get("-o");
  if (!subject_text) return Usage(ctx, "token csr needs --subject", "token csr cần --subject");
  if (!out_path) return Usage(ctx, "token csr needs -o REQ.pem", "token csr cần -o REQ.pem");
  auto subject = pkcs11::ParseSubject(*subject_text);
  if (!subject) return Fail(ctx, subject.error());
  Status dir = CheckWritableDir(*out_path);
  if (!dir.ok()) return Fail(ctx, dir);
  auto opts = Options(ctx, args);
  if (!opts) return Fail(ctx, opts.error());
  const std::string& uri = args.positional()[0];
  auto token = pkcs11::Token::Open(uri, *opts);
  if (!token) return FailToken(ctx, token.error());
  DrainWarnings(**token);
  crypto::KeyRef key{uri};
  auto pub = (*token)->PublicKey(key);
  if (!pub) return FailToken(ctx, pub.error());
  // Signs through the Signer interface over this token.
  class Adapter final : public crypto::Signer {
   public:
    explicit Adapter(pkcs11::Token& t) : t_(t) {}
    Result<X509Ptr> Certificate(const crypto::KeyRef& k) override { return t_.Certificate(k); }
    Result<std::string> Sign(const crypto::KeyRef& k, crypto::DigestAlg a, std::string_view d) override {
      return t_.Sign(k, a, d);
    }

   private:
    pkcs11::Token& t_;
  } signer(**token);
  pkcs11::CsrRequest req;
  req.subject = subject->get();
  req.email = args.Get("--email");
  auto csr = pkcs11::MakeCsr(signer, key, pub->get(), req);
  if (!csr) return FailToken(ctx, csr.error());
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), csr->get()) != 1) {
    return Fail(ctx, OpenSslStatus(Code::kInternal, "PEM_write_bio_X509_REQ"));
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  Status w = WriteFileAtomic(*out_path, std::string_view(data, static_cast<size_t>(len)));
  if (!w.ok()) return FailToken(ctx, w);
  std::fprintf(ctx.out, "%s %s\n", std::string(Tr(ctx.lang, "CSR written to", "Đã ghi CSR vào")).c_str(),
               out_path->c_str());
  return Finish(ctx, 0);
}

// ----------------------------------------------------------- import-cert

int RunImportCert(Context& ctx, const Args& args) {
  if (args.positional().size() != 2) {
    return Usage(ctx, "token import-cert needs a key URI and a certificate file",
                 "token import-cert cần URI khoá và tệp chứng thư");
  }
  const std::string& uri = args.positional()[0];
  auto cert = crypto::LoadCertificate(args.positional()[1]);
  if (!cert) return Fail(ctx, cert.error());
  auto opts = Options(ctx, args);
  if (!opts) return Fail(ctx, opts.error());
  opts->read_write = true;
  auto token = pkcs11::Token::Open(uri, *opts);
  if (!token) return FailToken(ctx, token.error());
  DrainWarnings(**token);
  Status s = (*token)->StoreCertificate(crypto::KeyRef{uri}, cert->get());
  if (!s.ok()) return FailToken(ctx, s);
  std::fprintf(ctx.out, "%s: %s\n",
               std::string(Tr(ctx.lang, "Certificate stored with its key", "Đã lưu chứng thư cạnh khoá")).c_str(),
               crypto::DisplayName(cert->get()).c_str());
  return Finish(ctx, 0);
}

}  // namespace

int RunToken(Context& ctx, const std::vector<std::string>& argv) {
  if (argv.empty()) return Usage(ctx, "token needs a subcommand", "token cần một lệnh con");
  const std::string& sub = argv[0];
  FlagSpec spec;
  spec.with_value = {"--pin-file", "--timeout"};
  if (sub == "list") {
    spec.with_value.insert("--module");
    spec.boolean.insert("--json");
  } else if (sub == "keys") {
    spec.boolean.insert("--json");
  } else if (sub == "csr") {
    spec.with_value.insert({"--subject", "--email", "-o"});
  } else if (sub == "import-cert") {
    // common flags only
  } else if (sub == "--help" || sub == "-h") {
    std::fputs(kTokenUsage, ctx.out);
    return 0;
  } else {
    return Usage(ctx, "unknown token subcommand '" + sub + "'", "lệnh con token không tồn tại '" + sub + "'");
  }
  auto args = Args::Parse(std::vector<std::string>(argv.begin() + 1, argv.end()), spec);
  if (!args) return Usage(ctx, args.error().message(), args.error().message());
  if (sub == "list") return RunList(ctx, *args);
  if (sub == "keys") return RunKeys(ctx, *args);
  if (sub == "csr") return RunCsr(ctx, *args);
  return RunImportCert(ctx, *args);
}

}  // namespace sealpost::cli
