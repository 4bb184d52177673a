// Streaming digests of files: constant memory, large reads, several
// algorithms in one pass (a co-signed file may use SHA-256 and SHA-384).
#ifndef SEALPOST_CRYPTO_DIGEST_H_
#define SEALPOST_CRYPTO_DIGEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

// Digests of the file at `path` with each md in `mds` (OpenSSL EVP_MDs, e.g.
// from DigestAlgMd or EVP_get_digestbyobj), in one read of the file.
// Result[i] is the raw digest for mds[i]. NotFound if the file cannot be read.
Result<std::vector<std::string>> DigestFile(const std::string& path,
                                            const std::vector<const EVP_MD*>& mds);

Result<std::string> DigestBytes(const EVP_MD* md, std::string_view data);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_DIGEST_H_
