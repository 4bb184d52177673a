// bench_audit: `sealpost audit` rates on a generated archive.
//
//   bench_audit [--entries N] [--new K] [--jobs J] [--million] [--dir DIR] [--keep]
//
// Generates an archive of N signed documents (1 KiB random content, CAdES
// by a software officer key, certs.pem; the seal is a software key too),
// appended by 256 threads so they are grouped into few commits. Then:
//  1. the reference: a bare d2i_CMS_ContentInfo + CMS_verify loop (trust
//     store with the CA) over the same kind of signatures, in J processes;
//  2. the full audit with J worker processes: its signature rate (entry
//     phase: reading the entries from git, manifests, digests, CMS
//     verification with path validation) against the reference;
//  3. K more entries, then an incremental audit from the checkpoint taken
//     before them.
// Targets (issue 3): ratio >= 0.9; 100,000 entries <= 60 s (1,000,000 with
// --million <= 600 s); incremental 1,000 new entries <= 2 s.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"
#include "base/openssl.h"
#include "crypto/cades_sign.h"
#include "crypto/digest.h"
#include "crypto/software_signer.h"
#include "storage/archive.h"
#include "storage/audit.h"

namespace {

using namespace sealpost;  // NOLINT: a benchmark program
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_audit: %s %s\n", what.c_str(), DrainOpenSslErrors().c_str());
  std::exit(70);
}

// CPU seconds (user + system) of this process or of its waited-for children.
double CpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

X509Ptr MakeCert(const char* cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca,
                 long serial) {
  X509Ptr c(X509_new());
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
  X509_NAME* n = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : n);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400L * 30);
  X509_set_pubkey(c.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : c.get(), c.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* v) {
    X509ExtensionPtr e(X509V3_EXT_conf_nid(nullptr, &ctx, nid, v));
    X509_add_ext(c.get(), e.get(), -1);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,nonRepudiation");
  if (X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) Die("X509_sign");
  return c;
}

std::string Pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

struct Pki {
  EvpPkeyPtr ca_key, seal_key, officer_key;
  X509Ptr ca, seal, officer;
  std::string officer_pem;
};

std::unique_ptr<crypto::SoftwareKeySigner> SignerFor(EVP_PKEY* key, X509* cert,
                                                     const std::string& label) {
  EVP_PKEY_up_ref(key);
  auto s = crypto::SoftwareKeySigner::CreateForTesting(label, EvpPkeyPtr(key), X509Ptr(X509_dup(cert)));
  if (!s) Die("signer: " + s.error().message());
  return std::move(*s);
}

storage::EntryInput Document(crypto::SoftwareKeySigner& officer, X509* cert,
                             const std::string& cert_pem, uint64_t i, std::string* content_out,
                             std::string* sig_out) {
  std::string content(1024, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(content.data()), 1024);
  auto digest = crypto::DigestBytes(EVP_sha256(), content);
  auto sig = crypto::BuildDetachedSignature(officer, crypto::KeyRef{"officer"}, cert,
                                            crypto::DigestAlg::kSha256, *digest, {});
  if (!sig) Die("sign: " + sig.error().message());
  storage::EntryInput e;
  e.kind = storage::EntryKind::kDocumentSent;
  e.fields["id"] = "bench/" + std::to_string(i);
  e.fields["type"] = "report";
  e.fields["content_size"] = "1024";
  e.fields["content_sha256"] = HexEncode(*digest);
  if (content_out) *content_out = content;
  if (sig_out) *sig_out = *sig;
  e.files.push_back({"content", std::move(content)});
  e.files.push_back({"content.p7s", std::move(*sig)});
  e.files.push_back({"certs.pem", cert_pem});
  return e;
}

// Appends `count` documents: 2 threads sign chunks, 256 threads append them.
void Fill(storage::Archive& archive, const Pki& pki, uint64_t count, uint64_t first) {
  constexpr uint64_t kChunk = 20000;
  for (uint64_t done = 0; done < count;) {
    uint64_t n = std::min(kChunk, count - done);
    std::vector<storage::EntryInput> docs(n);
    std::vector<std::thread> signers;
    for (int t = 0; t < 2; ++t) {
      signers.emplace_back([&, t] {
        auto officer = SignerFor(pki.officer_key.get(), pki.officer.get(), "officer");
        for (uint64_t i = static_cast<uint64_t>(t); i < n; i += 2) {
          docs[i] = Document(*officer, pki.officer.get(), pki.officer_pem, first + done + i,
                             nullptr, nullptr);
        }
      });
    }
    for (auto& t : signers) t.join();
    std::atomic<uint64_t> next{0};
    std::vector<std::thread> appenders;
    for (int t = 0; t < 256; ++t) {
      appenders.emplace_back([&] {
        for (uint64_t i = next++; i < n; i = next++) {
          auto r = archive.Append(std::move(docs[i]));
          if (!r) Die("append: " + r.error().message());
        }
      });
    }
    for (auto& t : appenders) t.join();
    done += n;
    std::fprintf(stderr, "  %llu entries appended\n", static_cast<unsigned long long>(first + done));
  }
}

// The reference: a bare OpenSSL verification of each signature.
size_t ReferenceLoop(const std::vector<std::pair<std::string, std::string>>& v, size_t begin,
                     size_t end, X509_STORE* store) {
  size_t ok = 0;
  for (size_t i = begin; i < end; ++i) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(v[i].second.data());
    CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(v[i].second.size())));
    BioPtr content(BIO_new_mem_buf(v[i].first.data(), static_cast<int>(v[i].first.size())));
    if (cms && CMS_verify(cms.get(), nullptr, store, content.get(), nullptr, CMS_BINARY) == 1) ++ok;
    ERR_clear_error();
  }
  return ok;
}

double TimedReference(const std::vector<std::pair<std::string, std::string>>& v, int procs,
                      X509_STORE* store, double* cpu) {
  auto start = Clock::now();
  const double cpu0 = CpuSeconds(RUSAGE_CHILDREN);
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    size_t b = v.size() * static_cast<size_t>(p) / static_cast<size_t>(procs);
    size_t e = v.size() * static_cast<size_t>(p + 1) / static_cast<size_t>(procs);
    pid_t pid = fork();
    if (pid == 0) _exit(ReferenceLoop(v, b, e, store) == e - b ? 0 : 1);
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int st = 0;
    waitpid(k, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) Die("the reference failed to verify");
  }
  *cpu = CpuSeconds(RUSAGE_CHILDREN) - cpu0;
  return Seconds(start);
}

double LoadAverage() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

std::string GitBlob(const std::string& dir, const std::string& spec) {
  std::string cmd = "git -C '" + dir + "' cat-file blob " + spec;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) Die("popen");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) Die("git cat-file " + spec);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t entries = 100000, fresh = 1000;
  int jobs = 2;
  bool keep = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--entries") entries = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--new") fresh = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--jobs") jobs = std::atoi(next().c_str());
    else if (a == "--million") entries = 1000000;
    else if (a == "--dir") dir = next();
    else if (a == "--keep") keep = true;
    else Die("usage: bench_audit [--entries N] [--new K] [--jobs J] [--million] [--dir DIR] [--keep]");
  }
  if (dir.empty()) {
    char tmpl[] = "/tmp/bench_audit.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
    dir = tmpl;
  }
  const std::string archive_dir = dir + "/archive.git";
  const std::string trust = dir + "/ca.pem";

  Pki pki;
  pki.ca_key.reset(EVP_EC_gen("P-256"));
  pki.seal_key.reset(EVP_EC_gen("P-256"));
  pki.officer_key.reset(EVP_EC_gen("P-256"));
  pki.ca = MakeCert("Bench CA", pki.ca_key.get(), nullptr, nullptr, true, 1);
  pki.seal = MakeCert("Bench Seal", pki.seal_key.get(), pki.ca.get(), pki.ca_key.get(), false, 2);
  pki.officer = MakeCert("Bench Officer", pki.officer_key.get(), pki.ca.get(), pki.ca_key.get(), false, 3);
  pki.officer_pem = Pem(pki.officer.get());
  {
    FILE* f = std::fopen(trust.c_str(), "w");
    if (f == nullptr) Die("cannot write " + trust);
    std::fputs(Pem(pki.ca.get()).c_str(), f);
    std::fclose(f);
  }
  auto seal = SignerFor(pki.seal_key.get(), pki.seal.get(), "seal");
  storage::ArchiveOptions o;
  o.origin = "bench.invalid/archive";
  o.signer = seal.get();
  o.seal_key = crypto::KeyRef{"seal"};

  std::fprintf(stderr, "generating %llu entries in %s ...\n",
               static_cast<unsigned long long>(entries), archive_dir.c_str());
  auto gen_start = Clock::now();
  {
    auto archive = storage::Archive::Create(archive_dir, o);
    if (!archive) Die(archive.error().message());
    Fill(**archive, pki, entries, 0);
    std::fprintf(stderr, "  %llu commits, %.1f s\n",
                 static_cast<unsigned long long>((*archive)->commits_written()), Seconds(gen_start));
  }

  // 1. Reference loop over signatures of the same kind.
  const size_t ref_n = static_cast<size_t>(std::min<uint64_t>(entries, 20000));
  std::vector<std::pair<std::string, std::string>> samples(ref_n);
  {
    auto officer = SignerFor(pki.officer_key.get(), pki.officer.get(), "officer");
    for (size_t i = 0; i < ref_n; ++i) {
      Document(*officer, pki.officer.get(), pki.officer_pem, i, &samples[i].first, &samples[i].second);
    }
  }
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), pki.ca.get());
  double ref_cpu = 0;
  double ref_s = TimedReference(samples, jobs, store.get(), &ref_cpu);
  double ref_rate = static_cast<double>(ref_n) / ref_s;
  double ref_cpu_rate = static_cast<double>(ref_n) / ref_cpu;

  // 2. The full audit.
  storage::AuditOptions ao;
  ao.trust_files = {trust};
  ao.jobs = jobs;
  auto start = Clock::now();
  const double self0 = CpuSeconds(RUSAGE_SELF), kids0 = CpuSeconds(RUSAGE_CHILDREN);
  auto report = storage::Audit(archive_dir, ao);
  double audit_s = Seconds(start);
  const double walk_cpu = CpuSeconds(RUSAGE_SELF) - self0;
  const double workers_cpu = CpuSeconds(RUSAGE_CHILDREN) - kids0;
  if (!report) Die("audit: " + report.error().message());
  if (report->ExitCode() != 0) Die("audit found problems:\n" + storage::AuditReportToText(*report, Lang::kEn));
  double ours_rate = static_cast<double>(report->signatures_checked) / report->entry_check_seconds;
  double ours_cpu_rate = static_cast<double>(report->signatures_checked) / workers_cpu;

  // 3. Incremental: K new entries after a trusted checkpoint.
  storage::TrustedCheckpoint trusted;
  trusted.body = GitBlob(archive_dir, "main:log/checkpoint");
  trusted.signature_der = GitBlob(archive_dir, "main:log/checkpoint.p7s");
  trusted.source = "trusted checkpoint";
  {
    auto archive = storage::Archive::Open(archive_dir, o);
    if (!archive) Die(archive.error().message());
    Fill(**archive, pki, fresh, entries + 1);
  }
  ao.trusted = trusted;
  start = Clock::now();
  const double inc0 = CpuSeconds(RUSAGE_SELF) + CpuSeconds(RUSAGE_CHILDREN);
  auto inc = storage::Audit(archive_dir, ao);
  double inc_s = Seconds(start);
  const double inc_cpu = CpuSeconds(RUSAGE_SELF) + CpuSeconds(RUSAGE_CHILDREN) - inc0;
  if (!inc) Die("incremental audit: " + inc.error().message());
  if (inc->ExitCode() != 0) Die("incremental audit found problems");

  std::printf("audit bench: %llu entries (%llu commits), %d worker processes, load average %.1f\n",
              static_cast<unsigned long long>(report->entries),
              static_cast<unsigned long long>(report->commits), jobs, LoadAverage());
  std::printf("  reference d2i_CMS+CMS_verify, %d procs : %7.0f sig/s wall, %7.0f sig/CPU-s (%zu sigs)\n",
              jobs, ref_rate, ref_cpu_rate, ref_n);
  std::printf("  audit entry checks, %d procs         : %7.0f sig/s wall, %7.0f sig/CPU-s (%llu sigs, %.2f s)\n",
              jobs, ours_rate, ours_cpu_rate,
              static_cast<unsigned long long>(report->signatures_checked), report->entry_check_seconds);
  std::printf("  ratio audit / reference              : %7.2f wall, %7.2f CPU   (target >= 0.90)\n",
              ours_rate / ref_rate, ours_cpu_rate / ref_cpu_rate);
  std::printf("  full audit of %llu entries           : %7.2f s wall (walk %.2f CPU-s, workers %.2f CPU-s; target <= %s)\n",
              static_cast<unsigned long long>(report->entries), audit_s, walk_cpu, workers_cpu,
              entries >= 1000000 ? "600 s for 1,000,000" : "60 s for 100,000");
  std::printf("  incremental, %llu new of %llu        : %7.2f s wall, %.2f CPU-s (target <= 2 s for 1,000 new)\n",
              static_cast<unsigned long long>(inc->entries_checked),
              static_cast<unsigned long long>(inc->entries), inc_s, inc_cpu);
  if (!keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}
