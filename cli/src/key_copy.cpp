// Copying key records into a state store (key_copy.hpp).
#include "key_copy.hpp"

#include <algorithm>
#include <map>

#include "util.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

namespace {

constexpr std::size_t kNamesShown = 10;

}  // namespace

// Why two records of one key differ ("" when identical).
std::string key_difference(const kms::KeyRecord& source, const kms::KeyRecord& target) {
  if (source.type != target.type) return "another key type";
  if (source.derived != target.derived) return "derived differs";
  if (source.created_unix != target.created_unix) return "another creation time";
  if (source.versions.size() != target.versions.size()) {
    return std::to_string(target.versions.size()) + " versions in the target, " +
           std::to_string(source.versions.size()) + " in the source";
  }
  for (std::size_t i = 0; i < source.versions.size(); ++i) {
    const auto& a = source.versions[i];
    const auto& b = target.versions[i];
    if (a.version != b.version || a.created_unix != b.created_unix || a.wrapped_key != b.wrapped_key ||
        a.root_kcv != b.root_kcv) {
      return "version " + std::to_string(a.version) + " differs";
    }
  }
  if (!(source.config == target.config)) return "its config differs";
  return {};
}

std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < kNamesShown; ++i) out += (i == 0 ? "" : ", ") + names[i];
  if (names.size() > kNamesShown) out += ", and " + std::to_string(names.size() - kNamesShown) + " more";
  return out;
}

kms::Result<void> refuse_registered_hosts(const etcdstore::EtcdStore::ClusterView& view, const std::string& prefix,
                                          std::string_view what) {
  if (view.members.empty()) return {};
  std::vector<std::string> hosts;
  hosts.reserve(view.members.size());
  for (const auto& m : view.members) hosts.push_back(m.host_id);
  return fail(Errc::conflict, std::to_string(hosts.size()) +
                                  (hosts.size() == 1 ? " rootseald host is" : " rootseald hosts are") +
                                  " registered in etcd (" + name_list(hosts) + " under " + prefix +
                                  "members/): stop them first; " + std::string(what) +
                                  " is offline (a host stopped cleanly leaves at once, a killed one when its lease "
                                  "expires: etcd.member_ttl)");
}

kms::Result<Copied> copy_keys(const std::vector<kms::KeyRecord>& source, const std::vector<kms::KeyRecord>& existing,
                              kms::StateStore& to, std::string_view crash_tag) {
  std::map<std::string, const kms::KeyRecord*, std::less<>> at_target;
  for (const auto& k : existing) at_target.emplace(k.name, &k);
  Copied out;
  std::vector<std::string> conflicts;
  std::vector<const kms::KeyRecord*> todo;
  for (const auto& k : source) {
    const auto it = at_target.find(k.name);
    if (it == at_target.end()) {
      todo.push_back(&k);
      continue;
    }
    const std::string why = key_difference(k, *it->second);
    if (!why.empty()) conflicts.push_back("'" + k.name + "' (" + why + ")");
    ++out.present;
  }
  out.others = existing.size() - out.present;
  if (!conflicts.empty()) {
    const bool one = conflicts.size() == 1;
    return fail(Errc::conflict, std::to_string(conflicts.size()) + (one ? " key exists" : " keys exist") +
                                    " in the target with other contents and " + (one ? "is" : "are") +
                                    " not overwritten: " + name_list(conflicts) + "; nothing copied");
  }
  for (const kms::KeyRecord* k : todo) {
    auto r = to.create_key(*k);
    if (!r && r.error().code == Errc::already_exists) {
      // Made meanwhile (a host of the target cluster): the same record, or a conflict.
      ROOTSEAL_LET(now, to.find(k->name));
      if (now) {
        const std::string why = key_difference(*k, *now);
        if (!why.empty()) {
          return fail(Errc::conflict, "key '" + k->name +
                                          "' was created in the target meanwhile with other contents (" + why +
                                          "); not overwritten; " + std::to_string(out.copied) + " keys copied so far");
        }
        ++out.present;
        continue;
      }
    }
    if (!r) {
      return fail(r.error().code, "key '" + k->name + "': " + r.error().message + "; " + std::to_string(out.copied) +
                                      " keys copied so far: run the command again to resume");
    }
    ++out.copied;
    crash_point(std::string(crash_tag) + "-" + std::to_string(out.copied));
  }
  return out;
}

kms::Result<std::size_t> copy_keyring_keys(const std::vector<kms::KeyringKeyRecord>& source, kms::StateStore& to) {
  ROOTSEAL_LET(held, to.keyring_keys());
  std::size_t added = 0;
  for (const auto& k : source) {
    const auto same_id = std::find_if(held.begin(), held.end(), [&](const auto& h) { return h.id == k.id; });
    if (same_id != held.end()) {
      if (*same_id == k) continue;
      return fail(Errc::conflict, "keyring key " + std::to_string(k.id) +
                                      " exists in the target with other contents and is not overwritten; nothing "
                                      "more copied");
    }
    auto r = to.add_keyring_key(k);
    if (!r) return fail(r.error().code, "keyring key " + std::to_string(k.id) + ": " + r.error().message);
    ++added;
  }
  return added;
}

kms::Result<CopyPlan> plan_copy(const std::vector<kms::KeyRecord>& source,
                                const std::vector<kms::KeyringKeyRecord>& source_kks,
                                const std::vector<kms::KeyringKeyRecord>& target_kks, kms::RootOfTrust& root) {
  const bool all_held = std::all_of(source_kks.begin(), source_kks.end(), [&](const auto& k) {
    return std::find(target_kks.begin(), target_kks.end(), k) != target_kks.end();
  });
  if (target_kks.empty() || all_held) return CopyPlan{source_kks, source};
  ROOTSEAL_LET(kcv, root.key_check_value());
  ROOTSEAL_LET(from, kms::KeyHierarchy::open(root, kcv, source_kks));
  ROOTSEAL_LET(to, kms::KeyHierarchy::open(root, kcv, target_kks));
  CopyPlan plan;
  plan.keys = source;
  for (auto& k : plan.keys) {
    for (auto& v : k.versions) {
      if (v.root_kcv == kcv || to.knows(v.root_kcv)) continue;
      auto kek = from.unwrap(v);
      if (!kek) {
        return fail(kek.error().code, "key '" + k.name + "' version " + std::to_string(v.version) +
                                          " does not unwrap: " + kek.error().message);
      }
      ROOTSEAL_LET(w, to.wrap(*kek));
      v.wrapped_key = std::move(w.blob);
      v.root_kcv = std::move(w.tag);
    }
  }
  return plan;
}

kms::Result<std::size_t> unwrap_all(const std::vector<kms::KeyRecord>& records,
                                    const std::vector<kms::KeyringKeyRecord>& keyring_keys, kms::RootOfTrust& root,
                                    const std::string& where) {
  ROOTSEAL_LET(kcv, root.key_check_value());
  auto hierarchy = kms::KeyHierarchy::open(root, kcv, keyring_keys);
  if (!hierarchy) return fail(hierarchy.error().code, "in " + where + ": " + hierarchy.error().message);
  std::size_t versions = 0;
  for (const auto& k : records) {
    for (const auto& v : k.versions) {
      auto kek = hierarchy->unwrap(v);
      if (!kek) {
        return fail(kek.error().code, "key '" + k.name + "' version " + std::to_string(v.version) + " in " + where +
                                          " does not unwrap with the root key: " + kek.error().message);
      }
      ++versions;
    }
  }
  return versions;
}

kms::Result<std::size_t> verify_copies(const std::vector<kms::KeyRecord>& source,
                                       const std::vector<kms::KeyringKeyRecord>& source_kks,
                                       const std::vector<kms::KeyRecord>& after,
                                       const std::vector<kms::KeyringKeyRecord>& after_kks, kms::RootOfTrust& root,
                                       const std::string& where) {
  for (const auto& k : source_kks) {
    if (std::find(after_kks.begin(), after_kks.end(), k) == after_kks.end()) {
      return fail(Errc::not_found, "verification: keyring key " + std::to_string(k.id) + " is not in " + where +
                                       " as the source has it");
    }
  }
  std::map<std::string, const kms::KeyRecord*, std::less<>> at_target;
  for (const auto& k : after) at_target.emplace(k.name, &k);
  std::vector<kms::KeyRecord> copies;
  copies.reserve(source.size());
  for (const auto& k : source) {
    const auto it = at_target.find(k.name);
    if (it == at_target.end()) return fail(Errc::not_found, "verification: key '" + k.name + "' is not in " + where);
    const std::string why = key_difference(k, *it->second);
    if (!why.empty()) return fail(Errc::conflict, "verification: key '" + k.name + "' in " + where + ": " + why);
    copies.push_back(*it->second);
  }
  auto n = unwrap_all(copies, after_kks, root, where);
  if (!n) return fail(n.error().code, "verification: " + n.error().message);
  return n;
}

}  // namespace rootseal::cli
