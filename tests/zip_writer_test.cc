// The streaming ZIP writer (base/zip.h): what it writes is read back by our
// reader and accepted by Info-ZIP's `unzip -t`; what Info-ZIP's `zip` writes
// is read by our reader; a writer that does not finish leaves nothing.
#include "base/zip.h"

#include <dirent.h>
#include <openssl/rand.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::ReadTestFile;
using testing::RunCommand;
using testing::ShellQuote;
using testing::TempDir;
using testing::WriteTestFile;

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

TEST(ZipWriterTest, WriteThenReadRoundTripKeepsEveryMember) {
  TempDir dir;
  std::string big = RandomBytes(3 * 64 * 1024 + 17);  // several chunks, not aligned
  WriteTestFile(dir.file("big.bin"), big);
  std::string meta = "{\"subject\":\"Báo cáo tài chính\"}" + std::string(2000, 'x');
  {
    auto w = ZipWriter::Create(dir.file("out.zip"));
    ASSERT_TRUE(w.has_value()) << w.error().ToString();
    ASSERT_TRUE(w->AddBytes("mimetype", "application/vnd.etsi.asic-s+zip").ok());
    ASSERT_TRUE(w->AddFile("big.bin", dir.file("big.bin")).ok());
    ASSERT_TRUE(w->AddBytes("META-INF/meta.json", meta, ZipMethod::kDeflate).ok());
    ASSERT_TRUE(w->AddBytes("META-INF/empty", "").ok());
    Status s = w->Finish();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ(ListDir(dir.path()).size(), 2u) << "temporary file left behind";

  auto r = ZipReader::Open(dir.file("out.zip"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->entries().size(), 4u);
  EXPECT_EQ(r->entries()[0].name, "mimetype");
  EXPECT_EQ(r->entries()[2].method, ZipMethod::kDeflate);
  EXPECT_LT(r->entries()[2].compressed_size, meta.size());
  EXPECT_EQ(*r->ExtractToString(r->entries()[0], 100), "application/vnd.etsi.asic-s+zip");
  EXPECT_EQ(*r->ExtractToString(*r->Find("META-INF/meta.json"), 1 << 20), meta);
  EXPECT_EQ(*r->ExtractToString(*r->Find("META-INF/empty"), 0), "");
  ASSERT_TRUE(r->ExtractToFile(*r->Find("big.bin"), dir.file("big.out")).ok());
  EXPECT_EQ(ReadTestFile(dir.file("big.out")), big);
  // A size limit below the member's size is refused.
  auto small = r->ExtractToString(*r->Find("META-INF/meta.json"), 100);
  ASSERT_FALSE(small.has_value());
  EXPECT_NE(small.error().message().find("at most 100"), std::string::npos);
}

TEST(ZipWriterTest, FirstMemberMimetypeIsStoredWithoutExtraField) {
  TempDir dir;
  auto w = ZipWriter::Create(dir.file("a.zip"));
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->AddBytes("mimetype", "application/vnd.etsi.asic-s+zip").ok());
  ASSERT_TRUE(w->Finish().ok());
  std::string raw = ReadTestFile(dir.file("a.zip"));
  ASSERT_GT(raw.size(), 38u + 31u);
  EXPECT_EQ(raw.substr(0, 4), std::string("PK\x03\x04", 4));
  EXPECT_EQ(raw[8], 0);   // method STORED
  EXPECT_EQ(raw[9], 0);
  EXPECT_EQ(raw[26], 8);  // name length
  EXPECT_EQ(raw[28], 0);  // extra length
  EXPECT_EQ(raw[29], 0);
  // What ASiC readers sniff: "mimetype" at 30, the media type at 38.
  EXPECT_EQ(raw.substr(30, 8 + 31), "mimetypeapplication/vnd.etsi.asic-s+zip");
}

TEST(ZipWriterTest, UnzipTestAcceptsWrittenArchive) {
  TempDir dir;
  std::string content = RandomBytes(200 * 1024);
  WriteTestFile(dir.file("doc.pdf"), content);
  auto w = ZipWriter::Create(dir.file("out.zip"));
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->AddBytes("mimetype", "application/vnd.etsi.asic-s+zip").ok());
  ASSERT_TRUE(w->AddFile("content.pdf", dir.file("doc.pdf")).ok());
  ASSERT_TRUE(w->AddBytes("META-INF/Quyết định.txt", "Nội dung\n", ZipMethod::kDeflate).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::string out;
  ASSERT_EQ(RunCommand("unzip -t " + ShellQuote(dir.file("out.zip")), &out), 0) << out;
  EXPECT_NE(out.find("No errors detected"), std::string::npos) << out;
  ASSERT_EQ(RunCommand("cd " + ShellQuote(dir.path()) + " && mkdir x && cd x && unzip -q ../out.zip",
                       &out), 0) << out;
  EXPECT_EQ(ReadTestFile(dir.file("x/content.pdf")), content);
  EXPECT_EQ(ReadTestFile(dir.file("x/META-INF/Quyết định.txt")), "Nội dung\n");
}

// The deflate window is sized to each member (base/zip.cc Deflater): every
// size around the window steps must still inflate, with Info-ZIP and with
// our reader, to the same bytes.
TEST(ZipWriterTest, DeflatedMembersOfEverySizeRoundTripThroughUnzipAndTheReader) {
  TempDir dir;
  auto w = ZipWriter::Create(dir.file("sizes.zip"));
  ASSERT_TRUE(w.has_value());
  std::vector<std::pair<std::string, std::string>> members;
  for (size_t n : {0u, 1u, 100u, 511u, 512u, 513u, 4095u, 4097u, 40000u, 60000u}) {
    std::string text;
    for (size_t i = 0; text.size() < n; ++i) text += "Công văn số " + std::to_string(i % 97) + "; ";
    text.resize(n);
    members.emplace_back("text-" + std::to_string(n) + ".txt", text);
    members.emplace_back("random-" + std::to_string(n) + ".bin", RandomBytes(n));
  }
  for (const auto& [name, data] : members) {
    ASSERT_TRUE(w->AddBytes(name, data, ZipMethod::kDeflate).ok()) << name;
  }
  ASSERT_TRUE(w->Finish().ok());
  std::string out;
  ASSERT_EQ(RunCommand("unzip -t " + ShellQuote(dir.file("sizes.zip")), &out), 0) << out;
  ASSERT_EQ(RunCommand("cd " + ShellQuote(dir.path()) + " && mkdir x && cd x && unzip -q ../sizes.zip",
                       &out), 0) << out;
  auto r = ZipReader::Open(dir.file("sizes.zip"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  for (const auto& [name, data] : members) {
    EXPECT_EQ(ReadTestFile(dir.file("x/" + name)), data) << name;
    const ZipEntry* e = r->Find(name);
    ASSERT_NE(e, nullptr) << name;
    auto got = r->ExtractToString(*e, 1 << 20);
    ASSERT_TRUE(got.has_value()) << name << ": " << got.error().message();
    EXPECT_EQ(*got, data) << name;
  }
}

TEST(ZipWriterTest, ReadArchiveMadeByInfoZipSucceeds) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "Công đoàn Bãi Cháy " + std::to_string(i) + "\n";
  WriteTestFile(dir.file("a.txt"), text);
  WriteTestFile(dir.file("b.bin"), RandomBytes(1000));
  std::string out;
  ASSERT_EQ(RunCommand("cd " + ShellQuote(dir.path()) + " && zip -q -D in.zip a.txt b.bin", &out),
            0) << out;
  auto r = ZipReader::Open(dir.file("in.zip"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_NE(r->Find("a.txt"), nullptr);
  EXPECT_EQ(r->Find("a.txt")->method, ZipMethod::kDeflate);
  EXPECT_EQ(*r->ExtractToString(*r->Find("a.txt"), 1 << 20), text);
  EXPECT_EQ(*r->ExtractToString(*r->Find("b.bin"), 1 << 20), ReadTestFile(dir.file("b.bin")));
}

TEST(ZipWriterTest, AddWithBadOrDuplicateNameFails) {
  TempDir dir;
  auto w = ZipWriter::Create(dir.file("a.zip"));
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->AddBytes("a.txt", "x").ok());
  EXPECT_EQ(w->AddBytes("a.txt", "y").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddBytes("A.TXT", "y").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddBytes("../evil", "y").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddBytes("/etc/passwd", "y").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddBytes("a\\b", "y").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddBytes("dir/", "").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->AddFile("b.bin", dir.file("missing")).code(), Code::kNotFound);
  ASSERT_TRUE(w->Finish().ok());
  auto r = ZipReader::Open(dir.file("a.zip"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->entries().size(), 1u);
}

TEST(ZipWriterTest, WriterDestroyedBeforeFinishLeavesNothing) {
  TempDir dir;
  {
    auto w = ZipWriter::Create(dir.file("a.zip"));
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->AddBytes("a.txt", "x").ok());
    EXPECT_EQ(ListDir(dir.path()).size(), 1u);  // the temporary file
  }
  EXPECT_TRUE(ListDir(dir.path()).empty());
}

// The memory sink (CreateInMemory) writes exactly what the file sink writes
// for the same calls and time: one layout, two sinks.
TEST(ZipWriterTest, InMemoryArchiveIsByteIdenticalToFileArchive) {
  TempDir dir;
  std::string big = RandomBytes(2 * 64 * 1024 + 5);  // AddFile patches its header afterwards
  WriteTestFile(dir.file("big.bin"), big);
  const std::string meta = "{\"subject\":\"Báo cáo tài chính\"}" + std::string(3000, 'y');
  const std::time_t mtime = 1796601600;  // 2026-12-07T00:00:00Z
  auto add = [&](ZipWriter& w) {
    ASSERT_TRUE(w.AddBytes("mimetype", "application/vnd.etsi.asic-s+zip").ok());
    ASSERT_TRUE(w.AddFile("document.bin", dir.file("big.bin")).ok());
    ASSERT_TRUE(w.AddBytes("META-INF/meta.json", meta, ZipMethod::kDeflate).ok());
    ASSERT_TRUE(w.AddBytes("META-INF/Tài liệu.txt", "x").ok());
  };
  {
    auto f = ZipWriter::Create(dir.file("file.zip"), mtime);
    ASSERT_TRUE(f.has_value()) << f.error().ToString();
    f->set_sync(false);
    add(*f);
    ASSERT_TRUE(f->Finish().ok());
    EXPECT_FALSE(f->in_memory());
    EXPECT_EQ(f->ReleaseBytes(), "");
  }
  ZipWriter m = ZipWriter::CreateInMemory(mtime);
  EXPECT_TRUE(m.in_memory());
  add(m);
  EXPECT_EQ(m.ReleaseBytes(), "") << "bytes handed out before Finish()";
  ASSERT_TRUE(m.Finish().ok());
  const std::string bytes = m.ReleaseBytes();
  EXPECT_EQ(m.ReleaseBytes(), "") << "the bytes are moved out once";
  const std::string from_file = ReadTestFile(dir.file("file.zip"));
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.size(), from_file.size());
  EXPECT_TRUE(bytes == from_file) << "memory and file sinks differ";
  EXPECT_EQ(ListDir(dir.path()).size(), 2u) << "the memory writer made a file";

  // Our reader (and Info-ZIP) accept the memory writer's archive.
  WriteTestFile(dir.file("memory.zip"), bytes);
  auto r = ZipReader::Open(dir.file("memory.zip"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->entries().size(), 4u);
  ASSERT_NE(r->Find("document.bin"), nullptr);
  EXPECT_TRUE(r->Check(*r->Find("document.bin")).ok());
  ASSERT_TRUE(r->ExtractToFile(*r->Find("document.bin"), dir.file("doc.out")).ok());
  EXPECT_EQ(ReadTestFile(dir.file("doc.out")), big);
  EXPECT_EQ(*r->ExtractToString(*r->Find("META-INF/meta.json"), 1 << 20), meta);
  std::string out;
  EXPECT_EQ(RunCommand("unzip -tq " + ShellQuote(dir.file("memory.zip")), &out), 0) << out;
}

TEST(ZipWriterTest, InMemoryWriterRefusesBadNamesAndUseAfterFinish) {
  ZipWriter m = ZipWriter::CreateInMemory();
  EXPECT_EQ(m.AddBytes("../evil", "x").code(), Code::kInvalidArgument);
  ASSERT_TRUE(m.AddBytes("a", "x").ok());
  EXPECT_EQ(m.AddBytes("A", "y").code(), Code::kInvalidArgument);  // duplicate, case folded
  EXPECT_EQ(m.AddFile("b", "/nonexistent/sealpost-zip-test").code(), Code::kNotFound);
  ASSERT_TRUE(m.Finish().ok());
  EXPECT_EQ(m.AddBytes("c", "z").code(), Code::kFailedPrecondition);
  EXPECT_EQ(m.Finish().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(m.ReleaseBytes().empty());
}

}  // namespace
}  // namespace sealpost
