// The bounded ZIP reader (base/zip.h) against a hand-made corpus of hostile
// archives, built byte by byte here: each is refused at Open() or at
// extraction, with a message naming the reason.
#include "base/zip.h"

#include <sys/stat.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::TempDir;
using testing::WriteTestFile;

void Put16(std::string& o, uint32_t v) {
  o.push_back(static_cast<char>(v & 0xff));
  o.push_back(static_cast<char>((v >> 8) & 0xff));
}
void Put32(std::string& o, uint32_t v) {
  Put16(o, v & 0xffff);
  Put16(o, v >> 16);
}

uint32_t Crc(std::string_view d) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(d.size())));
}

std::string RawDeflate(std::string_view plain) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, static_cast<uLong>(plain.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// One member of a hand-made archive; every header field can be overridden.
struct Member {
  std::string name;
  std::string stored;  // bytes in the file
  uint16_t method = 0;
  uint16_t flags = 0;
  uint32_t crc = 0;
  uint32_t csize = 0;
  uint32_t usize = 0;
  std::string central_extra;
  std::string local_extra;
  std::optional<std::string> local_name;
  std::optional<uint32_t> local_crc;
  std::optional<uint16_t> local_method;
  std::optional<uint32_t> offset;  // central header's local header offset
  bool write_local = true;         // false: only a central entry (points elsewhere)
};

Member Stored(std::string name, std::string data) {
  Member m;
  m.name = std::move(name);
  m.crc = Crc(data);
  m.csize = m.usize = static_cast<uint32_t>(data.size());
  m.stored = std::move(data);
  return m;
}

Member Deflated(std::string name, std::string_view plain) {
  Member m;
  m.name = std::move(name);
  m.method = 8;
  m.crc = Crc(plain);
  m.stored = RawDeflate(plain);
  m.csize = static_cast<uint32_t>(m.stored.size());
  m.usize = static_cast<uint32_t>(plain.size());
  return m;
}

struct Archive {
  std::vector<Member> members;
  std::string prefix;          // before the first member
  std::string before_end;      // between the central directory and the end record
  std::string trailing;        // after the end record
  std::string comment;         // the archive comment
  std::optional<uint16_t> count;
  std::optional<uint32_t> cd_size;
  std::optional<uint32_t> cd_offset;
  bool zip64_locator = false;

  std::string Build() const {
    std::string out = prefix;
    std::vector<uint32_t> offsets;
    for (const Member& m : members) {
      offsets.push_back(static_cast<uint32_t>(out.size()));
      if (!m.write_local) continue;
      std::string lname = m.local_name.value_or(m.name);
      Put32(out, 0x04034b50);
      Put16(out, 20);
      Put16(out, m.flags);
      Put16(out, m.local_method.value_or(m.method));
      Put16(out, 0);
      Put16(out, 0x21);
      Put32(out, m.local_crc.value_or(m.crc));
      Put32(out, m.csize);
      Put32(out, m.usize);
      Put16(out, static_cast<uint32_t>(lname.size()));
      Put16(out, static_cast<uint32_t>(m.local_extra.size()));
      out += lname + m.local_extra + m.stored;
    }
    uint32_t cd_off = static_cast<uint32_t>(out.size());
    std::string cd;
    for (size_t i = 0; i < members.size(); ++i) {
      const Member& m = members[i];
      Put32(cd, 0x02014b50);
      Put16(cd, 0x031e);
      Put16(cd, 20);
      Put16(cd, m.flags);
      Put16(cd, m.method);
      Put16(cd, 0);
      Put16(cd, 0x21);
      Put32(cd, m.crc);
      Put32(cd, m.csize);
      Put32(cd, m.usize);
      Put16(cd, static_cast<uint32_t>(m.name.size()));
      Put16(cd, static_cast<uint32_t>(m.central_extra.size()));
      Put16(cd, 0);
      Put16(cd, 0);
      Put16(cd, 0);
      Put32(cd, 0);
      Put32(cd, m.offset.value_or(offsets[i]));
      cd += m.name + m.central_extra;
    }
    out += cd + before_end;
    if (zip64_locator) {
      Put32(out, 0x07064b50);
      out += std::string(16, '\0');
    }
    Put32(out, 0x06054b50);
    Put16(out, 0);
    Put16(out, 0);
    uint16_t n = count.value_or(static_cast<uint16_t>(members.size()));
    Put16(out, n);
    Put16(out, n);
    Put32(out, cd_size.value_or(static_cast<uint32_t>(cd.size())));
    Put32(out, cd_offset.value_or(cd_off));
    Put16(out, static_cast<uint32_t>(comment.size()));
    return out + comment + trailing;
  }
};

class ZipReaderTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& bytes) {
    std::string path = dir_.file("t" + std::to_string(n_++) + ".zip");
    WriteTestFile(path, bytes);
    return path;
  }
  Result<ZipReader> Open(const Archive& a, const ZipLimits& limits = {}) {
    return ZipReader::Open(Write(a.Build()), limits);
  }
  // Expects Open to fail with a message containing `reason`.
  void ExpectRefused(const Archive& a, const std::string& reason, const ZipLimits& limits = {}) {
    auto r = Open(a, limits);
    ASSERT_FALSE(r.has_value()) << "accepted; expected: " << reason;
    EXPECT_EQ(r.error().code(), Code::kDataError) << r.error().ToString();
    EXPECT_NE(r.error().message().find(reason), std::string::npos)
        << "message: " << r.error().message() << "\nexpected: " << reason;
  }
  // Expects Open to succeed and extracting `name` to fail with `reason`,
  // leaving no output file.
  void ExpectExtractRefused(const Archive& a, const std::string& name, const std::string& reason) {
    auto r = Open(a);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    const ZipEntry* e = r->Find(name);
    ASSERT_NE(e, nullptr);
    auto s = r->ExtractToString(*e, 1u << 30);
    ASSERT_FALSE(s.has_value()) << "extracted; expected: " << reason;
    EXPECT_NE(s.error().message().find(reason), std::string::npos) << s.error().message();
    Status checked = r->Check(*e);  // the same reading, nothing kept
    EXPECT_FALSE(checked.ok()) << "checked; expected: " << reason;
    EXPECT_NE(checked.message().find(reason), std::string::npos) << checked.message();
    std::string out = dir_.file("extract.out");
    Status fs = r->ExtractToFile(*e, out);
    EXPECT_FALSE(fs.ok());
    struct stat st;
    EXPECT_NE(::stat(out.c_str(), &st), 0) << "partial output file left behind";
  }

  TempDir dir_;
  int n_ = 0;
};

TEST_F(ZipReaderTest, OpenWellFormedArchiveSucceeds) {
  Archive a;
  a.members = {Stored("mimetype", "application/vnd.etsi.asic-s+zip"),
               Deflated("META-INF/a.json", std::string(5000, 'a')),
               Stored("Tài liệu.txt", "xin chào")};
  a.members[2].flags = 1 << 11;
  auto r = Open(a);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->entries().size(), 3u);
  EXPECT_EQ(*r->ExtractToString(*r->Find("META-INF/a.json"), 10000), std::string(5000, 'a'));
  EXPECT_EQ(*r->ExtractToString(*r->Find("Tài liệu.txt"), 100), "xin chào");
}

TEST_F(ZipReaderTest, OpenWithTraversalNamesFails) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"../etc/passwd", "path traversal"},
      {"a/../../b", "path traversal"},
      {"/etc/passwd", "absolute"},
      {"a\\..\\b", "backslash"},
      {"C:/Windows/x", "colon"},
      {"a//b", "empty path component"},
      {"./a", "\".\" component"},
      {std::string("a\0b", 3), "NUL"},
      {"a\nb", "control character"},
      {"a\x7f", "control character"},
      {"", "empty member name"},
  };
  for (const auto& [name, reason] : cases) {
    SCOPED_TRACE(name);
    Archive a;
    a.members = {Stored(name, "x")};
    ExpectRefused(a, reason);
  }
}

TEST_F(ZipReaderTest, OpenWithNonUtf8NameFails) {
  Archive a;
  a.members = {Stored("caf\xe9.txt", "x")};  // Latin-1, no UTF-8 flag
  ExpectRefused(a, "UTF-8 flag");
  a.members[0].flags = 1 << 11;  // flag set, bytes still not UTF-8
  ExpectRefused(a, "not valid UTF-8");
  Archive c;
  c.members = {Stored("a\xc2\x85z", "x")};  // C1 control NEL, valid UTF-8
  c.members[0].flags = 1 << 11;
  ExpectRefused(c, "control character");
}

TEST_F(ZipReaderTest, OpenWithLongNameOrManyMembersFails) {
  Archive a;
  a.members = {Stored(std::string(300, 'n'), "x")};
  ExpectRefused(a, "longer than 255");
  Archive b;
  for (int i = 0; i < 5; ++i) b.members.push_back(Stored("m" + std::to_string(i), "x"));
  ZipLimits limits;
  limits.max_members = 4;
  ExpectRefused(b, "declares 5 members, at most 4", limits);
  // An end record that claims 65000 members (the directory is not there).
  Archive c;
  c.members = {Stored("a", "x")};
  c.count = 65000;
  ExpectRefused(c, "declares 65000 members");
}

TEST_F(ZipReaderTest, OpenWithDuplicateNamesFails) {
  Archive a;
  a.members = {Stored("a.txt", "1"), Stored("a.txt", "2")};
  ExpectRefused(a, "duplicate member name");
  Archive b;
  b.members = {Stored("META-INF/x", "1"), Stored("meta-inf/X", "2")};
  ExpectRefused(b, "duplicate member name");
  Archive c;
  c.members = {Stored("a", "1"), Stored("a/b", "2")};
  ExpectRefused(c, "is a file and also a directory");
}

TEST_F(ZipReaderTest, OpenWithUnsupportedFeaturesFailsNamingThem) {
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].flags = 1;
    ExpectRefused(a, "encrypted");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].method = a.members[0].local_method.emplace(99);
    ExpectRefused(a, "AES-encrypted");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].method = 12;  // bzip2
    ExpectRefused(a, "unknown compression method 12");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].flags = 1 << 3;
    ExpectRefused(a, "data descriptor");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].usize = a.members[0].csize = 0xffffffff;
    ExpectRefused(a, "zip64");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].central_extra = std::string("\x01\x00\x08\x00", 4) + std::string(8, '\0');
    ExpectRefused(a, "zip64");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.zip64_locator = true;
    ExpectRefused(a, "zip64");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].central_extra = std::string("\x55\x54\x09\x00", 4);  // record longer than field
    ExpectRefused(a, "malformed extra field");
  }
}

TEST_F(ZipReaderTest, OpenCompressionBombFails) {
  // 64 MiB of zeros deflate to ~64 KiB: the ratio is refused before inflating.
  Archive a;
  a.members = {Deflated("bomb", std::string(64u << 20, '\0'))};
  ExpectRefused(a, "compression bomb");
  // A declared size over the per-member limit.
  ZipLimits limits;
  limits.max_member_bytes = 1 << 20;
  Archive b;
  b.members = {Deflated("big", std::string(2u << 20, 'a'))};
  limits.max_ratio = 1u << 30;
  ExpectRefused(b, "more than the limit", limits);
  // Total of several members over the limit.
  ZipLimits total;
  total.max_total_bytes = 1000;
  Archive c;
  c.members = {Stored("a", std::string(600, 'a')), Stored("b", std::string(600, 'b'))};
  ExpectRefused(c, "members total more than 1000", total);
}

TEST_F(ZipReaderTest, ExtractInflatingBeyondDeclaredSizeFails) {
  // Declares 1000 bytes, inflates to 60 000: extraction stops at 1000.
  Archive a;
  a.members = {Deflated("lie", std::string(60000, 'z'))};
  a.members[0].usize = 1000;
  a.members[0].crc = Crc(std::string(1000, 'z'));
  a.members[0].local_crc = a.members[0].crc;
  ExpectExtractRefused(a, "lie", "inflates beyond its declared size");
}

TEST_F(ZipReaderTest, ExtractWithCrcMismatchFails) {
  Archive a;
  a.members = {Stored("a", "hello"), Deflated("b", std::string(3000, 'q'))};
  a.members[0].crc ^= 1;
  a.members[0].local_crc = a.members[0].crc;
  ExpectExtractRefused(a, "a", "CRC-32 mismatch");
  a.members[0].crc ^= 1;
  a.members[0].local_crc = a.members[0].crc;
  a.members[1].crc ^= 0x100;
  a.members[1].local_crc = a.members[1].crc;
  ExpectExtractRefused(a, "b", "CRC-32 mismatch");
}

TEST_F(ZipReaderTest, CheckPassesEveryMemberOfAWellFormedArchive) {
  Archive a;
  a.members = {Stored("a", "hello"), Deflated("b", std::string(3000, 'q'))};
  auto r = Open(a);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  for (const ZipEntry& e : r->entries()) EXPECT_TRUE(r->Check(e).ok()) << e.name;
}

TEST_F(ZipReaderTest, ExtractCorruptOrShortDeflateFails) {
  Archive a;
  a.members = {Deflated("b", std::string(3000, 'q'))};
  a.members[0].stored[0] = static_cast<char>(0xff);  // invalid block type
  ExpectExtractRefused(a, "b", "corrupt deflate data");
  Archive s;
  s.members = {Deflated("b", std::string(3000, 'q'))};
  s.members[0].usize = 4000;  // stream ends early
  s.members[0].crc = Crc(std::string(3000, 'q'));
  ExpectExtractRefused(s, "b", "its header declares 4000");
}

TEST_F(ZipReaderTest, OpenTruncatedArchiveFailsAtEveryLength) {
  Archive a;
  a.members = {Stored("mimetype", "application/vnd.etsi.asic-s+zip"),
               Deflated("b", std::string(3000, 'q'))};
  std::string full = a.Build();
  ASSERT_TRUE(ZipReader::Open(Write(full)).has_value());
  for (size_t len = 0; len < full.size(); ++len) {
    auto r = ZipReader::Open(Write(full.substr(0, len)));
    EXPECT_FALSE(r.has_value()) << "truncated to " << len << " bytes was accepted";
  }
  // Member data cut short in the middle, directory intact.
  std::string cut = full;
  cut.erase(50, 10);
  auto r = ZipReader::Open(Write(cut));
  ASSERT_FALSE(r.has_value());
}

TEST_F(ZipReaderTest, OpenWithOverlappingMembersFails) {
  // Member "b" (header and data) hides inside the data of member "a".
  Archive inner;
  inner.members = {Stored("b", "hidden")};
  std::string b_local = inner.Build().substr(0, 30 + 1 + 6);
  Archive a;
  a.members = {Stored("a", b_local)};
  Member b = Stored("b", "hidden");
  b.write_local = false;
  b.offset = 30 + 1;  // inside a's data
  a.members.push_back(b);
  ExpectRefused(a, "overlap");
}

TEST_F(ZipReaderTest, OpenWithHiddenOrTrailingBytesFails) {
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.trailing = "junk";
    ExpectRefused(a, "after the end of the archive");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.prefix = "#!/bin/sh\nexit 0\n";
    ExpectRefused(a, "unaccounted bytes before member");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.comment = "hidden in the comment";
    ExpectRefused(a, "archive comment");
  }
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.before_end = "hidden";
    ExpectRefused(a, "between the central directory and the end record");
  }
  {
    Archive a;
    a.members = {Stored("a", "x"), Stored("b", "y")};
    a.members[1].offset = 0;  // both entries point at a's header
    a.members[1].write_local = false;
    ExpectRefused(a, "does not match the central directory");
  }
}

TEST_F(ZipReaderTest, OpenWithLocalHeaderMismatchFails) {
  {
    Archive a;
    a.members = {Stored("a", "x")};
    a.members[0].local_crc = 1234;
    ExpectRefused(a, "(CRC-32)");
  }
  {
    Archive a;
    a.members = {Stored("a.txt", "x")};
    a.members[0].local_name = "b.txt";
    ExpectRefused(a, "(name)");
  }
  {
    Archive a;
    a.members = {Deflated("a", "xxxxxxxx")};
    a.members[0].local_method = 0;
    ExpectRefused(a, "(compression method)");
  }
  {
    Archive a;
    a.members = {Stored("a", "xyz")};
    a.members[0].csize = 2;
    ExpectRefused(a, "STORED with a compressed size");
  }
  {
    Archive a;
    a.members = {Stored("dir/", "xyz")};
    ExpectRefused(a, "directory entry with data");
  }
}

TEST_F(ZipReaderTest, OpenRandomlyCorruptedArchivesNeverCrashes) {
  Archive a;
  a.members = {Stored("mimetype", "application/vnd.etsi.asic-s+zip"),
               Deflated("META-INF/x.json", std::string(2000, 'j')), Stored("doc.pdf", "pdf")};
  std::string full = a.Build();
  std::mt19937 rng(20261128);
  int accepted = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string m = full;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<char>(rng());
    auto r = ZipReader::Open(Write(m));
    if (!r.has_value()) continue;
    ++accepted;
    for (const ZipEntry& e : r->entries()) (void)r->ExtractToString(e, 1 << 20);
  }
  SUCCEED() << accepted << " of 1500 corrupted archives opened";
}

}  // namespace
}  // namespace sealpost
