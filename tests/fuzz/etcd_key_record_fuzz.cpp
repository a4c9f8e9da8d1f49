// Fuzz target: the value of one transit key as the etcd state store reads it
// back from etcd (etcdstore/src/key_record.cpp) — whatever any writer of the
// prefix left there; the same bytes as a member record, and as a created
// token's record (daemon/src/etcd_token_db.cpp, <prefix>tokens/<accessor>),
// and as a keyring key's record (<prefix>keyring/<id>), and as a sync
// bucket's owner (<prefix>shards/<bucket>).
//
// Input: line 1 the key name (as the etcd key carries it after
// "<prefix>keys/"); the rest is the value.
// Properties beyond "no crash, no sanitizer report, no leak":
//  - a refusal is storage_failure with a message starting "etcd store: ";
//  - a record that parses keeps the invariants the keyring relies on
//    (its name, versions 1..N without gaps, N >= 1, minimum versions within
//    1..N, wrapped keys non-empty);
//  - it re-encodes to a value that parses to the same record, and that
//    re-encoding is a fixed point.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "etcd_token_db.hpp"
#include "fuzz_util.hpp"
#include "key_record.hpp"

using namespace rootseal;
namespace detail = rootseal::etcdstore::detail;
using kms::Errc;

namespace {

bool same(const kms::KeyRecord& a, const kms::KeyRecord& b) {
  if (a.name != b.name || a.type != b.type || a.derived != b.derived || a.created_unix != b.created_unix ||
      !(a.config == b.config) || a.versions.size() != b.versions.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.versions.size(); ++i) {
    const auto& x = a.versions[i];
    const auto& y = b.versions[i];
    if (x.version != y.version || x.created_unix != y.created_unix || x.wrapped_key != y.wrapped_key ||
        x.root_kcv != y.root_kcv) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_text(data, size);
  const std::string_view name = fuzz::next_line(in);
  // The same bytes as a member record (<prefix>members/<name>): never
  // refused, but a bad one carries its reason and nothing else.
  const auto member = detail::parse_member(in, name);
  fuzz::require(member.host_id == name, "a member record is listed under its key's name");
  if (!member.error.empty()) {
    fuzz::require(
        member.instance.empty() && member.version.empty() && member.root_kcv.empty() && member.sync_config.empty(),
        "an unreadable member record carries its reason only");
  } else {
    const auto again = detail::parse_member(detail::serialize_member(member), name);
    fuzz::require(again.error.empty() && again.instance == member.instance && again.version == member.version &&
                      again.root_kcv == member.root_kcv && again.sealed == member.sealed &&
                      again.seen_revision == member.seen_revision && again.started_unix == member.started_unix &&
                      again.sync == member.sync && again.sync_config == member.sync_config,
                  "a member record round-trips");
  }
  // As a sync bucket's owner: never refused, a bad one carries its reason
  // only; one that reads names a host and round-trips.
  const auto owner = detail::parse_bucket_owner(in, 7);
  fuzz::require(owner.bucket == 7, "a bucket owner record is its key's bucket's");
  if (!owner.error.empty()) {
    fuzz::require(owner.host_id.empty() && owner.instance.empty(),
                  "an unreadable owner record carries its reason only");
  } else {
    fuzz::require(!owner.host_id.empty(), "an owner record names a host");
    const std::string text = detail::serialize_bucket_owner(owner);
    const auto again = detail::parse_bucket_owner(text, 7);
    fuzz::require(again.error.empty() && again.host_id == owner.host_id && again.instance == owner.instance,
                  "an owner record round-trips");
    fuzz::require(detail::serialize_bucket_owner(again) == text, "owner re-encoding is a fixed point");
  }
  // As a token record: one that reads is the named token's, with a SHA-256
  // hex hash (never a token), and writes back to the same record.
  if (const auto token = rootseal::daemon::parse_token_record(name, in)) {
    fuzz::require(token->info.accessor == name, "a token record is its key's accessor's");
    fuzz::require(token->hash.size() == 64, "a token record holds a SHA-256 hex hash");
    const std::string text = rootseal::daemon::serialize_token_record(*token);
    const auto again = rootseal::daemon::parse_token_record(name, text);
    fuzz::require(again && again->hash == token->hash && again->info.policies == token->info.policies &&
                      again->info.expire_time == token->info.expire_time &&
                      again->info.display_name == token->info.display_name &&
                      again->info.renewable == token->info.renewable && again->info.root == token->info.root,
                  "a token record round-trips");
    fuzz::require(rootseal::daemon::serialize_token_record(*again) == text, "token re-encoding is a fixed point");
  }
  // As a keyring key: refused as storage_failure, or a record with the id
  // its etcd key carries, valid as a store holds it, that round-trips.
  if (auto kk = detail::parse_keyring_key(in, name); !kk) {
    fuzz::require_clean_error(kk.error(), {Errc::storage_failure}, "keyring key record refusal");
    fuzz::require(kk.error().message.starts_with("etcd store: "), "refusals start with etcd store:");
  } else {
    fuzz::require(std::to_string(kk->id) == name, "a keyring key record carries its key's id");
    fuzz::require(kms::validate_keyring_key_record(*kk).has_value(), "a keyring key record read is valid");
    const std::string text = detail::serialize_keyring_key(*kk);
    const auto again = detail::parse_keyring_key(text, name);
    fuzz::require(again && *again == *kk, "a keyring key record round-trips");
    fuzz::require(detail::serialize_keyring_key(*again) == text, "keyring key re-encoding is a fixed point");
  }
  auto rec = detail::parse_key_record(in, name);
  if (!rec) {
    fuzz::require_clean_error(rec.error(), {Errc::storage_failure}, "key record refusal");
    fuzz::require(rec.error().message.starts_with("etcd store: "), "refusals start with etcd store:");
    return 0;
  }
  fuzz::require(rec->name == name, "the record is the named key's");
  fuzz::require(!rec->versions.empty(), "a record has versions");
  for (std::size_t i = 0; i < rec->versions.size(); ++i) {
    fuzz::require(rec->versions[i].version == i + 1, "versions are 1..N without gaps");
    fuzz::require(!rec->versions[i].wrapped_key.empty(), "every version has a wrapped key");
  }
  const auto latest = static_cast<std::uint32_t>(rec->versions.size());
  fuzz::require(rec->config.min_decryption_version >= 1 && rec->config.min_decryption_version <= latest,
                "min_decryption_version within 1..N");
  fuzz::require(rec->config.min_encryption_version <= latest, "min_encryption_version within 0..N");

  const std::string text = detail::serialize_key_record(*rec);
  auto again = detail::parse_key_record(text, name);
  fuzz::require(again.has_value(), "a re-encoded record parses");
  fuzz::require(same(*rec, *again), "a re-encoded record is the same record");
  fuzz::require(detail::serialize_key_record(*again) == text, "re-encoding is a fixed point");
  return 0;
}
