// The value one transit key has in etcd: written and read back unchanged;
// whatever else etcd may hold under the prefix is refused with a clear error.
#include <catch2/catch.hpp>

#include "key_record.hpp"

using namespace rootseal;
using etcdstore::detail::parse_key_record;
using etcdstore::detail::serialize_key_record;
using kms::Errc;

namespace {

kms::KeyRecord sample() {
  kms::KeyRecord r;
  r.name = "payments";
  r.type = kms::KeyType::aes256_gcm96;
  r.derived = true;
  r.created_unix = 1700000000;
  r.config.min_decryption_version = 2;
  r.config.min_encryption_version = 2;
  r.config.deletion_allowed = true;
  r.config.auto_rotate_period_s = 86400;
  r.versions.push_back({1, 1700000000, {1, 2, 3, 4}, "kcv-a"});
  r.versions.push_back({2, 1700000100, {5, 6, 7}, "kcv-a"});
  return r;
}

std::string refusal(std::string_view text, std::string_view name = "payments") {
  auto r = parse_key_record(text, name);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::storage_failure);
  return r.error().message;
}

}  // namespace

TEST_CASE("etcd key record: written and read back unchanged") {
  const auto rec = sample();
  const auto text = serialize_key_record(rec);
  auto back = parse_key_record(text, "payments");
  REQUIRE(back);
  CHECK(back->name == rec.name);
  CHECK(back->type == rec.type);
  CHECK(back->derived == rec.derived);
  CHECK(back->created_unix == rec.created_unix);
  CHECK(back->config == rec.config);
  REQUIRE(back->versions.size() == 2);
  CHECK(back->versions[1].wrapped_key == rec.versions[1].wrapped_key);
  CHECK(back->versions[1].root_kcv == "kcv-a");
  CHECK(back->versions[1].created_unix == 1700000100);
  CHECK(serialize_key_record(*back) == text);
}

TEST_CASE("etcd key record: malformed or inconsistent values are refused, naming the key") {
  auto text = serialize_key_record(sample());
  CHECK(refusal("not json").find("'payments' is not a JSON object") != std::string::npos);
  CHECK(refusal(text, "other").find("names another key") != std::string::npos);
  CHECK(refusal(text, ".bad").find("invalid key name") != std::string::npos);

  auto with = [&](std::string from, std::string to) {
    auto t = text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    return t;
  };
  CHECK(refusal(with("\"format\":1", "\"format\":2")).find("format 2") != std::string::npos);
  CHECK(refusal(with("\"version\":2", "\"version\":3")).find("gap") != std::string::npos);
  CHECK(refusal(with("aes256-gcm96", "rot13")).find("unknown type") != std::string::npos);
  CHECK(refusal(with("\"wrapped\":\"AQIDBA==\"", "\"wrapped\":\"!!\"")).find("bad wrapped key") != std::string::npos);
  CHECK(refusal(with("\"wrapped\":\"AQIDBA==\"", "\"wrapped\":\"\"")).find("bad wrapped key") != std::string::npos);
  CHECK(refusal(with("\"kcv\":\"kcv-a\"", "\"kcv\":\"\"")).find("bad kcv") != std::string::npos);
  CHECK(refusal(with("\"min_decryption_version\":2", "\"min_decryption_version\":3")).find("above its latest") !=
        std::string::npos);
  CHECK(refusal(with("\"derived\":true", "\"derived\":1")).find("not a boolean") != std::string::npos);
  CHECK(refusal(with("\"created\":1700000000,\"config\"", "\"created\":-1,\"config\"")).find("out of range") !=
        std::string::npos);
  CHECK(refusal(with("\"format\":1", "\"format\":1,\"plaintext\":\"x\"")).find("unknown field") != std::string::npos);
  CHECK(refusal(R"({"format":1,"name":"payments","type":"aes256-gcm96","derived":false,"created":1,)"
                R"("config":{"min_decryption_version":1,"min_encryption_version":0,"deletion_allowed":false,)"
                R"("auto_rotate_period":0},"versions":[]})")
            .find("has no versions") != std::string::npos);
}

TEST_CASE("etcd member record: written and read back, unreadable ones carry the reason") {
  etcdstore::EtcdStore::Member m;
  m.host_id = "host-a";
  m.instance = "i-1";
  m.version = "0.1.0";
  m.root_kcv = "abc123";
  m.sealed = false;
  m.seen_revision = 77;
  m.started_unix = 1'700'000'000;
  const auto back = etcdstore::detail::parse_member(etcdstore::detail::serialize_member(m), "host-a");
  CHECK(back.error.empty());
  CHECK(back.host_id == "host-a");
  CHECK(back.instance == "i-1");
  CHECK(back.version == "0.1.0");
  CHECK(back.root_kcv == "abc123");
  CHECK_FALSE(back.sealed);
  CHECK(back.seen_revision == 77);
  CHECK(back.started_unix == 1'700'000'000);
  // Under another host's name, not JSON, a field missing or of the wrong type.
  for (const std::string& bad :
       {etcdstore::detail::serialize_member(m), std::string("not json"), std::string(R"({"host_id":"x"})"),
        std::string(R"({"host_id":"x","instance":"i","version":"v","root_kcv":"k",)"
                    R"("sealed":"no","seen_revision":1,"started":1})")}) {
    const auto r = etcdstore::detail::parse_member(bad, "x");
    CHECK(r.host_id == "x");
    CHECK_FALSE(r.error.empty());
    CHECK(r.instance.empty());
  }
}

TEST_CASE("etcd member record: the sync flag is written when set and read back, absent means no sync") {
  etcdstore::EtcdStore::Member m;
  m.host_id = "host-a";
  m.instance = "i-1";
  const std::string plain = etcdstore::detail::serialize_member(m);
  CHECK(plain.find("sync") == std::string::npos);  // what an older release reads
  CHECK_FALSE(etcdstore::detail::parse_member(plain, "host-a").sync);
  m.sync = true;
  const auto back = etcdstore::detail::parse_member(etcdstore::detail::serialize_member(m), "host-a");
  CHECK(back.error.empty());
  CHECK(back.sync);
  const auto bad = etcdstore::detail::parse_member(
      R"({"host_id":"x","instance":"i","version":"v","root_kcv":"k","sealed":true,"seen_revision":1,"started":1,"sync":1})",
      "x");
  CHECK_FALSE(bad.error.empty());
  CHECK_FALSE(bad.sync);
}

TEST_CASE("etcd member record: the sync configuration's fingerprint is written when set and read back") {
  etcdstore::EtcdStore::Member m;
  m.host_id = "host-a";
  m.instance = "i-1";
  CHECK(etcdstore::detail::serialize_member(m).find("sync_config") == std::string::npos);
  m.sync = true;
  m.sync_config = std::string(64, 'a');
  const auto back = etcdstore::detail::parse_member(etcdstore::detail::serialize_member(m), "host-a");
  CHECK(back.error.empty());
  CHECK(back.sync_config == m.sync_config);
  // Anything but 64 lowercase hex digits is a bad record (nothing else is taken from it).
  for (const std::string& fp : {std::string(63, 'a'), std::string(64, 'A'), std::string(63, 'a') + "g"}) {
    const auto bad = etcdstore::detail::parse_member(
        R"({"host_id":"x","instance":"i","version":"v","root_kcv":"k","sealed":true,"seen_revision":1,"started":1,)"
        R"("sync_config":")" +
            fp + R"("})",
        "x");
    CHECK_FALSE(bad.error.empty());
    CHECK(bad.sync_config.empty());
  }
}

TEST_CASE("etcd bucket owner record: written and read back, unreadable ones carry the reason") {
  etcdstore::EtcdStore::BucketOwner o;
  o.host_id = "rs-1";
  o.instance = "i-9";
  const auto back = etcdstore::detail::parse_bucket_owner(etcdstore::detail::serialize_bucket_owner(o), 12);
  CHECK(back.error.empty());
  CHECK(back.bucket == 12);
  CHECK(back.host_id == "rs-1");
  CHECK(back.instance == "i-9");
  for (const std::string& bad :
       {std::string("not json"), std::string(R"({"host_id":"","instance":"i"})"), std::string(R"({"host_id":"h"})"),
        std::string(R"({"host_id":1,"instance":"i"})"), std::string(5000, ' ')}) {
    const auto r = etcdstore::detail::parse_bucket_owner(bad, 3);
    CHECK(r.bucket == 3);
    CHECK_FALSE(r.error.empty());
    CHECK(r.host_id.empty());
  }
}
