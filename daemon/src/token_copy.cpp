// copy_created_tokens (rootseal/daemon/state.hpp).
#include <map>
#include <string>
#include <vector>

#include "admin_token_db.hpp"
#include "etcd_token_db.hpp"
#include "rootseal/daemon/state.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

namespace {

bool same(const StoredToken& a, const StoredToken& b) {
  return a.hash == b.hash && a.info.accessor == b.info.accessor && a.info.display_name == b.info.display_name &&
         a.info.policies == b.info.policies && a.info.creation_time == b.info.creation_time &&
         a.info.ttl_s == b.info.ttl_s && a.info.renewable == b.info.renewable;
}

// Copies `source` into `to`: identical ones skipped; one whose accessor `to`
// holds with other contents refused before anything is written, or (force)
// replaced.
kms::Result<TokensCopied> copy_into(const std::vector<StoredToken>& source, TokenDb& to, bool force) {
  ROOTSEAL_LET(target, to.load_all());
  std::map<std::string, const StoredToken*, std::less<>> at_target;
  for (const auto& t : target) at_target.emplace(t.info.accessor, &t);
  TokensCopied out;
  std::vector<const StoredToken*> missing, replaced;
  for (const auto& t : source) {
    const auto it = at_target.find(t.info.accessor);
    if (it == at_target.end()) {
      missing.push_back(&t);
    } else if (same(t, *it->second)) {
      ++out.present;
    } else if (force) {
      replaced.push_back(&t);
    } else {
      return fail(Errc::conflict, "token accessor " + t.info.accessor + " (" + t.info.display_name +
                                      ") is held by the target with other contents; no token copied");
    }
  }
  for (const auto* t : replaced) {
    ROOTSEAL_TRY(to.remove(t->info.accessor));
    missing.push_back(t);
  }
  for (const auto* t : missing) {
    ROOTSEAL_TRY(to.insert(t->hash, t->info));
    ++out.copied;
  }
  return out;
}

kms::Result<std::unique_ptr<EtcdTokenDb>> open_on_etcd(const EtcdSection& etcd) {
  etcd::ClientConfig client;
  ROOTSEAL_TRY_ASSIGN(client, etcd_client_config(etcd));
  return EtcdTokenDb::open(std::move(client), etcd.prefix);
}

}  // namespace

kms::Result<TokensCopied> copy_created_tokens(const std::filesystem::path& tokens_db, const EtcdSection& etcd,
                                              bool to_etcd) {
  std::error_code ec;
  if (to_etcd && !std::filesystem::exists(tokens_db, ec)) return TokensCopied{};  // none were created
  ROOTSEAL_LET(on_etcd, open_on_etcd(etcd));
  ROOTSEAL_LET(in_file, TokenDb::open(tokens_db));
  TokenDb& from = to_etcd ? static_cast<TokenDb&>(*in_file) : static_cast<TokenDb&>(*on_etcd);
  TokenDb& to = to_etcd ? static_cast<TokenDb&>(*on_etcd) : static_cast<TokenDb&>(*in_file);
  ROOTSEAL_LET(source, from.load_all());
  return copy_into(source, to, false);
}

kms::Result<TokensCopied> restore_created_tokens(std::span<const std::uint8_t> tokens_image, const EtcdSection& etcd,
                                                 bool force) {
  if (tokens_image.empty()) return TokensCopied{};
  auto source = TokenDb::tokens_of_image(tokens_image);
  if (!source) return fail(source.error().code, "the snapshot's tokens section: " + source.error().message);
  ROOTSEAL_LET(on_etcd, open_on_etcd(etcd));
  return copy_into(*source, *on_etcd, force);
}

}  // namespace rootseal::daemon
