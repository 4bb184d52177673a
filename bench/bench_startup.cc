// bench_startup: sealpostd's start-up reading of the archive
// (docs/daemon.md "Start-up", daemon/startup_scan.h).
//
//   bench_startup [--entries 20000] [--dir D] [--runs 3] [--keep 1]
//
// Builds an archive of --entries entries shaped like an appliance's (of
// every 4: a document sent from here with a reference number, a document
// received from a peer, the delivery receipt we issued for it, a delivery
// receipt of a peer; every 500th a delivery-attempts batch), written in
// large batches through AppendMany (a software P-256 seal: FOR BENCHMARKS
// ONLY). Then, with the page cache warm, --runs times each:
//   open       ArchiveReader::Open alone (checkpoint signature verified);
//   separate   what start-up did before: five readers, each reading every
//              manifest for one part (policy recovery, reference counters,
//              evidence leaves, inbox, delivery index);
//   one pass   daemon/startup.h ScanArchiveAtStart: one reader, every
//              manifest read and parsed once, fed to the five parts.
// Prints the best and median of each, and where the one pass spends its time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/x509v3.h>

#include "crypto/software_signer.h"
#include "daemon/startup.h"
#include "storage/archive.h"
#include "storage/reader.h"

namespace sp = sealpost;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

sp::X509Ptr SelfSigned(EVP_PKEY* key, const char* cn) {
  sp::X509Ptr c(X509_new());
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), 7);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400L * 365);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(c.get(), name);
  X509_set_pubkey(c.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, c.get(), c.get(), nullptr, nullptr, 0);
  sp::X509ExtensionPtr ku(
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_key_usage, "critical,digitalSignature,nonRepudiation"));
  X509_add_ext(c.get(), ku.get(), -1);
  X509_sign(c.get(), key, EVP_sha256());
  return c;
}

[[noreturn]] void Die(const std::string& what, const sp::Status& s) {
  std::fprintf(stderr, "bench_startup: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(70);
}

std::string Uuid(uint64_t i) {
  char b[64];
  std::snprintf(b, sizeof b, "00000000-0000-4000-8000-%012llx", static_cast<unsigned long long>(i));
  return b;
}

sp::storage::EntryInput Entry(uint64_t i, uint64_t seq) {
  using sp::storage::EntryKind;
  sp::storage::EntryInput e;
  const std::string hash(64, 'a');
  const std::string body = "content " + std::to_string(i);
  if (i % 500 == 499) {
    e.kind = EntryKind::kDeliveryAttempts;
    e.fields = {{"first_attempt_id", std::to_string(i)}, {"last_attempt_id", std::to_string(i + 10)}};
    e.files = {{"attempts.jsonl", "{}\n"}};
    return e;
  }
  switch (i % 4) {
    case 0:
      e.kind = EntryKind::kDocumentSent;
      e.fields = {{"id", Uuid(i)}, {"type", "cong-van"}, {"reference", std::to_string(i / 4 + 1) + "/CV"},
                  {"reference_number", std::to_string(i / 4 + 1)}, {"subject", "Công văn"},
                  {"issuer", "ldld-thu"}, {"recipients", "cd-a,cd-b"},
                  {"issued_at", "2026-12-07T08:00:00Z"}, {"content_name", "cv.pdf"},
                  {"content_media_type", "application/pdf"}, {"content_size", "4096"},
                  {"content_sha256", hash}, {"policy_sha256", hash}};
      e.files = {{"content", body}, {"document.json", "{}"}};
      break;
    case 1:
      e.kind = EntryKind::kDocumentReceived;
      e.fields = {{"id", Uuid(i)}, {"type", "bao-cao"}, {"reference", ""}, {"subject", "Báo cáo"},
                  {"issuer", "cd-a"}, {"recipients", "ldld-thu"}, {"issued_at", "2026-12-07T08:00:00Z"},
                  {"content_name", "bc.pdf"}, {"content_media_type", "application/pdf"},
                  {"content_size", "4096"}, {"content_sha256", hash}, {"policy_sha256", hash},
                  {"sender_policy_sha256", hash}, {"sender_origin", "cd-a/archive"},
                  {"sender_seq", std::to_string(i)}, {"sender_tree_size", std::to_string(i)},
                  {"sender_root", hash}};
      e.files = {{"content", body}, {"document.json", "{}"}};
      break;
    case 2:
      e.kind = EntryKind::kDeliveryReceipt;
      e.refers_to = seq - 1;
      e.fields = {{"id", Uuid(i - 1)}, {"receipt_type", "delivery-receipt"}, {"recipient", "ldld-thu"},
                  {"sender", "cd-a"}, {"received_at", "2026-12-07T08:00:00Z"}};
      e.files = {{"receipt.json", "{}"}, {"receipt.json.p7s", "x"}};
      break;
    default:
      e.kind = EntryKind::kDeliveryReceipt;
      e.refers_to = seq - 3;
      e.fields = {{"id", Uuid(i - 3)}, {"receipt_type", "delivery-receipt"}, {"recipient", "cd-b"},
                  {"received_at", "2026-12-07T08:00:00Z"}};
      e.files = {{"receipt.json", "{}"}, {"receipt.json.p7s", "x"}};
      break;
  }
  return e;
}

struct Times {
  std::vector<double> ms;
  void Add(double v) { ms.push_back(v); }
  double Best() const { return *std::min_element(ms.begin(), ms.end()); }
  double Median() const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t entries = 20000;
  int runs = 3;
  bool keep = false;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--entries") entries = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--keep") keep = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr, "usage: bench_startup [--entries N] [--dir D] [--runs R] [--keep 0|1]\n");
      return 64;
    }
  }
  const bool own_dir = dir.empty();
  if (own_dir) dir = fs::temp_directory_path() / ("bench_startup." + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string archive_dir = dir + "/archive";

  if (!fs::exists(archive_dir + "/HEAD")) {
    sp::EvpPkeyPtr key(EVP_EC_gen("P-256"));
    sp::X509Ptr cert = SelfSigned(key.get(), "bench seal");
    auto signer = sp::crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(key), std::move(cert));
    if (!signer) Die("signer", signer.error());
    sp::storage::ArchiveOptions ao;
    ao.origin = "ldld-thu/archive";
    ao.signer = signer->get();
    ao.seal_key = {"seal"};
    auto archive = sp::storage::Archive::Create(archive_dir, ao);
    if (!archive) Die("archive", archive.error());
    const Clock::time_point t0 = Clock::now();
    uint64_t i = 0;
    while ((*archive)->size() < entries) {
      std::vector<sp::storage::EntryInput> chunk;
      const uint64_t base = (*archive)->size();
      for (uint64_t k = 0; k < 1000 && base + k < entries; ++k, ++i) {
        chunk.push_back(Entry(i, base + k + 1));
      }
      for (auto& r : (*archive)->AppendMany(std::move(chunk))) {
        if (!r) Die("append", r.error());
      }
    }
    std::printf("archive of %llu entries written in %.1f s (AppendMany, batches of 1000)\n",
                static_cast<unsigned long long>((*archive)->size()), MsSince(t0) / 1000);
  }

  Times open_t, separate_t, one_t;
  std::unique_ptr<sp::daemon::StartupScans> last;
  for (int r = 0; r < runs; ++r) {
    {
      const Clock::time_point t0 = Clock::now();
      auto reader = sp::storage::ArchiveReader::Open(archive_dir);
      if (!reader) Die("open", reader.error());
      open_t.Add(MsSince(t0));
    }
    {
      // Before: each part with its own reader over every manifest.
      const Clock::time_point t0 = Clock::now();
      sp::daemon::PolicyDocumentsScan policy;
      sp::daemon::SentDocumentsScan sent("ldld-thu");
      sp::daemon::LeafHashesScan leaves;
      sp::daemon::ReceivedDocumentsScan inbox("ldld-thu");
      sp::daemon::DeliveryIndex delivery;
      for (sp::daemon::ManifestConsumer* c : std::vector<sp::daemon::ManifestConsumer*>{
               &policy, &sent, &leaves, &inbox, &delivery}) {
        auto reader = sp::storage::ArchiveReader::Open(archive_dir);
        if (!reader) Die("open", reader.error());
        if (sp::Status s = sp::daemon::FeedManifests(**reader, {c}); !s.ok()) Die("pass", s);
      }
      separate_t.Add(MsSince(t0));
    }
    {
      const Clock::time_point t0 = Clock::now();
      auto scans = sp::daemon::ScanArchiveAtStart(archive_dir, "ldld-thu");
      if (!scans) Die("one pass", scans.error());
      one_t.Add(MsSince(t0));
      last = std::move(*scans);
    }
  }
  std::printf("entries %llu, runs %d (best / median ms)\n",
              static_cast<unsigned long long>(last->entries), runs);
  std::printf("  open reader          %9.1f / %9.1f\n", open_t.Best(), open_t.Median());
  std::printf("  five separate passes %9.1f / %9.1f\n", separate_t.Best(), separate_t.Median());
  std::printf("  one pass             %9.1f / %9.1f   (%.2fx faster, best)\n", one_t.Best(),
              one_t.Median(), separate_t.Best() / one_t.Best());
  std::printf("  one pass, last run: read manifests %.1f ms, parse %.1f ms, consumers %.1f ms\n",
              static_cast<double>(last->feed.read_ns) / 1e6,
              static_cast<double>(last->feed.parse_ns) / 1e6,
              static_cast<double>(last->feed.consume_ns) / 1e6);
  if (own_dir && !keep) fs::remove_all(dir);
  return 0;
}
