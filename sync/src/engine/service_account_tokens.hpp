// rootseal::sync::engine — ServiceAccount tokens on demand for the stores that
// name a serviceAccountRef: requested through the TokenRequest API
// (KubeApi::create_token), kept in locked memory and handed out until a fifth
// of their lifetime is left, then requested again. Never written anywhere.
//
// A ServiceAccount that does not exist (404) or a refused request is
// permission_denied, with ESO's message ("cannot request Kubernetes service
// account token for service account ..."): never not_found, which a
// provider would read as "the remote secret is gone".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "reconcile/kube_api.hpp"

namespace rootseal::sync::engine {

class ServiceAccountTokens : public std::enable_shared_from_this<ServiceAccountTokens> {
 public:
  struct Key {
    std::string ns;
    std::string name;
    std::vector<std::string> audiences;
    std::int64_t expiration_seconds = 0;   // 0: the API server's default
    [[nodiscard]] std::string id() const;  // "ns/name aud,aud exp": names the key, holds no secret
  };
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  explicit ServiceAccountTokens(reconcile::KubeApi& api, Clock now = [] { return std::chrono::system_clock::now(); });

  // A token for `key` with a fifth of its lifetime left at least (requested
  // when the cached one has less, or always when `fresh`); a copy for the caller.
  Task<kms::SecureBytes> get(Key key, bool fresh = false);
  // A JwtSource for a provider spec (keeps this cache alive).
  JwtSource source(Key key);
  // TokenRequests made (tests, metrics).
  [[nodiscard]] std::uint64_t requests() const;

 private:
  struct Entry {
    kms::SecureBytes token;
    std::chrono::system_clock::time_point refresh_at;
    std::chrono::system_clock::time_point expires;
  };
  reconcile::KubeApi& api_;
  Clock now_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> cache_;  // by Key::id()
  std::uint64_t requests_ = 0;
};

}  // namespace rootseal::sync::engine
