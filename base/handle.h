// Deleter for owning C handles: std::unique_ptr<T, CDeleter<T_free>>.
// Every C library wrapper (OpenSSL in base/openssl.h, libgit2 in
// storage/git.h) builds its handle types from this one template.
#ifndef SEALPOST_BASE_HANDLE_H_
#define SEALPOST_BASE_HANDLE_H_

namespace sealpost {

template <auto Fn>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    if (p) Fn(p);
  }
};

}  // namespace sealpost

#endif  // SEALPOST_BASE_HANDLE_H_
