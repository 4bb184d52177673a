// Whole-file reads and atomic, durable writes.
#ifndef SEALPOST_BASE_FILE_H_
#define SEALPOST_BASE_FILE_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "base/secret.h"
#include "base/status.h"

namespace sealpost {

// Reads a whole file. NotFound if it does not exist or cannot be opened,
// DataError if larger than max_bytes.
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 256u << 20);

// Reads a small secret file (a PIN) straight into SecretBytes.
Result<SecretBytes> ReadSecretFile(const std::string& path, size_t max_bytes = 4096);

// Writes `data` to `path` atomically and durably: a temporary file in the same
// directory, fsync, rename over `path`, fsync of the directory. On any
// failure nothing is left at `path` that was not there before.
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

}  // namespace sealpost

#endif  // SEALPOST_BASE_FILE_H_
