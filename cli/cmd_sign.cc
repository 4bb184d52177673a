// `sealpost sign`: CAdES B-B detached signature of one file with a key on a
// PKCS#11 token, or a co-signature added to an existing one (--append).
//
// Order of work, so that bad input costs no PIN and leaves nothing behind:
// arguments, the file to sign, the chain, the existing signature (and that
// it covers the file), the output directory; only then the token; the
// output is written atomically at the very end.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "pkcs11/open.h"

namespace sealpost::cli {
namespace {

constexpr const char* kSignUsage =
    "usage: sealpost sign --key URI [--chain INTERMEDIATES.pem] [--pin-file F] FILE [-o FILE.p7s]\n"
    "       sealpost sign --key URI --append EXISTING.p7s [--chain PEM] [--pin-file F] FILE "
    "[-o OUT.p7s]\n"
    "common: [--timeout SECONDS] (bound on each token call, default 20)\n";

// An existing signature is a few KiB to a few MiB (certificates); anything
// much larger is not one.
constexpr size_t kMaxSignatureBytes = 64u << 20;

Status Translated(const Context& ctx, const Status& s, std::string_view en, std::string_view vi) {
  return Status(s.code(), std::string(Tr(ctx.lang, en, vi)) + ": " + s.message());
}

int Usage(const Context& ctx, const std::string& what_en, const std::string& what_vi) {
  std::fprintf(ctx.err, "sealpost: %s\n%s", std::string(Tr(ctx.lang, what_en, what_vi)).c_str(),
               kSignUsage);
  return 64;
}

// The file to sign must be a readable regular file: checked before the token
// is touched (the digest pass reads it again).
Status CheckReadableFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound(path + ": " + std::strerror(errno));
  struct stat st;
  int rc = ::fstat(fd, &st);
  ::close(fd);
  if (rc != 0) return Status::NotFound(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::NotFound(path + ": not a regular file");
  return Status::Ok();
}

// The directory the output goes to must take a new file; checked early so a
// PIN is not spent on a signature that cannot be written.
Status CheckWritableDir(const std::string& out) {
  std::string dir = ".";
  if (auto slash = out.rfind('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : out.substr(0, slash);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::IoError(dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Status::IoError(dir + ": not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Status::IoError(dir + ": " + std::strerror(errno));
  }
  if (::stat(out.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Status::IoError(out + ": is a directory");
  }
  return Status::Ok();
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// The command proper. `signer` lives in the caller, so that after a token
// call was abandoned the process can leave without destroying it.
int SignCommand(Context& ctx, const std::vector<std::string>& argv,
                std::unique_ptr<crypto::Signer>& signer) {
  FlagSpec spec;
  spec.with_value = {"--key", "--chain", "--append", "-o", "--output", "--pin-file", "--timeout"};
  spec.boolean = {"--help"};
  auto args = Args::Parse(argv, spec);
  if (!args) {
    return Usage(ctx, "invalid arguments: " + args.error().message(),
                 "tham số không hợp lệ: " + args.error().message());
  }
  if (args->Has("--help")) {
    std::fputs(kSignUsage, ctx.out);
    return 0;
  }
  if (args->positional().size() != 1) {
    return Usage(ctx, "sign needs exactly one FILE to sign",
                 "lệnh sign cần đúng một TỆP để ký");
  }
  auto key_uri = args->Get("--key");
  if (!key_uri || key_uri->empty()) {
    return Usage(ctx, "sign needs --key URI (a PKCS#11 URI of the signing key)",
                 "lệnh sign cần --key URI (URI PKCS#11 của khóa ký)");
  }
  const std::string file = args->positional().front();
  const std::optional<std::string> append = args->Get("--append");
  std::string out = args->Get("-o").value_or(args->Get("--output").value_or(""));
  if (out.empty()) out = append ? *append : file + ".p7s";
  if (out == file || SameFile(out, file)) {
    return Usage(ctx, "the output would overwrite the file being signed: " + out,
                 "tệp đầu ra sẽ ghi đè lên chính tệp cần ký: " + out);
  }

  if (Status s = CheckReadableFile(file); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "cannot read the file to sign", "không đọc được tệp cần ký"));
  }

  X509StackPtr chain;
  crypto::CadesSignOptions opts;
  if (auto chain_path = args->Get("--chain")) {
    auto certs = crypto::LoadCertificates(*chain_path);
    if (!certs) {
      return Fail(ctx, Translated(ctx, certs.error(), "cannot use --chain " + *chain_path,
                                  "không dùng được --chain " + *chain_path));
    }
    chain = std::move(*certs);
    for (int i = 0; i < sk_X509_num(chain.get()); ++i) opts.chain.push_back(sk_X509_value(chain.get(), i));
  }

  // Co-signing: the existing signature must be over this very file. Checked
  // now, before anyone is asked for a PIN.
  std::optional<crypto::ExistingSignature> existing;
  std::vector<const EVP_MD*> mds;
  std::vector<std::string> digests;
  if (append) {
    auto der = ReadFile(*append, kMaxSignatureBytes);
    if (!der) {
      return Fail(ctx, Translated(ctx, der.error(), "cannot read the signature to append to",
                                  "không đọc được chữ ký cần thêm vào"));
    }
    auto parsed = crypto::ExistingSignature::Parse(std::move(*der), *append);
    if (!parsed) {
      return Fail(ctx, Translated(ctx, parsed.error(), "not a signature sealpost can append to",
                                  "không phải chữ ký mà sealpost có thể ký thêm vào"));
    }
    existing = std::move(*parsed);
    mds = existing->DigestMds();
    auto d = crypto::DigestFile(file, mds);
    if (!d) return Fail(ctx, Translated(ctx, d.error(), "cannot read the file to sign", "không đọc được tệp cần ký"));
    digests = std::move(*d);
    if (Status s = existing->CheckCovers(mds, digests, file); !s.ok()) {
      return Fail(ctx, Translated(ctx, s, "the existing signature is not a signature of " + file,
                                  "chữ ký hiện có không phải là chữ ký của tệp " + file));
    }
  }

  if (Status s = CheckWritableDir(out); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "cannot write the signature " + out,
                                "không ghi được chữ ký " + out));
  }

  pkcs11::OpenOptions open_opts;
  open_opts.lang = ctx.lang;
  open_opts.pin_file = args->Get("--pin-file");
  open_opts.interactive = ::isatty(STDIN_FILENO) == 1;
  if (auto t = args->Get("--timeout")) {
    char* end = nullptr;
    double secs = std::strtod(t->c_str(), &end);
    if (end == t->c_str() || *end != '\0' || !(secs > 0) || secs > 3600) {
      return Usage(ctx, "--timeout: \"" + *t + "\" is not a number of seconds (0-3600]",
                   "--timeout: \"" + *t + "\" không phải số giây hợp lệ (0-3600]");
    }
    open_opts.call_timeout = std::chrono::milliseconds(static_cast<long>(secs * 1000));
  }
  auto opened = pkcs11::OpenTokenSigner(*key_uri, open_opts);
  if (!opened) {
    return Fail(ctx, Translated(ctx, opened.error(), "cannot use the signing key",
                                "không dùng được khóa ký"));
  }
  signer = std::move(*opened);
  const crypto::KeyRef key{*key_uri};
  auto cert = signer->Certificate(key);
  if (!cert) {
    return Fail(ctx, Translated(ctx, cert.error(), "cannot read the signing key's certificate",
                                "không đọc được chứng thư của khóa ký"));
  }
  auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(cert->get()));
  if (!alg) return Fail(ctx, Translated(ctx, alg.error(), "cannot sign with this key", "không ký được bằng khóa này"));
  const EVP_MD* md = crypto::DigestAlgMd(*alg);

  // One streaming pass computes every digest still needed; if a second pass
  // is needed (a new algorithm), the existing signers are checked again
  // against that same pass.
  size_t mine = mds.size();
  for (size_t i = 0; i < mds.size(); ++i) {
    if (EVP_MD_get_type(mds[i]) == EVP_MD_get_type(md)) mine = i;
  }
  if (mine == mds.size()) {
    mds.push_back(md);
    auto d = crypto::DigestFile(file, mds);
    if (!d) return Fail(ctx, Translated(ctx, d.error(), "cannot read the file to sign", "không đọc được tệp cần ký"));
    digests = std::move(*d);
    if (existing) {
      if (Status s = existing->CheckCovers(mds, digests, file); !s.ok()) {
        return Fail(ctx, Translated(ctx, s, "the existing signature is not a signature of " + file,
                                    "chữ ký hiện có không phải là chữ ký của tệp " + file));
      }
    }
  }

  Result<std::string> der =
      existing ? crypto::AppendSignature(*signer, key, cert->get(), *alg, digests[mine], *existing, opts)
               : crypto::BuildDetachedSignature(*signer, key, cert->get(), *alg, digests[mine], opts);
  if (!der) return Fail(ctx, Translated(ctx, der.error(), "signing failed", "ký không thành công"));

  if (Status s = WriteFileAtomic(out, *der, 0644); !s.ok()) {
    return Fail(ctx, Translated(ctx, s, "cannot write the signature " + out, "không ghi được chữ ký " + out));
  }
  std::string who = crypto::DisplayName(cert->get());
  std::string alg_name(crypto::DigestAlgName(*alg));
  if (existing) {
    std::fprintf(ctx.out, "%s\n",
                 (std::string(Tr(ctx.lang, "co-signed ", "đã ký thêm ")) + file + " -> " + out + " (" +
                  std::string(Tr(ctx.lang, "signer: ", "người ký: ")) + who + ", " + alg_name + "; " +
                  std::to_string(existing->signers().size() + 1) +
                  std::string(Tr(ctx.lang, " signatures", " chữ ký")) + ")")
                     .c_str());
  } else {
    std::fprintf(ctx.out, "%s\n",
                 (std::string(Tr(ctx.lang, "signed ", "đã ký ")) + file + " -> " + out + " (" +
                  std::string(Tr(ctx.lang, "signer: ", "người ký: ")) + who + ", " + alg_name + ")")
                     .c_str());
  }
  return 0;
}

}  // namespace

int RunSign(Context& ctx, const std::vector<std::string>& argv) {
  std::unique_ptr<crypto::Signer> signer;
  int code = SignCommand(ctx, argv, signer);
  if (pkcs11::TokenCallAbandoned()) {
    // A token call hung and its thread cannot be joined: destroying the
    // signer (or running atexit handlers) could wait on the module forever.
    std::fflush(nullptr);
    ::_exit(code);
  }
  return code;
}

}  // namespace sealpost::cli
