#include "engine/service_account_tokens.hpp"

namespace rootseal::sync::engine {

using kms::Errc;
using kms::fail;

std::string ServiceAccountTokens::Key::id() const {
  std::string s = ns + "/" + name + " ";
  for (std::size_t i = 0; i < audiences.size(); ++i) s += (i == 0 ? "" : ",") + audiences[i];
  return s + " " + std::to_string(expiration_seconds);
}

ServiceAccountTokens::ServiceAccountTokens(reconcile::KubeApi& api, Clock now) : api_(api), now_(std::move(now)) {}

Task<kms::SecureBytes> ServiceAccountTokens::get(Key key, bool fresh) {
  const std::string id = key.id();
  if (!fresh) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(id);
    if (it != cache_.end() && now_() < it->second.refresh_at) co_return it->second.token.clone();
  }
  {
    std::lock_guard lock(mu_);
    ++requests_;
  }
  auto got = co_await api_.create_token(key.ns, key.name, key.audiences, key.expiration_seconds);
  if (!got) {
    std::lock_guard lock(mu_);
    cache_.erase(id);  // a ServiceAccount deleted since: its last token is no use either
    const Errc code = got.error().code == Errc::unavailable ? Errc::unavailable : Errc::permission_denied;
    // ESO's errGetKubeSATokenRequest; the API's message names the ServiceAccount, never a token.
    co_return fail(code, "cannot request Kubernetes service account token for service account \"" + key.name +
                             "\" (namespace " + key.ns + "): " + got.error().message);
  }
  const auto now = now_();
  const auto lifetime = got->expires - now;
  kms::SecureBytes out = got->token.clone();
  std::lock_guard lock(mu_);
  std::erase_if(cache_, [&](const auto& e) { return e.second.expires <= now; });  // tokens of stores gone since
  if (lifetime > std::chrono::seconds(0))
    cache_[id] = Entry{std::move(got->token), now + (lifetime - lifetime / 5), got->expires};
  co_return out;
}

JwtSource ServiceAccountTokens::source(Key key) {
  // Not a coroutine lambda: get() copies the key into its own frame, and the
  // JwtSource (kept by the provider) keeps the cache alive.
  return [self = shared_from_this(), key = std::move(key)](bool fresh) { return self->get(key, fresh); };
}

std::uint64_t ServiceAccountTokens::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

}  // namespace rootseal::sync::engine
