#include "base/zip.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <utility>

#include "base/json.h"
#include "base/utf8.h"

// For functions returning Status (SP_RETURN_IF_ERROR is for Result<T>).
#define ZIP_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::sealpost::Status zip_status__ = (expr);  \
    if (!zip_status__.ok()) return zip_status__; \
  } while (0)

namespace sealpost {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndSize = 22;
constexpr size_t kChunk = 64 * 1024;
constexpr uint16_t kFlagEncrypted = 1u << 0;
constexpr uint16_t kFlagDataDescriptor = 1u << 3;
constexpr uint16_t kFlagStrongEncryption = 1u << 6;
constexpr uint16_t kFlagUtf8 = 1u << 11;
constexpr uint16_t kFlagMaskedDirectory = 1u << 13;

std::string ErrnoText(int e) { return std::strerror(e); }

uint16_t Le16(std::string_view s, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(s[at]) |
                               (static_cast<unsigned char>(s[at + 1]) << 8));
}
uint32_t Le32(std::string_view s, size_t at) {
  return static_cast<uint32_t>(Le16(s, at)) | (static_cast<uint32_t>(Le16(s, at + 2)) << 16);
}
void Put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}
void Put32(std::string& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v & 0xffff));
  Put16(out, static_cast<uint16_t>(v >> 16));
}

// A member name quoted for messages (escaped, so hostile names print safely).
std::string Quote(std::string_view name) { return JsonString(name); }

Status PReadExact(int fd, std::string& out, size_t n, uint64_t offset, std::string_view what) {
  out.resize(n);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, out.data() + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string(what) + ": read failed: " + ErrnoText(errno));
    }
    if (r == 0) return Status::DataError(std::string(what) + ": truncated");
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

// Walks an extra field; refuses malformed records and zip64 (id 0x0001).
Status CheckExtra(std::string_view extra) {
  size_t p = 0;
  while (p + 4 <= extra.size()) {
    uint16_t id = Le16(extra, p);
    uint16_t len = Le16(extra, p + 2);
    if (p + 4 + len > extra.size()) return Status::DataError("malformed extra field");
    if (id == 0x0001) return Status::DataError("zip64 extra field (zip64 is not supported)");
    p += 4 + len;
  }
  if (p != extra.size()) return Status::DataError("malformed extra field");
  return Status::Ok();
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// zlib stream owned from the line that initialises it.
class Inflater {
 public:
  Inflater() { ok_ = inflateInit2(&z_, -MAX_WBITS) == Z_OK; }
  ~Inflater() { if (ok_) inflateEnd(&z_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  bool ok() const { return ok_; }
  z_stream* get() { return &z_; }
 private:
  z_stream z_{};
  bool ok_ = false;
};

class Deflater {
 public:
  // Level 9. The window (and hash table) fit the input: a member of a few
  // KiB needs no 32 KiB window, and zlib clears and allocates those tables
  // at every init (most of the cost of deflating a small member). Matches
  // never reach further back than the input, so the output is the same
  // kind of raw DEFLATE data; any inflater with a 32 KiB window reads it.
  explicit Deflater(size_t input_size) {
    int bits = 9;  // the smallest window zlib accepts for raw deflate
    while (bits < MAX_WBITS && (size_t{1} << bits) < input_size) ++bits;
    const int mem_level = std::min(8, std::max(1, bits - 7));
    ok_ = deflateInit2(&z_, 9, Z_DEFLATED, -bits, mem_level, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() { if (ok_) deflateEnd(&z_); }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  bool ok() const { return ok_; }
  z_stream* get() { return &z_; }
 private:
  z_stream z_{};
  bool ok_ = false;
};

uint32_t Crc(uint32_t crc, std::string_view data) {
  // zlib's crc32 takes a uInt length; feed large buffers in pieces.
  while (!data.empty()) {
    size_t n = std::min<size_t>(data.size(), 1u << 30);
    crc = static_cast<uint32_t>(
        crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(n)));
    data.remove_prefix(n);
  }
  return crc;
}

void DosTime(std::time_t t, uint16_t* time, uint16_t* date) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  if (tm.tm_year < 80) {  // DOS dates start in 1980
    *time = 0;
    *date = (1 << 5) | 1;
    return;
  }
  *time = static_cast<uint16_t>((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
  *date = static_cast<uint16_t>(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

Status SyncDirOf(const std::string& path) {
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::IoError(dir + ": cannot open directory: " + ErrnoText(errno));
  int rc = ::fsync(dfd);
  int e = errno;
  ::close(dfd);
  if (rc != 0) return Status::IoError(dir + ": fsync failed: " + ErrnoText(e));
  return Status::Ok();
}

}  // namespace

Status CheckZipName(std::string_view name, bool utf8_flag, uint32_t max_name_bytes) {
  if (name.empty()) return Status::DataError("empty member name");
  if (name.size() > max_name_bytes) {
    return Status::DataError("member name longer than " + std::to_string(max_name_bytes) +
                             " bytes");
  }
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0) return Status::DataError("member name contains NUL");
    if (u < 0x20 || u == 0x7f) return Status::DataError("member name contains a control character");
    if (c == '\\') return Status::DataError("member name contains a backslash");
    if (c == ':') return Status::DataError("member name contains a colon (drive letter or stream)");
  }
  if (!IsAscii(name)) {
    if (!utf8_flag) {
      return Status::DataError("member name is not ASCII and the UTF-8 flag (bit 11) is not set");
    }
    if (!IsValidUtf8(name)) return Status::DataError("member name is not valid UTF-8");
    if (!IsCleanUtf8Text(name)) return Status::DataError("member name contains a control character");
  }
  if (name.front() == '/') return Status::DataError("absolute member name");
  // Components: a trailing '/' marks a directory entry; no other empty component.
  std::string_view rest = name;
  if (rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return Status::DataError("member name is only \"/\"");
  size_t start = 0;
  while (start <= rest.size()) {
    size_t slash = rest.find('/', start);
    size_t end = slash == std::string_view::npos ? rest.size() : slash;
    std::string_view comp = rest.substr(start, end - start);
    if (comp.empty()) return Status::DataError("member name has an empty path component");
    if (comp == "..") return Status::DataError("member name contains \"..\" (path traversal)");
    if (comp == ".") return Status::DataError("member name contains a \".\" component");
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Status::Ok();
}

// ----------------------------------------------------------------------------
// Reader

ZipReader::ZipReader(ZipReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)),
      entries_(std::move(other.entries_)) {}

ZipReader& ZipReader::operator=(ZipReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    entries_ = std::move(other.entries_);
  }
  return *this;
}

ZipReader::~ZipReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<ZipReader> ZipReader::Open(const std::string& path, const ZipLimits& limits) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(Status::NotFound(path + ": cannot open: " + ErrnoText(errno)));
  ZipReader reader(fd, path);  // owns fd from here
  struct stat st;
  if (::fstat(fd, &st) != 0) return Err(Status::IoError(path + ": stat failed: " + ErrnoText(errno)));
  if (!S_ISREG(st.st_mode)) return Err(Status::DataError(path + ": not a regular file"));
  Status s = reader.Parse(static_cast<uint64_t>(st.st_size), limits);
  if (!s.ok()) return Err(s.WithContext(path));
  return reader;
}

Status ZipReader::Parse(uint64_t file_size, const ZipLimits& limits) {
  if (file_size > limits.max_archive_bytes) {
    return Status::DataError("archive is larger than " + std::to_string(limits.max_archive_bytes) +
                             " bytes");
  }
  if (file_size < kEndSize) return Status::DataError("not a ZIP file (too short)");
  size_t tail_len = static_cast<size_t>(std::min<uint64_t>(file_size, kEndSize + 0xffff));
  uint64_t tail_off = file_size - tail_len;
  std::string tail;
  ZIP_RETURN_IF_ERROR(PReadExact(fd_, tail, tail_len, tail_off, "end of central directory"));
  // The end record: the last signature whose comment ends exactly at the end
  // of the file. A signature whose comment is shorter means trailing data.
  std::optional<size_t> found;
  std::optional<size_t> trailing;
  for (size_t i = tail_len - kEndSize + 1; i-- > 0;) {
    if (Le32(tail, i) != kEndSig) continue;
    size_t comment = Le16(tail, i + 20);
    if (i + kEndSize + comment == tail_len) {
      found = i;
      break;
    }
    if (i + kEndSize + comment < tail_len && !trailing) trailing = tail_len - (i + kEndSize + comment);
  }
  if (!found) {
    if (trailing) {
      return Status::DataError(std::to_string(*trailing) +
                               " bytes of data after the end of the archive");
    }
    return Status::DataError("not a ZIP file (no end of central directory record)");
  }
  size_t e = *found;
  uint64_t end_off = tail_off + e;
  if (Le16(tail, e + 20) != 0) {
    return Status::DataError("archive comment of " + std::to_string(Le16(tail, e + 20)) +
                             " bytes (comments are not allowed: they can hide data)");
  }
  uint16_t disk = Le16(tail, e + 4), cd_disk = Le16(tail, e + 6);
  uint16_t count_disk = Le16(tail, e + 8), count = Le16(tail, e + 10);
  uint32_t cd_size = Le32(tail, e + 12), cd_off = Le32(tail, e + 16);
  if (count == 0xffff || count_disk == 0xffff || cd_size == 0xffffffff || cd_off == 0xffffffff ||
      (e >= 20 && Le32(tail, e - 20) == kZip64LocatorSig)) {
    return Status::DataError("zip64 archive (zip64 is not supported)");
  }
  if (disk != 0 || cd_disk != 0 || count_disk != count) {
    return Status::DataError("multi-disk archive (not supported)");
  }
  if (count > limits.max_members) {
    return Status::DataError("archive declares " + std::to_string(count) +
                             " members, at most " + std::to_string(limits.max_members) +
                             " are allowed");
  }
  if (cd_size > limits.max_directory_bytes) {
    return Status::DataError("central directory of " + std::to_string(cd_size) +
                             " bytes is larger than " +
                             std::to_string(limits.max_directory_bytes));
  }
  if (static_cast<uint64_t>(cd_off) + cd_size > end_off) {
    return Status::DataError("central directory runs past the end record (truncated?)");
  }
  if (static_cast<uint64_t>(cd_off) + cd_size < end_off) {
    return Status::DataError(std::to_string(end_off - cd_off - cd_size) +
                             " bytes between the central directory and the end record");
  }
  std::string cd;
  ZIP_RETURN_IF_ERROR(PReadExact(fd_, cd, cd_size, cd_off, "central directory"));

  std::set<std::string> folded;  // ASCII-lower-cased names, for duplicates
  std::set<std::string> files;   // folded names of non-directory members
  uint64_t total = 0;
  size_t pos = 0;
  entries_.reserve(count);
  for (uint32_t k = 0; k < count; ++k) {
    std::string where = "central directory entry " + std::to_string(k + 1);
    if (pos + kCentralHeaderSize > cd.size() || Le32(cd, pos) != kCentralSig) {
      return Status::DataError(where + ": malformed or truncated central directory");
    }
    ZipEntry ent;
    ent.flags = Le16(cd, pos + 8);
    uint16_t method = Le16(cd, pos + 10);
    ent.crc32 = Le32(cd, pos + 16);
    uint32_t csize = Le32(cd, pos + 20), usize = Le32(cd, pos + 24);
    uint16_t nlen = Le16(cd, pos + 28), elen = Le16(cd, pos + 30), clen = Le16(cd, pos + 32);
    uint16_t disk_start = Le16(cd, pos + 34);
    uint32_t lho = Le32(cd, pos + 42);
    if (pos + kCentralHeaderSize + nlen + elen + clen > cd.size()) {
      return Status::DataError(where + ": runs past the central directory");
    }
    if (nlen > limits.max_name_bytes) {
      return Status::DataError(where + ": member name longer than " +
                               std::to_string(limits.max_name_bytes) + " bytes");
    }
    ent.name.assign(cd, pos + kCentralHeaderSize, nlen);
    where = "member " + Quote(ent.name);
    if (Status ns = CheckZipName(ent.name, (ent.flags & kFlagUtf8) != 0, limits.max_name_bytes);
        !ns.ok()) {
      return ns.WithContext(where);
    }
    if (ent.flags & (kFlagEncrypted | kFlagStrongEncryption | kFlagMaskedDirectory)) {
      return Status::DataError(where + ": encrypted (not supported)");
    }
    if (ent.flags & kFlagDataDescriptor) {
      return Status::DataError(where + ": uses a data descriptor (flag bit 3; not supported)");
    }
    if (method == 99) return Status::DataError(where + ": AES-encrypted (not supported)");
    if (method != 0 && method != 8) {
      return Status::DataError(where + ": unknown compression method " + std::to_string(method) +
                               " (only STORED and DEFLATE are supported)");
    }
    ent.method = static_cast<ZipMethod>(method);
    if (csize == 0xffffffff || usize == 0xffffffff || lho == 0xffffffff || disk_start == 0xffff) {
      return Status::DataError(where + ": zip64 sizes or offsets (zip64 is not supported)");
    }
    if (disk_start != 0) return Status::DataError(where + ": on another disk (not supported)");
    if (clen != 0) return Status::DataError(where + ": has a file comment (not allowed)");
    if (elen > limits.max_extra_bytes) {
      return Status::DataError(where + ": extra field longer than " +
                               std::to_string(limits.max_extra_bytes) + " bytes");
    }
    if (Status xs = CheckExtra(std::string_view(cd).substr(pos + kCentralHeaderSize + nlen, elen));
        !xs.ok()) {
      return xs.WithContext(where);
    }
    ent.compressed_size = csize;
    ent.size = usize;
    ent.header_offset = lho;
    if (usize > limits.max_member_bytes) {
      return Status::DataError(where + ": " + std::to_string(usize) +
                               " bytes uncompressed, more than the limit of " +
                               std::to_string(limits.max_member_bytes));
    }
    total += usize;
    if (total > limits.max_total_bytes) {
      return Status::DataError(where + ": members total more than " +
                               std::to_string(limits.max_total_bytes) + " bytes uncompressed");
    }
    if (ent.method == ZipMethod::kStored && csize != usize) {
      return Status::DataError(where + ": STORED with a compressed size (" + std::to_string(csize) +
                               ") other than its size (" + std::to_string(usize) + ")");
    }
    if (ent.method == ZipMethod::kDeflate && usize > limits.ratio_floor_bytes &&
        usize / std::max<uint64_t>(csize, 1) >= limits.max_ratio) {
      return Status::DataError(where + ": compression ratio " + std::to_string(usize) + ":" +
                               std::to_string(csize) + " exceeds " +
                               std::to_string(limits.max_ratio) + ":1 (compression bomb?)");
    }
    if (ent.is_directory() && (usize != 0 || csize != 0)) {
      return Status::DataError(where + ": directory entry with data");
    }
    std::string key = AsciiLower(ent.name.back() == '/' ? std::string_view(ent.name).substr(
                                                               0, ent.name.size() - 1)
                                                         : std::string_view(ent.name));
    if (!folded.insert(key).second) {
      return Status::DataError(where + ": duplicate member name");
    }
    if (!ent.is_directory()) files.insert(key);
    pos += kCentralHeaderSize + nlen + elen + clen;
    entries_.push_back(std::move(ent));
  }
  if (pos != cd.size()) {
    return Status::DataError(std::to_string(cd.size() - pos) +
                             " unaccounted bytes at the end of the central directory");
  }
  // A file may not also be a directory of another member ("a" and "a/b").
  for (const std::string& key : folded) {
    for (size_t slash = key.find('/'); slash != std::string::npos; slash = key.find('/', slash + 1)) {
      if (files.count(key.substr(0, slash))) {
        return Status::DataError("member " + Quote(key.substr(0, slash)) +
                                 " is a file and also a directory of " + Quote(key));
      }
    }
  }

  // Local headers must repeat the central directory.
  for (ZipEntry& ent : entries_) {
    std::string where = "member " + Quote(ent.name);
    if (ent.header_offset + kLocalHeaderSize + ent.name.size() > cd_off) {
      return Status::DataError(where + ": local header lies beyond the members");
    }
    std::string lh;
    ZIP_RETURN_IF_ERROR(
        PReadExact(fd_, lh, kLocalHeaderSize + ent.name.size(), ent.header_offset, where));
    if (Le32(lh, 0) != kLocalSig) return Status::DataError(where + ": no local header at its offset");
    const char* field = nullptr;
    if (Le16(lh, 6) != ent.flags) field = "flags";
    else if (Le16(lh, 8) != static_cast<uint16_t>(ent.method)) field = "compression method";
    else if (Le32(lh, 14) != ent.crc32) field = "CRC-32";
    else if (Le32(lh, 18) != ent.compressed_size) field = "compressed size";
    else if (Le32(lh, 22) != ent.size) field = "size";
    else if (Le16(lh, 26) != ent.name.size() ||
             std::string_view(lh).substr(kLocalHeaderSize) != ent.name) field = "name";
    if (field) {
      return Status::DataError(where + ": local header does not match the central directory (" +
                               field + ")");
    }
    ent.local_extra_size = Le16(lh, 28);
    if (ent.local_extra_size > limits.max_extra_bytes) {
      return Status::DataError(where + ": local extra field longer than " +
                               std::to_string(limits.max_extra_bytes) + " bytes");
    }
    ent.data_offset = ent.header_offset + kLocalHeaderSize + ent.name.size() + ent.local_extra_size;
    if (ent.data_offset + ent.compressed_size > cd_off) {
      return Status::DataError(where + ": data runs into the central directory (truncated?)");
    }
    if (ent.local_extra_size > 0) {
      std::string extra;
      ZIP_RETURN_IF_ERROR(PReadExact(fd_, extra, ent.local_extra_size,
                                    ent.header_offset + kLocalHeaderSize + ent.name.size(), where));
      if (Status xs = CheckExtra(extra); !xs.ok()) return xs.WithContext(where + " (local)");
    }
  }
  // Members and directory tile the file: no overlap, no gap, nothing hidden.
  std::vector<const ZipEntry*> by_offset;
  for (const ZipEntry& ent : entries_) by_offset.push_back(&ent);
  std::sort(by_offset.begin(), by_offset.end(), [](const ZipEntry* a, const ZipEntry* b) {
    return a->header_offset < b->header_offset;
  });
  uint64_t expected = 0;
  const ZipEntry* prev = nullptr;
  for (const ZipEntry* ent : by_offset) {
    if (ent->header_offset < expected) {
      return Status::DataError("members " + Quote(prev->name) + " and " + Quote(ent->name) +
                               " overlap");
    }
    if (ent->header_offset > expected) {
      return Status::DataError(std::to_string(ent->header_offset - expected) +
                               " unaccounted bytes before member " + Quote(ent->name));
    }
    expected = ent->data_offset + ent->compressed_size;
    prev = ent;
  }
  if (expected != cd_off) {
    return Status::DataError(std::to_string(cd_off - expected) +
                             " unaccounted bytes before the central directory");
  }
  return Status::Ok();
}

const ZipEntry* ZipReader::Find(std::string_view name) const {
  for (const ZipEntry& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

Status ZipReader::Stream(const ZipEntry& entry,
                         const std::function<Status(std::string_view)>& sink) const {
  const std::string where = "member " + Quote(entry.name);
  uint32_t crc = Crc(0, {});
  uint64_t produced = 0;
  uint64_t remaining = entry.compressed_size;
  uint64_t offset = entry.data_offset;
  std::string in;
  if (entry.method == ZipMethod::kStored) {
    while (remaining > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, kChunk));
      ZIP_RETURN_IF_ERROR(PReadExact(fd_, in, n, offset, where));
      crc = Crc(crc, in);
      produced += n;
      ZIP_RETURN_IF_ERROR(sink(in));
      remaining -= n;
      offset += n;
    }
  } else {
    Inflater inf;
    if (!inf.ok()) return Status::Internal("zlib inflateInit2 failed");
    z_stream* z = inf.get();
    std::string out(kChunk, '\0');
    bool ended = false;
    while (!ended) {
      if (z->avail_in == 0 && remaining > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, kChunk));
        ZIP_RETURN_IF_ERROR(PReadExact(fd_, in, n, offset, where));
        remaining -= n;
        offset += n;
        z->next_in = reinterpret_cast<Bytef*>(in.data());
        z->avail_in = static_cast<uInt>(n);
      }
      // Room for at most one byte past the declaration: enough to notice a
      // bomb without ever producing more.
      uint64_t room = std::min<uint64_t>(kChunk, entry.size - produced + 1);
      z->next_out = reinterpret_cast<Bytef*>(out.data());
      z->avail_out = static_cast<uInt>(room);
      int rc = inflate(z, Z_NO_FLUSH);
      size_t got = static_cast<size_t>(room - z->avail_out);
      if (rc == Z_STREAM_END) {
        ended = true;
      } else if (rc == Z_BUF_ERROR) {
        if (got == 0 && z->avail_in == 0 && remaining == 0) {
          return Status::DataError(where + ": deflate data is truncated");
        }
      } else if (rc != Z_OK) {
        return Status::DataError(where + ": corrupt deflate data" +
                                 (z->msg ? std::string(" (") + z->msg + ")" : ""));
      }
      if (produced + got > entry.size) {
        return Status::DataError(where + ": inflates beyond its declared size of " +
                                 std::to_string(entry.size) + " bytes (compression bomb?)");
      }
      produced += got;
      std::string_view chunk(out.data(), got);
      crc = Crc(crc, chunk);
      if (got > 0) ZIP_RETURN_IF_ERROR(sink(chunk));
    }
    if (z->avail_in != 0 || remaining != 0) {
      return Status::DataError(where + ": data after the end of the deflate stream");
    }
  }
  if (produced != entry.size) {
    return Status::DataError(where + ": holds " + std::to_string(produced) +
                             " bytes, its header declares " + std::to_string(entry.size));
  }
  if (crc != entry.crc32) return Status::DataError(where + ": CRC-32 mismatch (corrupt data)");
  return Status::Ok();
}

Result<std::string> ZipReader::ExtractToString(const ZipEntry& entry, uint64_t max_bytes) const {
  if (entry.size > max_bytes) {
    return Err(Status::DataError(path_ + ": member " + Quote(entry.name) + " has " +
                                 std::to_string(entry.size) + " bytes, at most " +
                                 std::to_string(max_bytes) + " are allowed"));
  }
  std::string out;
  out.reserve(static_cast<size_t>(entry.size));
  Status s = Stream(entry, [&](std::string_view chunk) {
    out.append(chunk);
    return Status::Ok();
  });
  if (!s.ok()) return Err(s.WithContext(path_));
  return out;
}

Status ZipReader::ExtractToFile(const ZipEntry& entry, const std::string& path,
                                const std::function<void(std::string_view)>& observer) const {
  int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) return Status::IoError(path + ": cannot create: " + ErrnoText(errno));
  Status s = Stream(entry, [&](std::string_view chunk) {
    if (observer) observer(chunk);
    while (!chunk.empty()) {
      ssize_t w = ::write(out, chunk.data(), chunk.size());
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::IoError(path + ": write failed: " + ErrnoText(errno));
      }
      chunk.remove_prefix(static_cast<size_t>(w));
    }
    return Status::Ok();
  });
  if (::close(out) != 0 && s.ok()) s = Status::IoError(path + ": close failed: " + ErrnoText(errno));
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s.code() == Code::kIoError ? s : s.WithContext(path_);
  }
  return Status::Ok();
}

Status ZipReader::Check(const ZipEntry& entry) const {
  Status s = Stream(entry, [](std::string_view) { return Status::Ok(); });
  return s.ok() ? s : s.WithContext(path_);
}

// ----------------------------------------------------------------------------
// Writer

Result<ZipWriter> ZipWriter::Create(const std::string& path, std::optional<std::time_t> mtime) {
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return Err(Status::IoError(path + ": cannot create a temporary file: " + ErrnoText(errno)));
  uint16_t t = 0, d = 0;
  DosTime(mtime.value_or(std::time(nullptr)), &t, &d);
  ZipWriter w(fd, path, tmp, t, d);  // owns fd and the temporary file from here
  if (::fchmod(fd, 0644) != 0) {
    return Err(Status::IoError(tmp + ": chmod failed: " + ErrnoText(errno)));
  }
  return w;
}

ZipWriter ZipWriter::CreateInMemory(std::optional<std::time_t> mtime) {
  uint16_t t = 0, d = 0;
  DosTime(mtime.value_or(std::time(nullptr)), &t, &d);
  ZipWriter w(-1, "(zip in memory)", "", t, d);
  w.memory_ = true;
  return w;
}

ZipWriter::ZipWriter(ZipWriter&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)),
      tmp_path_(std::exchange(o.tmp_path_, std::string())), dos_time_(o.dos_time_),
      dos_date_(o.dos_date_), offset_(o.offset_), written_(std::move(o.written_)),
      failed_(o.failed_), sync_(o.sync_), memory_(o.memory_), finished_(o.finished_),
      mem_(std::move(o.mem_)) {
  o.failed_ = true;
}

ZipWriter& ZipWriter::operator=(ZipWriter&& o) noexcept {
  if (this != &o) {
    Abandon();
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
    tmp_path_ = std::exchange(o.tmp_path_, std::string());
    dos_time_ = o.dos_time_;
    dos_date_ = o.dos_date_;
    offset_ = o.offset_;
    written_ = std::move(o.written_);
    failed_ = o.failed_;
    sync_ = o.sync_;
    memory_ = o.memory_;
    finished_ = o.finished_;
    mem_ = std::move(o.mem_);
    o.failed_ = true;
  }
  return *this;
}

ZipWriter::~ZipWriter() { Abandon(); }

void ZipWriter::Abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
  if (!finished_) mem_.clear();
  failed_ = true;
}

std::string ZipWriter::ReleaseBytes() {
  if (!memory_ || !finished_) return {};
  return std::exchange(mem_, std::string());
}

Status ZipWriter::CheckNewName(std::string_view name) const {
  if (!usable()) return Status::FailedPrecondition(path_ + ": zip writer is not usable");
  if (Status s = CheckZipName(name, true, 255); !s.ok()) {
    return Status::InvalidArgument(path_ + ": " + Quote(name) + ": " + s.message());
  }
  if (!name.empty() && name.back() == '/') {
    return Status::InvalidArgument(path_ + ": " + Quote(name) + ": directory entries are not written");
  }
  for (const Written& w : written_) {
    if (AsciiLower(w.name) == AsciiLower(name)) {
      return Status::InvalidArgument(path_ + ": duplicate member name " + Quote(name));
    }
  }
  if (written_.size() >= 0xfffe) return Status::InvalidArgument(path_ + ": too many members");
  return Status::Ok();
}

Status ZipWriter::WriteAll(std::string_view data) {
  if (memory_) {
    mem_.append(data);
    offset_ += data.size();
    return Status::Ok();
  }
  while (!data.empty()) {
    ssize_t w = ::write(fd_, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      Status s = Status::IoError(tmp_path_ + ": write failed: " + ErrnoText(errno));
      Abandon();
      return s;
    }
    data.remove_prefix(static_cast<size_t>(w));
    offset_ += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

Status ZipWriter::PWriteAll(std::string_view data, uint64_t offset) {
  if (memory_) {
    if (offset > mem_.size() || data.size() > mem_.size() - offset) {
      Abandon();
      return Status::Internal(path_ + ": patch beyond the written bytes");
    }
    mem_.replace(static_cast<size_t>(offset), data.size(), data);
    return Status::Ok();
  }
  while (!data.empty()) {
    ssize_t w = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      Status s = Status::IoError(tmp_path_ + ": write failed: " + ErrnoText(errno));
      Abandon();
      return s;
    }
    data.remove_prefix(static_cast<size_t>(w));
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

std::string ZipWriter::LocalHeader(std::string_view name, ZipMethod method, uint32_t crc,
                                   uint32_t csize, uint32_t size) const {
  std::string h;
  Put32(h, kLocalSig);
  Put16(h, method == ZipMethod::kDeflate ? 20 : 10);
  Put16(h, IsAscii(name) ? 0 : kFlagUtf8);
  Put16(h, static_cast<uint16_t>(method));
  Put16(h, dos_time_);
  Put16(h, dos_date_);
  Put32(h, crc);
  Put32(h, csize);
  Put32(h, size);
  Put16(h, static_cast<uint16_t>(name.size()));
  Put16(h, 0);  // no extra field (ASiC wants none on "mimetype"; we write none at all)
  h.append(name);
  return h;
}

Status ZipWriter::AddBytes(std::string_view name, std::string_view data, ZipMethod method) {
  ZIP_RETURN_IF_ERROR(CheckNewName(name));
  if (data.size() >= 0xffffffffull) {
    return Status::InvalidArgument(path_ + ": member " + Quote(name) + " is 4 GiB or larger");
  }
  uint32_t crc = Crc(Crc(0, {}), data);
  std::string compressed;
  std::string_view stored = data;
  if (method == ZipMethod::kDeflate) {
    Deflater def(data.size());
    if (!def.ok()) return Status::Internal("zlib deflateInit2 failed");
    z_stream* z = def.get();
    compressed.resize(deflateBound(z, static_cast<uLong>(data.size())));
    z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z->avail_in = static_cast<uInt>(data.size());
    z->next_out = reinterpret_cast<Bytef*>(compressed.data());
    z->avail_out = static_cast<uInt>(compressed.size());
    if (deflate(z, Z_FINISH) != Z_STREAM_END) return Status::Internal("zlib deflate failed");
    compressed.resize(z->total_out);
    stored = compressed;
  }
  uint64_t start = offset_;
  std::string header = LocalHeader(name, method, crc, static_cast<uint32_t>(stored.size()),
                                   static_cast<uint32_t>(data.size()));
  if (start + header.size() + stored.size() >= 0xffffffffull) {
    return Status::InvalidArgument(path_ + ": archive would reach 4 GiB (zip64 is not written)");
  }
  ZIP_RETURN_IF_ERROR(WriteAll(header));
  ZIP_RETURN_IF_ERROR(WriteAll(stored));
  written_.push_back(Written{std::string(name), method, crc, static_cast<uint32_t>(stored.size()),
                             static_cast<uint32_t>(data.size()), static_cast<uint32_t>(start)});
  return Status::Ok();
}

Status ZipWriter::AddFile(std::string_view name, const std::string& source_path,
                          const std::function<void(std::string_view)>& observer) {
  ZIP_RETURN_IF_ERROR(CheckNewName(name));
  int in = ::open(source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::NotFound(source_path + ": cannot open: " + ErrnoText(errno));
  struct InCloser {
    int fd;
    ~InCloser() { ::close(fd); }
  } closer{in};
  struct stat st;
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::NotFound(source_path + ": not a regular file");
  }
  uint64_t start = offset_;
  std::string header = LocalHeader(name, ZipMethod::kStored, 0, 0, 0);
  if (start + header.size() + static_cast<uint64_t>(st.st_size) >= 0xffffffffull) {
    return Status::InvalidArgument(source_path + ": too large for a zip without zip64 (4 GiB)");
  }
  ZIP_RETURN_IF_ERROR(WriteAll(header));
  uint32_t crc = Crc(0, {});
  uint64_t size = 0;
  std::string buf(kChunk, '\0');
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::NotFound(source_path + ": read failed: " + ErrnoText(errno));
      Abandon();
      return s;
    }
    if (n == 0) break;
    std::string_view chunk(buf.data(), static_cast<size_t>(n));
    size += chunk.size();
    if (start + header.size() + size >= 0xffffffffull) {
      Abandon();
      return Status::InvalidArgument(source_path + ": grew past 4 GiB while being read");
    }
    crc = Crc(crc, chunk);
    if (observer) observer(chunk);
    ZIP_RETURN_IF_ERROR(WriteAll(chunk));
  }
  // Patch CRC-32 and sizes into the local header (offset 14: crc, csize, size).
  std::string patch;
  Put32(patch, crc);
  Put32(patch, static_cast<uint32_t>(size));
  Put32(patch, static_cast<uint32_t>(size));
  ZIP_RETURN_IF_ERROR(PWriteAll(patch, start + 14));
  written_.push_back(Written{std::string(name), ZipMethod::kStored, crc,
                             static_cast<uint32_t>(size), static_cast<uint32_t>(size),
                             static_cast<uint32_t>(start)});
  return Status::Ok();
}

Status ZipWriter::Finish() {
  if (!usable()) return Status::FailedPrecondition(path_ + ": zip writer is not usable");
  uint64_t cd_off = offset_;
  std::string cd;
  for (const Written& w : written_) {
    Put32(cd, kCentralSig);
    Put16(cd, (3 << 8) | 30);  // made by: UNIX, spec 3.0 (external attributes are mode bits)
    Put16(cd, w.method == ZipMethod::kDeflate ? 20 : 10);
    Put16(cd, IsAscii(w.name) ? 0 : kFlagUtf8);
    Put16(cd, static_cast<uint16_t>(w.method));
    Put16(cd, dos_time_);
    Put16(cd, dos_date_);
    Put32(cd, w.crc32);
    Put32(cd, w.compressed_size);
    Put32(cd, w.size);
    Put16(cd, static_cast<uint16_t>(w.name.size()));
    Put16(cd, 0);  // extra
    Put16(cd, 0);  // comment
    Put16(cd, 0);  // disk
    Put16(cd, 0);  // internal attributes
    Put32(cd, 0100644u << 16);  // regular file, rw-r--r--
    Put32(cd, w.offset);
    cd.append(w.name);
  }
  if (cd_off + cd.size() + kEndSize >= 0xffffffffull) {
    Abandon();
    return Status::InvalidArgument(path_ + ": archive would reach 4 GiB (zip64 is not written)");
  }
  std::string end;
  Put32(end, kEndSig);
  Put16(end, 0);
  Put16(end, 0);
  Put16(end, static_cast<uint16_t>(written_.size()));
  Put16(end, static_cast<uint16_t>(written_.size()));
  Put32(end, static_cast<uint32_t>(cd.size()));
  Put32(end, static_cast<uint32_t>(cd_off));
  Put16(end, 0);
  ZIP_RETURN_IF_ERROR(WriteAll(cd));
  ZIP_RETURN_IF_ERROR(WriteAll(end));
  if (memory_) {
    finished_ = true;
    failed_ = true;  // finished: no more members
    return Status::Ok();
  }
  if (sync_ && ::fsync(fd_) != 0) {
    Status s = Status::IoError(tmp_path_ + ": fsync failed: " + ErrnoText(errno));
    Abandon();
    return s;
  }
  int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    Status s = Status::IoError(tmp_path_ + ": close failed: " + ErrnoText(errno));
    Abandon();
    return s;
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    Status s = Status::IoError(path_ + ": rename failed: " + ErrnoText(errno));
    Abandon();
    return s;
  }
  tmp_path_.clear();
  finished_ = true;
  failed_ = true;  // finished: no more members
  return sync_ ? SyncDirOf(path_) : Status::Ok();
}

}  // namespace sealpost
