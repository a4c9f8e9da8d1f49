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

}  // namespace

kms::Result<TokensCopied> copy_created_tokens(const std::filesystem::path& tokens_db, const EtcdSection& etcd,
                                              bool to_etcd) {
  std::error_code ec;
  if (to_etcd && !std::filesystem::exists(tokens_db, ec)) return TokensCopied{};  // none were created
  etcd::ClientConfig client;
  ROOTSEAL_TRY_ASSIGN(client, etcd_client_config(etcd));
  std::unique_ptr<EtcdTokenDb> on_etcd;
  ROOTSEAL_TRY_ASSIGN(on_etcd, EtcdTokenDb::open(std::move(client), etcd.prefix));
  std::unique_ptr<TokenDb> in_file;
  ROOTSEAL_TRY_ASSIGN(in_file, TokenDb::open(tokens_db));
  TokenDb& from = to_etcd ? static_cast<TokenDb&>(*in_file) : static_cast<TokenDb&>(*on_etcd);
  TokenDb& to = to_etcd ? static_cast<TokenDb&>(*on_etcd) : static_cast<TokenDb&>(*in_file);
  ROOTSEAL_LET(source, from.load_all());
  ROOTSEAL_LET(target, to.load_all());
  std::map<std::string, const StoredToken*, std::less<>> at_target;
  for (const auto& t : target) at_target.emplace(t.info.accessor, &t);
  TokensCopied out;
  std::vector<const StoredToken*> missing;
  for (const auto& t : source) {
    const auto it = at_target.find(t.info.accessor);
    if (it == at_target.end()) {
      missing.push_back(&t);
    } else if (same(t, *it->second)) {
      ++out.present;
    } else {
      return fail(Errc::conflict, "token accessor " + t.info.accessor + " (" + t.info.display_name +
                                      ") is held by the target with other contents; no token copied");
    }
  }
  for (const auto* t : missing) {
    ROOTSEAL_TRY(to.insert(t->hash, t->info));
    ++out.copied;
  }
  return out;
}

}  // namespace rootseal::daemon
