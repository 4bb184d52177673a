#include "pkcs11/allowlist.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <sys/stat.h>

#include "base/file.h"

namespace sealpost::pkcs11 {
namespace {

const char* const kDefaults[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
};

std::optional<std::string> RealPath(const std::string& p) {
  char* r = ::realpath(p.c_str(), nullptr);
  if (r == nullptr) return std::nullopt;
  std::string out(r);
  std::free(r);
  return out;
}

std::string BaseName(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

}  // namespace

Result<std::vector<AllowedModule>> LoadAllowlist() {
  std::vector<std::string> listed;
  std::string source;
  const char* env = std::getenv(kAllowlistEnv);
  struct stat st;
  if (env != nullptr && *env != '\0') {
    source = env;
  } else if (::stat(kAllowlistFile, &st) == 0) {
    source = kAllowlistFile;
  }
  if (!source.empty()) {
    auto text = ReadFile(source, 1 << 20);
    if (!text) return Err(text.error().WithContext("PKCS#11 module allowlist"));
    std::istringstream in(*text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      size_t b = line.find_first_not_of(" \t\r");
      if (b == std::string::npos || line[b] == '#') continue;
      size_t e = line.find_last_not_of(" \t\r");
      std::string path = line.substr(b, e - b + 1);
      if (path[0] != '/') {
        return Err(Status::InvalidArgument(source + ":" + std::to_string(lineno) +
                                           ": module path is not absolute: " + path));
      }
      listed.push_back(path);
    }
  } else {
    listed.assign(std::begin(kDefaults), std::end(kDefaults));
  }
  std::vector<AllowedModule> out;
  for (const auto& p : listed) {
    auto real = RealPath(p);
    if (!real) continue;
    bool dup = false;
    for (const auto& m : out) dup = dup || m.real_path == *real;
    if (!dup) out.push_back({p, *real});
  }
  return out;
}

Result<std::string> ResolveAllowedModule(const std::optional<std::string>& module_path,
                                         const std::optional<std::string>& module_name) {
  auto allowed = LoadAllowlist();
  if (!allowed) return Err(allowed.error());
  if (module_path) {
    auto real = RealPath(*module_path);
    if (!real) {
      return Err(Status::NotFound("PKCS#11 module " + *module_path + ": " + std::strerror(errno)));
    }
    for (const auto& m : *allowed) {
      if (m.real_path == *real) return *real;
    }
    return Err(Status::PermissionDenied("PKCS#11 module " + *real +
                                        " is not in the module allowlist (see docs/tokens.md)"));
  }
  if (module_name) {
    const std::string& n = *module_name;
    for (const auto& m : *allowed) {
      for (const auto& file : {BaseName(m.listed), BaseName(m.real_path)}) {
        if (file == n || file == n + ".so" || file == "lib" + n + ".so" ||
            file == n + "-pkcs11.so") {
          return m.real_path;
        }
      }
    }
    return Err(Status::PermissionDenied("PKCS#11 module-name '" + n +
                                        "' matches no allowlisted module (see docs/tokens.md)"));
  }
  return Err(Status::InvalidArgument(
      "PKCS#11 URI names no module: add ?module-path=/path/to/module.so (or module-name=)"));
}

}  // namespace sealpost::pkcs11
