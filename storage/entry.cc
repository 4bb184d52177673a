#include "base/utf8.h"
#include "base/json.h"
#include "storage/entry.h"

#include <algorithm>
#include <cstdio>

#include "base/encoding.h"
#include "crypto/digest.h"

namespace sealpost::storage {
namespace {

constexpr struct {
  EntryKind kind;
  std::string_view name;
} kKinds[] = {
    {EntryKind::kDocumentSent, "document-sent"},
    {EntryKind::kDocumentReceived, "document-received"},
    {EntryKind::kDeliveryReceipt, "delivery-receipt"},
    {EntryKind::kPolicyVersion, "policy-version"},
    {EntryKind::kCheckpoint, "checkpoint"},
    {EntryKind::kKeyChange, "key-change"},
    {EntryKind::kWithdrawal, "withdrawal"},
    {EntryKind::kDeliveryAttempts, "delivery-attempts"},
    {EntryKind::kCrl, "crl"},
};


bool IsFileName(std::string_view n) {
  if (n.empty() || n.size() > kMaxFileNameBytes || n == "manifest.json") return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(n[0])) return false;
  return std::all_of(n.begin(), n.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool IsFieldName(std::string_view n) {
  if (n.empty() || n.size() > kMaxFieldNameBytes || n[0] < 'a' || n[0] > 'z') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string_view EntryKindName(EntryKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "unknown";
}

Result<EntryKind> ParseEntryKind(std::string_view name) {
  for (const auto& k : kKinds) {
    if (k.name == name) return k.kind;
  }
  return Err(Status::DataError("unknown entry kind \"" + std::string(name) + "\""));
}

Status ValidateEntry(const EntryInput& entry) {
  if (EntryKindName(entry.kind) == "unknown") return Status::InvalidArgument("unknown entry kind");
  if (entry.files.size() > kMaxEntryFiles) {
    return Status::InvalidArgument("an entry holds at most " + std::to_string(kMaxEntryFiles) +
                                   " files, got " + std::to_string(entry.files.size()));
  }
  if (entry.fields.size() > kMaxFields) {
    return Status::InvalidArgument("an entry has at most " + std::to_string(kMaxFields) +
                                   " fields, got " + std::to_string(entry.fields.size()));
  }
  size_t total = 0;
  std::vector<std::string_view> names;
  for (const EntryFile& f : entry.files) {
    if (!IsFileName(f.name)) {
      return Status::InvalidArgument("entry file name \"" + f.name +
                                     "\" is not allowed (letters, digits, '.', '_', '-'; "
                                     "at most 100 bytes; not manifest.json)");
    }
    if (std::find(names.begin(), names.end(), f.name) != names.end()) {
      return Status::InvalidArgument("entry file name \"" + f.name + "\" appears twice");
    }
    names.push_back(f.name);
    if (!f.path.empty() && (!f.data.empty() || f.sha256.size() != 32)) {
      return Status::InvalidArgument("entry file \"" + f.name +
                                     "\" given as a path needs no data and a 32-byte SHA-256");
    }
    total += f.content_size();
  }
  if (total > kMaxEntryBytes) {
    return Status::InvalidArgument("entry files total " + std::to_string(total) +
                                   " bytes, more than the limit of " +
                                   std::to_string(kMaxEntryBytes));
  }
  for (const auto& [name, value] : entry.fields) {
    if (!IsFieldName(name)) {
      return Status::InvalidArgument("entry field name \"" + name +
                                     "\" is not allowed ([a-z][a-z0-9_]*, at most 64 bytes)");
    }
    if (value.size() > kMaxFieldValueBytes || !IsCleanUtf8Text(value)) {
      return Status::InvalidArgument("entry field \"" + name +
                                     "\" is not one line of UTF-8 of at most 64 KiB");
    }
  }
  return Status::Ok();
}


std::string Rfc3339Utc(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string ManifestPrefix(const EntryInput& entry, std::string_view origin,
                           const std::vector<std::string>& file_sha256) {
  std::string out = "{\"fields\":{";
  bool first = true;
  for (const auto& [name, value] : entry.fields) {  // std::map: sorted by bytes
    if (!first) out.push_back(',');
    first = false;
    out += JsonString(name) + ":" + JsonString(value);
  }
  out += "},\"files\":[";
  std::vector<size_t> files;
  for (size_t i = 0; i < entry.files.size(); ++i) files.push_back(i);
  std::sort(files.begin(), files.end(),
            [&](size_t a, size_t b) { return entry.files[a].name < entry.files[b].name; });
  first = true;
  for (size_t i : files) {
    const EntryFile* f = &entry.files[i];
    if (!first) out.push_back(',');
    first = false;
    std::string digest = !f->path.empty()                                         ? f->sha256
                         : i < file_sha256.size() && file_sha256[i].size() == 32 ? file_sha256[i]
                                                     : *crypto::DigestBytes(EVP_sha256(), f->data);
    out += "{\"name\":" + JsonString(f->name) + ",\"sha256\":\"" + HexEncode(digest) +
           "\",\"size\":" + std::to_string(f->content_size()) + "}";
  }
  out += "],\"format\":" + std::to_string(kFormatVersion) +
         ",\"kind\":" + JsonString(EntryKindName(entry.kind)) + ",\"origin\":" + JsonString(origin) +
         ",\"refers_to\":" + std::to_string(entry.refers_to);
  return out;
}

std::string FinishManifest(std::string prefix, uint64_t seq, std::time_t time) {
  prefix += ",\"seq\":" + std::to_string(seq) + ",\"time\":\"" + Rfc3339Utc(time) + "\"}";
  return prefix;
}

std::string BuildManifest(const EntryInput& entry, std::string_view origin, uint64_t seq,
                          std::time_t time) {
  return FinishManifest(ManifestPrefix(entry, origin), seq, time);
}

std::string EntryDir(uint64_t seq) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "entries/%02llx/%02llx/%02llx/%llu",
                static_cast<unsigned long long>(seq >> 24),
                static_cast<unsigned long long>((seq >> 16) & 0xff),
                static_cast<unsigned long long>((seq >> 8) & 0xff),
                static_cast<unsigned long long>(seq));
  return buf;
}

}  // namespace sealpost::storage
