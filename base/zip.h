// A bounded ZIP reader and a streaming ZIP writer (PKWARE APPNOTE 6.3, the
// subset without zip64, encryption or data descriptors), for the ASiC
// bundles of crypto/bundle.h. See docs/bundle.md.
//
// The reader trusts nothing in the file. ZipReader::Open() parses the whole
// central directory up front, checks every local header against it and
// refuses, with one message naming the member and the rule:
//  - zip64 (markers in the end record, sizes, offsets or a zip64 extra field),
//    encryption (flag bits 0/6), data descriptors (flag bit 3), compression
//    methods other than STORED (0) and DEFLATE (8), multi-disk archives;
//  - names that are empty, too long, absolute ("/x", "C:x"), contain "..",
//    "." or empty components, a backslash, NUL, control characters or a
//    colon, are not ASCII without the UTF-8 flag (bit 11) or not valid UTF-8
//    with it; duplicate names (also when they differ only in ASCII case) and
//    a file name used as a directory of another member;
//  - more members, longer names, larger members, a larger total or a higher
//    compression ratio than ZipLimits allow;
//  - archive or file comments (they can hide data; we never write any);
//  - a local header that differs from its central directory entry;
//    members that overlap, bytes before the first member, between members,
//    between the last member and the central directory or after the end
//    record (the members and the directory must tile the file exactly).
// Extraction streams (64 KiB at a time) and checks the CRC-32 and the exact
// declared size: DEFLATE data is inflated only up to the declared size, so a
// compression bomb stops at its declaration (and the declaration is bounded).
//
// The writer creates a temporary file beside the target, streams members into
// it (a file member is read 64 KiB at a time, its CRC-32 computed on the way,
// and its local header patched afterwards), and Finish() writes the central
// directory, fsyncs and renames it into place. A writer destroyed before
// Finish() removes its temporary file: a failed build leaves nothing behind.
// A writer made by CreateInMemory() writes the same bytes into a string
// instead (one code path for the layout: only the sink differs), handed over
// by ReleaseBytes() after Finish(); it touches no file system except to read
// AddFile()'s source.
//
// Thread-safety: a ZipReader may be used from several threads (extraction
// uses pread on a read-only descriptor); a ZipWriter by one thread at a time.
#ifndef SEALPOST_BASE_ZIP_H_
#define SEALPOST_BASE_ZIP_H_

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sealpost {

enum class ZipMethod : uint16_t { kStored = 0, kDeflate = 8 };

// Bounds for ZipReader. The defaults suit a bundle: one large document and a
// few small metadata files.
struct ZipLimits {
  uint64_t max_archive_bytes = 4ull << 30;       // the zip file itself
  uint32_t max_members = 64;
  uint32_t max_name_bytes = 255;
  uint64_t max_member_bytes = (4ull << 30) - 1;  // uncompressed, per member
  uint64_t max_total_bytes = 4ull << 30;         // uncompressed, all members
  uint32_t max_extra_bytes = 1024;               // extra field, per header
  uint64_t max_directory_bytes = 1u << 20;       // the central directory
  // DEFLATE members: uncompressed / compressed at most this, once the
  // uncompressed size exceeds ratio_floor_bytes (tiny files compress well).
  uint32_t max_ratio = 100;
  uint64_t ratio_floor_bytes = 64 * 1024;
};

// One member as the central directory (checked against the local header)
// declares it.
struct ZipEntry {
  std::string name;          // UTF-8, validated as described above
  ZipMethod method = ZipMethod::kStored;
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;          // uncompressed
  uint64_t header_offset = 0; // local header
  uint64_t data_offset = 0;   // first byte of the (compressed) data
  uint16_t local_extra_size = 0;
  bool is_directory() const { return !name.empty() && name.back() == '/'; }
};

// Checks one member name against the rules above (shared by reader and
// writer). DataError naming the rule; `utf8_flag` is general purpose bit 11.
Status CheckZipName(std::string_view name, bool utf8_flag, uint32_t max_name_bytes);

class ZipReader {
 public:
  // Opens and fully checks the archive at `path`. NotFound if it cannot be
  // opened, DataError (naming `path`, the member and the rule) if it is not a
  // ZIP this reader accepts.
  static Result<ZipReader> Open(const std::string& path, const ZipLimits& limits = {});

  ZipReader(ZipReader&& other) noexcept;
  ZipReader& operator=(ZipReader&& other) noexcept;
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  ~ZipReader();

  // Members in central directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The member called `name`, or null.
  const ZipEntry* Find(std::string_view name) const;

  // Extracts `entry` (one of entries()) into memory. DataError if its size
  // exceeds `max_bytes`, if the data is corrupt, inflates to another size
  // than declared or fails the CRC check.
  Result<std::string> ExtractToString(const ZipEntry& entry, uint64_t max_bytes) const;

  // Streams `entry` into a new file at `path` (created exclusively, mode
  // 0600). On any error the file is removed. `observer`, if set, sees every
  // uncompressed chunk in order (e.g. to digest it on the way).
  Status ExtractToFile(const ZipEntry& entry, const std::string& path,
                       const std::function<void(std::string_view)>& observer = {}) const;

  // Reads `entry` through without keeping it: OK when its data inflates to
  // the declared size with the declared CRC-32, DataError (naming the
  // archive and the member) otherwise. Constant memory.
  Status Check(const ZipEntry& entry) const;

  const std::string& path() const { return path_; }

 private:
  ZipReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  Status Parse(uint64_t file_size, const ZipLimits& limits);
  // Calls `sink` with each uncompressed chunk; stops on the first error.
  Status Stream(const ZipEntry& entry, const std::function<Status(std::string_view)>& sink) const;

  int fd_ = -1;
  std::string path_;
  std::vector<ZipEntry> entries_;
};

class ZipWriter {
 public:
  // Starts writing the archive that Finish() will put at `path` (which must
  // not be inside a directory that disappears meanwhile). `mtime` is stored
  // as every member's DOS time (default: now). IoError if the temporary file
  // cannot be created.
  static Result<ZipWriter> Create(const std::string& path,
                                  std::optional<std::time_t> mtime = std::nullopt);

  // Starts writing an archive into memory: the same bytes Create() would
  // put in a file for the same calls (and `mtime`). The whole archive is
  // held, so the caller bounds what it adds (the daemon: small bundles).
  static ZipWriter CreateInMemory(std::optional<std::time_t> mtime = std::nullopt);

  ZipWriter(ZipWriter&& other) noexcept;
  ZipWriter& operator=(ZipWriter&& other) noexcept;
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;
  ~ZipWriter();  // removes the temporary file unless Finish() succeeded

  // Adds a member from memory, STORED or DEFLATE (raw deflate, level 9).
  // InvalidArgument for a bad or duplicate name; no extra field is written.
  Status AddBytes(std::string_view name, std::string_view data,
                  ZipMethod method = ZipMethod::kStored);

  // Adds a STORED member read from the file at `source_path`, 64 KiB at a
  // time (constant memory). `observer`, if set, sees every chunk in order.
  // NotFound if the file cannot be read; InvalidArgument if it is 4 GiB or
  // larger (no zip64).
  Status AddFile(std::string_view name, const std::string& source_path,
                 const std::function<void(std::string_view)>& observer = {});

  // Whether Finish() syncs the file and its directory (default: yes).
  // Without: the file is complete when it appears under its name (rename),
  // but a power loss may leave it missing, empty or with zeroed blocks; for
  // files that can be made again (the daemon's bundles).
  void set_sync(bool sync) { sync_ = sync; }

  // Writes the central directory and the end record, fsyncs (set_sync),
  // renames into place and fsyncs the directory (set_sync). After an error the writer is unusable
  // and its temporary file is removed. In memory: completes the bytes.
  Status Finish();

  // The archive of an in-memory writer after a successful Finish() (moved
  // out: a second call returns ""). "" for a file writer or before Finish().
  std::string ReleaseBytes();

  bool in_memory() const { return memory_; }

 private:
  ZipWriter(int fd, std::string path, std::string tmp_path, uint16_t dos_time, uint16_t dos_date)
      : fd_(fd), path_(std::move(path)), tmp_path_(std::move(tmp_path)), dos_time_(dos_time),
        dos_date_(dos_date) {}
  struct Written {
    std::string name;
    ZipMethod method;
    uint32_t crc32;
    uint32_t compressed_size;
    uint32_t size;
    uint32_t offset;
  };
  bool usable() const { return !failed_ && (memory_ || fd_ >= 0); }
  Status CheckNewName(std::string_view name) const;
  Status WriteAll(std::string_view data);
  Status PWriteAll(std::string_view data, uint64_t offset);
  std::string LocalHeader(std::string_view name, ZipMethod method, uint32_t crc,
                          uint32_t csize, uint32_t size) const;
  void Abandon();

  int fd_ = -1;
  std::string path_;
  std::string tmp_path_;
  uint16_t dos_time_ = 0;
  uint16_t dos_date_ = 0;
  uint64_t offset_ = 0;
  std::vector<Written> written_;
  bool failed_ = false;
  bool sync_ = true;
  bool memory_ = false;    // CreateInMemory: the sink is mem_, not fd_
  bool finished_ = false;  // Finish() succeeded
  std::string mem_;
};

}  // namespace sealpost

#endif  // SEALPOST_BASE_ZIP_H_
