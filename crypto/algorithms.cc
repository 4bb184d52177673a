#include "crypto/algorithms.h"

#include <openssl/ec.h>
#include <openssl/objects.h>

namespace sealpost::crypto {

std::string DigestNameForNid(int md_nid) {
  switch (md_nid) {
    case NID_md5: return "MD5";
    case NID_sha1: return "SHA-1";
    case NID_sha224: return "SHA-224";
    case NID_sha256: return "SHA-256";
    case NID_sha384: return "SHA-384";
    case NID_sha512: return "SHA-512";
    case NID_sha3_256: return "SHA3-256";
    case NID_sha3_384: return "SHA3-384";
    case NID_sha3_512: return "SHA3-512";
    case NID_undef: return "";
    default: {
      const char* sn = OBJ_nid2sn(md_nid);
      return sn ? sn : "unknown";
    }
  }
}

std::string KeyDescription(EVP_PKEY* key) {
  if (key == nullptr) return "";
  int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA: return "RSA " + std::to_string(bits);
    case EVP_PKEY_RSA_PSS: return "RSA-PSS " + std::to_string(bits);
    case EVP_PKEY_DSA: return "DSA " + std::to_string(bits);
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    case EVP_PKEY_EC: {
      char curve[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof curve, &len) == 1) {
        int nid = OBJ_sn2nid(curve);
        const char* nist = nid != NID_undef ? EC_curve_nid2nist(nid) : nullptr;
        return std::string("ECDSA ") + (nist ? nist : curve);
      }
      return "ECDSA " + std::to_string(bits);
    }
    default: return "key type " + std::to_string(EVP_PKEY_get_base_id(key));
  }
}

AlgorithmRefusal CheckDigestNid(int md_nid) {
  switch (md_nid) {
    case NID_md5:
    case NID_md4:
    case NID_md2:
    case NID_sha1:
      return {Reason::kWeakDigest, DigestNameForNid(md_nid)};
    case NID_sha224:
    case NID_sha256:
    case NID_sha384:
    case NID_sha512:
    case NID_sha3_256:
    case NID_sha3_384:
    case NID_sha3_512:
    case NID_undef:  // EdDSA certificate signatures carry no separate digest
      return {};
    default:
      return {Reason::kUnsupportedAlgorithm, DigestNameForNid(md_nid)};
  }
}

AlgorithmRefusal CheckKey(EVP_PKEY* key) {
  if (key == nullptr) return {Reason::kUnsupportedAlgorithm, "no public key"};
  int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      if (bits < 2048) return {Reason::kWeakKey, KeyDescription(key)};
      return {};
    case EVP_PKEY_DSA:
      return {Reason::kDsaRefused, KeyDescription(key)};
    case EVP_PKEY_EC:
      if (bits < 256) return {Reason::kWeakKey, KeyDescription(key)};
      return {};
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
      return {};
    default:
      return {Reason::kUnsupportedAlgorithm, KeyDescription(key)};
  }
}

}  // namespace sealpost::crypto
