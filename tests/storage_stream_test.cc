// Entry files given as paths (EntryFile::FromPath): the archive's writer
// reads them in pieces and deflates them into the pack (large documents are
// never held whole in memory). The archive format is unchanged: the same
// manifest, the same git objects as an in-memory file of the same bytes.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <string>

#include "base/encoding.h"
#include "crypto/digest.h"
#include "crypto/software_signer.h"
#include "storage/archive.h"
#include "storage/git.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::WriteTestFile;

std::string Sha256(const std::string& data) { return *crypto::DigestBytes(EVP_sha256(), data); }

std::string Noise(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  for (char& c : out) {
    seed = seed * 1103515245u + 12345u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

class ArchiveStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<sealpost::testing::TestCa>(
        sealpost::testing::TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    sealpost::testing::CertSpec spec;
    spec.subject = "/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN";
    auto issued = ca_->Issue(spec);
    auto s = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(issued.key), std::move(issued.cert));
    ASSERT_TRUE(s.has_value());
    signer_ = std::move(*s);
    ArchiveOptions o;
    o.origin = "cd-baichay.vn/archive";
    o.signer = signer_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Create(tmp_.file("archive.git"), o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    archive_ = std::move(*a);
  }

  std::string Git(const std::string& args, int* rc = nullptr) {
    std::string out;
    int r = RunCommand("git -C " + ShellQuote(tmp_.file("archive.git")) + " " + args, &out);
    if (rc) *rc = r;
    return out;
  }

  sealpost::testing::TempDir tmp_;
  std::unique_ptr<sealpost::testing::TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::unique_ptr<Archive> archive_;
};

TEST_F(ArchiveStreamTest, FileGivenAsPathIsArchivedLikeTheSameBytesInMemory) {
  // 3 MiB of noise (stored) and 2 MiB of text (deflated), beyond one piece.
  std::string text;
  while (text.size() < (2u << 20)) text += "Báo cáo tài chính năm 2026, dòng " + std::to_string(text.size()) + "\n";
  for (const std::string& data : {Noise(3u << 20, 7), text}) {
    SCOPED_TRACE(data.size());
    const std::string path = tmp_.file("content-" + std::to_string(data.size()));
    WriteTestFile(path, data);
    EntryInput streamed;
    streamed.fields["id"] = "streamed";
    streamed.files.push_back(EntryFile::FromPath("content", path, data.size(), Sha256(data)));
    streamed.files.push_back({"content.p7s", "signature"});
    EntryInput in_memory = streamed;
    in_memory.files[0] = EntryFile("content", data);
    // The same manifest whichever way the bytes are given.
    EXPECT_EQ(BuildManifest(streamed, "o", 7, 1700000000), BuildManifest(in_memory, "o", 7, 1700000000));

    auto a = archive_->Append(streamed);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    auto back = archive_->ReadEntryFile(a->seq, "content");
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_TRUE(*back == data);
    auto manifest = archive_->ReadEntryFile(a->seq, "manifest.json");
    ASSERT_TRUE(manifest.has_value());
    EXPECT_NE(manifest->find("\"sha256\":\"" + HexEncode(Sha256(data)) + "\",\"size\":" +
                             std::to_string(data.size())),
              std::string::npos)
        << *manifest;
    // The blob's id is git's id of those bytes.
    std::string blob = Git("rev-parse main:" + EntryDir(a->seq) + "/content");
    EXPECT_EQ(blob.substr(0, 40), OidHex(HashObject(GIT_OBJECT_BLOB, data)));
  }
  int rc = 0;
  std::string fsck = Git("fsck --strict --no-dangling", &rc);
  EXPECT_EQ(rc, 0) << fsck;
  EXPECT_EQ(fsck.find("error"), std::string::npos) << fsck;
}

TEST_F(ArchiveStreamTest, FileOfAnotherSizeOrContentIsRefusedAndNothingIsAppended) {
  const std::string data = "Chỉ thị số 12\n";
  const std::string path = tmp_.file("content");
  WriteTestFile(path, data);
  const uint64_t size_before = archive_->size();

  EntryInput wrong_size;
  wrong_size.files.push_back(EntryFile::FromPath("content", path, data.size() + 1, Sha256(data)));
  auto a = archive_->Append(wrong_size);
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), Code::kInvalidArgument);
  EXPECT_NE(a.error().message().find(path), std::string::npos) << a.error().message();

  EntryInput wrong_content;
  wrong_content.files.push_back(EntryFile::FromPath("content", path, data.size(), Sha256("other")));
  a = archive_->Append(wrong_content);
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), Code::kDataError);
  EXPECT_NE(a.error().message().find("\"content\""), std::string::npos) << a.error().message();

  EntryInput missing;
  missing.files.push_back(EntryFile::FromPath("content", tmp_.file("nowhere"), 1, Sha256("x")));
  EXPECT_FALSE(archive_->Append(missing).has_value());

  EntryInput no_digest;
  no_digest.files.push_back(EntryFile::FromPath("content", path, data.size(), ""));
  EXPECT_FALSE(ValidateEntry(no_digest).ok());

  EXPECT_EQ(archive_->size(), size_before);
  // The archive still appends afterwards.
  EntryInput good;
  good.files.push_back(EntryFile::FromPath("content", path, data.size(), Sha256(data)));
  auto ok = archive_->Append(good);
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->seq, size_before + 1);
}

}  // namespace
}  // namespace sealpost::storage
