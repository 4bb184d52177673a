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
};

bool IsCleanUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    for (size_t j = 1; j < len; ++j) {
      unsigned char cc = static_cast<unsigned char>(s[i + j]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || (cp >= 0x80 && cp <= 0x9f)) {
      return false;
    }
    i += len;
  }
  return true;
}

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
    total += f.data.size();
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
    if (value.size() > kMaxFieldValueBytes || !IsCleanUtf8(value)) {
      return Status::InvalidArgument("entry field \"" + name +
                                     "\" is not one line of UTF-8 of at most 64 KiB");
    }
  }
  return Status::Ok();
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string Rfc3339Utc(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string BuildManifest(const EntryInput& entry, std::string_view origin, uint64_t seq,
                          std::time_t time) {
  std::string out = "{\"fields\":{";
  bool first = true;
  for (const auto& [name, value] : entry.fields) {  // std::map: sorted by bytes
    if (!first) out.push_back(',');
    first = false;
    out += JsonQuote(name) + ":" + JsonQuote(value);
  }
  out += "},\"files\":[";
  std::vector<const EntryFile*> files;
  for (const EntryFile& f : entry.files) files.push_back(&f);
  std::sort(files.begin(), files.end(),
            [](const EntryFile* a, const EntryFile* b) { return a->name < b->name; });
  first = true;
  for (const EntryFile* f : files) {
    if (!first) out.push_back(',');
    first = false;
    std::string digest = *crypto::DigestBytes(EVP_sha256(), f->data);
    out += "{\"name\":" + JsonQuote(f->name) + ",\"sha256\":\"" + HexEncode(digest) +
           "\",\"size\":" + std::to_string(f->data.size()) + "}";
  }
  out += "],\"format\":" + std::to_string(kFormatVersion) +
         ",\"kind\":" + JsonQuote(EntryKindName(entry.kind)) + ",\"origin\":" + JsonQuote(origin) +
         ",\"refers_to\":" + std::to_string(entry.refers_to) + ",\"seq\":" + std::to_string(seq) +
         ",\"time\":\"" + Rfc3339Utc(time) + "\"}";
  return out;
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
