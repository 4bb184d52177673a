// libFuzzer target for the parsers of an incoming bundle (untrusted input
// from peers and from the public verification desk): the bounded ZIP reader
// (base/zip.h), ReadBundle and the strict JSON parsers of crypto/bundle.h.
// The first byte picks the parser, the rest is its input:
//   0: the bytes are a bundle file: ZipReader::Open + extraction of every
//      member, then ReadBundle;
//   1: document.json; 2: an archive entry manifest; 3: an inclusion proof.
// Must never crash, hang, leak or leave an extracted file behind; whatever
// parses must serialize back to the same bytes where the format is canonical.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/zip.h"
#include "crypto/bundle.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Scratch {
  std::string dir;
  std::string file;
  std::string work;
  Scratch() {
    char tmpl[] = "/tmp/bundle-fuzz-XXXXXX";
    Check(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    file = dir + "/input.asics";
    work = dir + "/work";
    Check(::mkdir(work.c_str(), 0700) == 0);
  }
};

Scratch& Dirs() {
  static Scratch s;
  return s;
}

bool WorkDirEmpty() {
  DIR* d = ::opendir(Dirs().work.c_str());
  if (!d) return false;
  bool empty = true;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") empty = false;
  }
  ::closedir(d);
  return empty;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 4;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  using namespace sealpost;
  using namespace sealpost::crypto;

  if (mode == 1) {
    auto doc = ParseDocumentJson(in, "fuzz");
    if (doc) Check(*SerializeDocumentJson(*doc) == in);
    return 0;
  }
  if (mode == 2) {
    (void)ParseArchiveManifest(in, "fuzz");
    return 0;
  }
  if (mode == 3) {
    auto proof = ParseInclusionProof(in, "fuzz");
    if (proof) Check(ParseInclusionProof(SerializeInclusionProof(*proof), "again").has_value());
    return 0;
  }

  const std::string& path = Dirs().file;
  FILE* f = std::fopen(path.c_str(), "wb");
  Check(f != nullptr);
  Check(std::fwrite(in.data(), 1, in.size(), f) == in.size());
  Check(std::fclose(f) == 0);

  ZipLimits limits;
  limits.max_member_bytes = 1u << 20;
  limits.max_total_bytes = 4u << 20;
  if (auto zip = ZipReader::Open(path, limits)) {
    for (const ZipEntry& e : zip->entries()) {
      auto s = zip->ExtractToString(e, 1u << 20);
      if (s) Check(s->size() == e.size);
    }
  }
  BundleLimits bl;
  bl.zip = limits;
  bl.max_content_bytes = 1u << 20;
  bl.max_metadata_bytes = 1u << 20;
  {
    auto bundle = ReadBundle(path, Dirs().work, bl);
    if (bundle) {
      Check(bundle->content_size <= bl.max_content_bytes);
      Check(*SerializeDocumentJson(bundle->document) == bundle->document_json);
    }
  }
  Check(WorkDirEmpty());
  ::unlink(path.c_str());
  return 0;
}
