// bench_verify_many: verification rate of many small signed files through
// the library `sealpost verify` uses, next to a bare CMS_verify loop over the
// same files (the reference), on one core and on two (two processes), and
// next to `openssl speed ecdsap256`.
//
//   bench_verify_many [N]        (default 10000)
//
// Target (issue 2): ours >= 0.9x the reference rate, on one core and on two.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "base/openssl.h"
#include "crypto/verify.h"

namespace {

using sealpost::BioPtr;
using sealpost::CmsPtr;
using sealpost::EvpPkeyPtr;
using sealpost::X509Ptr;

struct Sample {
  std::string content;
  std::string sig;  // DER CMS, detached, signer certificate embedded
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "bench_verify_many: %s: %s\n", what, sealpost::DrainOpenSslErrors().c_str());
  std::exit(70);
}

X509Ptr MakeCert(const char* cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca) {
  X509Ptr c(X509_new());
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), ca ? 1 : 2);
  X509_NAME* n = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : n);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400L * 30);
  X509_set_pubkey(c.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : c.get(), c.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* v) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, v);
    X509_add_ext(c.get(), e, -1);
    X509_EXTENSION_free(e);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,nonRepudiation");
  if (X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) Die("X509_sign");
  return c;
}

std::vector<Sample> Generate(size_t n, X509* cert, EVP_PKEY* key) {
  std::vector<Sample> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Sample s;
    s.content.resize(1024);
    RAND_bytes(reinterpret_cast<unsigned char*>(s.content.data()), 1024);
    BioPtr in(BIO_new_mem_buf(s.content.data(), static_cast<int>(s.content.size())));
    CmsPtr cms(CMS_sign(cert, key, nullptr, in.get(), CMS_DETACHED | CMS_BINARY | CMS_CADES));
    if (!cms) Die("CMS_sign");
    unsigned char* der = nullptr;
    int len = i2d_CMS_ContentInfo(cms.get(), &der);
    s.sig.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    out.push_back(std::move(s));
  }
  return out;
}

// The reference: what a bare OpenSSL program does per file.
size_t ReferenceLoop(const std::vector<Sample>& v, size_t begin, size_t end, X509_STORE* store) {
  size_t ok = 0;
  for (size_t i = begin; i < end; ++i) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(v[i].sig.data());
    CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(v[i].sig.size())));
    BioPtr content(BIO_new_mem_buf(v[i].content.data(), static_cast<int>(v[i].content.size())));
    if (cms && CMS_verify(cms.get(), nullptr, store, content.get(), nullptr, CMS_BINARY) == 1) ++ok;
    ERR_clear_error();
  }
  return ok;
}

size_t OursLoop(const std::vector<Sample>& v, size_t begin, size_t end,
                const sealpost::crypto::Verifier& verifier) {
  size_t ok = 0;
  for (size_t i = begin; i < end; ++i) {
    auto r = verifier.VerifyBytes(v[i].content, v[i].sig);
    if (r && r->indication == sealpost::crypto::Indication::kPassed) ++ok;
  }
  return ok;
}

// Runs fn over [0, n) split across `procs` processes; returns wall seconds.
// Each child exits 0 only if every item verified.
template <typename Fn>
double Timed(size_t n, int procs, Fn fn) {
  auto start = std::chrono::steady_clock::now();
  if (procs == 1) {
    if (fn(0, n) != n) { std::fprintf(stderr, "not every signature verified\n"); std::exit(1); }
  } else {
    std::vector<pid_t> kids;
    for (int p = 0; p < procs; ++p) {
      size_t b = n * p / procs, e = n * (p + 1) / procs;
      pid_t pid = fork();
      if (pid == 0) _exit(fn(b, e) == e - b ? 0 : 1);
      kids.push_back(pid);
    }
    for (pid_t k : kids) {
      int st = 0;
      waitpid(k, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::fprintf(stderr, "a worker failed to verify every signature\n");
        std::exit(1);
      }
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  EvpPkeyPtr ca_key(EVP_EC_gen("P-256"));
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr ca = MakeCert("Bench CA", ca_key.get(), nullptr, nullptr, true);
  X509Ptr cert = MakeCert("Bench Signer", key.get(), ca.get(), ca_key.get(), false);
  std::fprintf(stderr, "generating %zu signed files...\n", n);
  std::vector<Sample> samples = Generate(n, cert.get(), key.get());

  sealpost::X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);

  sealpost::X509StackPtr anchors(sk_X509_new_null());
  X509_up_ref(ca.get());
  sk_X509_push(anchors.get(), ca.get());
  auto trust = sealpost::crypto::TrustStore::Create(std::move(anchors), nullptr, nullptr,
                                                    sealpost::crypto::TrustOptions{});
  if (!trust) {
    std::fprintf(stderr, "TrustStore::Create: %s\n", trust.error().message().c_str());
    return 70;
  }
  auto verifier = sealpost::crypto::Verifier::Create(std::move(*trust));
  if (!verifier) {
    std::fprintf(stderr, "Verifier::Create: %s\n", verifier.error().message().c_str());
    return 70;
  }

  std::printf("%-40s %12s %8s\n", "verify, P-256, 1 KiB files", "files/s", "ratio");
  for (int procs : {1, 2}) {
    // Warm-up, then measured runs (median of 3).
    ReferenceLoop(samples, 0, std::min<size_t>(n, 200), store.get());
    std::vector<double> ref, ours;
    for (int r = 0; r < 3; ++r) {
      ref.push_back(Timed(n, procs, [&](size_t b, size_t e) { return ReferenceLoop(samples, b, e, store.get()); }));
      ours.push_back(Timed(n, procs, [&](size_t b, size_t e) { return OursLoop(samples, b, e, *verifier); }));
    }
    std::sort(ref.begin(), ref.end());
    std::sort(ours.begin(), ours.end());
    double ref_rate = n / ref[1], our_rate = n / ours[1];
    std::printf("%-40s %12.0f %8s\n", (std::to_string(procs) + " process(es): bare CMS_verify (reference)").c_str(),
                ref_rate, "1.00x");
    std::printf("%-40s %12.0f %7.2fx\n", (std::to_string(procs) + " process(es): sealpost Verifier").c_str(),
                our_rate, our_rate / ref_rate);
  }
  std::fflush(stdout);
  std::printf("reference: openssl speed ecdsap256 (verify/s per core):\n");
  std::fflush(stdout);
  int rc = std::system("openssl speed -seconds 2 ecdsap256 2>/dev/null | tail -1");
  (void)rc;
  std::printf("target: Verifier >= 0.9x the bare CMS_verify rate on 1 and on 2 processes\n");
  return 0;
}
