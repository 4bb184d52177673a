// A 100 MiB document is packed into a bundle and read back with bounded
// memory: BuildBundle streams the content from the spooled file and
// ReadBundle streams it out again. Measured in a child process as the growth
// of its peak RSS (getrusage ru_maxrss) across the two calls.
#include "crypto/bundle.h"

#include <openssl/rand.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/software_signer.h"
#include "storage/entry.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::CertToPem;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

constexpr uint64_t kContentBytes = 100u << 20;
// The bound asked of the daemon for a 100 MiB upload; the bundle step alone
// must stay well inside it. Sanitizer builds add shadow memory per touched
// byte of heap, so they get a looser bound (still far below the content).
#if defined(__SANITIZE_ADDRESS__)
constexpr long kMaxGrowthKiB = 48 * 1024;
#else
constexpr long kMaxGrowthKiB = 16 * 1024;
#endif

long MaxRssKiB() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

TEST(BundleMemoryTest, BuildAndRead100MiBContentWithBoundedMemorySucceeds) {
  TempDir dir;
  // The spooled upload: 100 MiB written 1 MiB at a time.
  std::string content_path = dir.file("spool");
  {
    std::string chunk(1u << 20, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(chunk.data()), static_cast<int>(chunk.size()));
    FILE* f = std::fopen(content_path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    for (uint64_t i = 0; i < kContentBytes / chunk.size(); ++i) {
      chunk[0] = static_cast<char>(i);  // no two chunks alike
      ASSERT_EQ(std::fwrite(chunk.data(), 1, chunk.size(), f), chunk.size());
    }
    ASSERT_EQ(std::fclose(f), 0);
  }
  auto digest = DigestFile(content_path, {EVP_sha256()});
  ASSERT_TRUE(digest.has_value());

  TestCa ca = TestCa::CreateRoot("/CN=Root/O=Federation/C=VN");
  CertSpec spec;
  spec.subject = "/CN=Con dấu/O=Công đoàn/C=VN";
  auto issued = ca.Issue(spec);
  auto seal = SoftwareKeySigner::CreateForTesting("seal", std::move(issued.key),
                                                  std::move(issued.cert));
  ASSERT_TRUE(seal.has_value());

  DocumentInfo doc;
  doc.id = "cd.vn/1";
  doc.type = "report";
  doc.issuer = "cd";
  doc.recipients = {"parent"};
  doc.issued_at = "2026-11-28T10:00:00Z";
  doc.content_name = "big.bin";
  doc.content_media_type = "application/octet-stream";
  doc.content_size = kContentBytes;
  doc.content_sha256 = HexEncode((*digest)[0]);

  BundleParts parts;
  parts.content_path = content_path;
  parts.document_json = *SerializeDocumentJson(doc);
  WriteTestFile(dir.file("document.json"), parts.document_json);
  auto content_sig = SignFile(**seal, KeyRef{"seal"}, content_path, {});
  ASSERT_TRUE(content_sig.has_value()) << content_sig.error().ToString();
  parts.content_p7s = *content_sig;
  parts.document_json_p7s = *SignFile(**seal, KeyRef{"seal"}, dir.file("document.json"), {});
  parts.certs_pem = CertToPem((*(*seal)->Certificate(KeyRef{"seal"})).get());
  storage::EntryInput entry;
  entry.fields = {{"id", doc.id}};
  entry.files = {{"document.json", parts.document_json}};
  parts.archive_manifest = storage::BuildManifest(entry, "cd.vn/archive", 1, 1764324000);
  Checkpoint cp{"cd.vn/archive", 1, merkle::LeafHash(parts.archive_manifest), {}};
  parts.checkpoint = *SerializeCheckpoint(cp);
  parts.checkpoint_p7s = *SignCheckpoint(**seal, KeyRef{"seal"}, parts.checkpoint);
  parts.proof = InclusionProof{0, 1, {}};
  std::string bundle = dir.file("big.asics");
  std::string work = dir.file("work");
  ASSERT_EQ(::mkdir(work.c_str(), 0700), 0);

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    long before = MaxRssKiB();
    Status built = BuildBundle(parts, bundle);
    auto read = built.ok() ? ReadBundle(bundle, work) : Err(built);
    long after = MaxRssKiB();
    bool ok = read.has_value() && read->content_sha256 == doc.content_sha256 &&
              read->content_size == kContentBytes;
    char msg[256];
    int n = std::snprintf(msg, sizeof msg, "%d %ld %s", ok ? 1 : 0, after - before,
                          read.has_value() ? "" : read.error().ToString().c_str());
    (void)!::write(fds[1], msg, static_cast<size_t>(n));
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[256] = {};
  ssize_t got = 0;
  for (ssize_t r; (r = ::read(fds[0], buf + got, sizeof buf - 1 - got)) > 0;) got += r;
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  int ok = 0;
  long growth = -1;
  ASSERT_EQ(std::sscanf(buf, "%d %ld", &ok, &growth), 2) << buf;
  EXPECT_EQ(ok, 1) << buf;
  struct stat st;
  ASSERT_EQ(::stat(bundle.c_str(), &st), 0);
  EXPECT_GT(static_cast<uint64_t>(st.st_size), kContentBytes);
  EXPECT_LE(growth, kMaxGrowthKiB) << "peak RSS grew by " << growth << " KiB";
  RecordProperty("rss_growth_kib", static_cast<int>(growth));
  std::printf("bundle of %llu MiB built and read back; peak RSS growth %ld KiB\n",
              static_cast<unsigned long long>(kContentBytes >> 20), growth);
}

}  // namespace
}  // namespace sealpost::crypto
