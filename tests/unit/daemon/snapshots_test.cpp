// The `snapshots:` section of rootseald.yaml, snapshot names and retention.
#include <catch2/catch.hpp>

#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/snapshots.hpp"
#include "rootseal/kms/snapshot.hpp"

using namespace rootseal;
using namespace rootseal::daemon;

TEST_CASE("snapshots: a full section is read") {
  auto cfg = parse_config(R"(
snapshots:
  interval: 30m
  retain:
    count: 48
    age: 720h
  destinations:
    - name: local
      kind: folder
      path: /var/backups/rootseal
    - name: s3-prod
      kind: s3
      bucket: rootseal-snapshots
      prefix: prod/eu/
      region: eu-west-1
      endpoint: https://s3.internal:9000
      server_side_encryption: aws:kms
      sse_kms_key_id: alias/rootseal
      ca_file: /etc/rootseal/s3-ca.pem
      access_key_id: {file: /etc/rootseal/s3-id}
      secret_access_key: {credential: s3-secret}
      session_token: {credential: s3-session}
)");
  if (!cfg) FAIL(cfg.error().message);
  REQUIRE(cfg->snapshots);
  const auto& s = *cfg->snapshots;
  CHECK(s.enabled);
  CHECK(s.interval == std::chrono::minutes(30));
  CHECK(s.retain_count == 48);
  CHECK(s.retain_age == std::chrono::hours(720));
  REQUIRE(s.destinations.size() == 2);
  CHECK(s.destinations[0].kind == "folder");
  CHECK(s.destinations[0].path == "/var/backups/rootseal");
  const auto& d = s.destinations[1];
  CHECK(d.name == "s3-prod");
  CHECK(d.bucket == "rootseal-snapshots");
  CHECK(d.prefix == "prod/eu/");
  CHECK(d.region == "eu-west-1");
  CHECK(d.endpoint == "https://s3.internal:9000");
  CHECK(d.server_side_encryption == "aws:kms");
  CHECK(d.sse_kms_key_id == "alias/rootseal");
  CHECK(d.ca_file == "/etc/rootseal/s3-ca.pem");
  CHECK(d.access_key_id.file == "/etc/rootseal/s3-id");
  CHECK(d.secret_access_key.credential == "s3-secret");
  CHECK(d.session_token.credential == "s3-session");
}

TEST_CASE("snapshots: gcs and azure destinations are read") {
  auto cfg = parse_config(R"(
snapshots:
  destinations:
    - name: gcs
      kind: gcs
      bucket: rootseal-snapshots
      prefix: prod/
      endpoint: http://127.0.0.1:4443
      token_uri: http://127.0.0.1:4443/token
      ca_file: /etc/rootseal/gcs-ca.pem
      service_account_json: {credential: gcs-key}
    - name: blob
      kind: azure
      account: rootsealbackups
      container: snapshots
      prefix: prod/
      tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 0c4f3e2a-1111-2222-3333-444455556666
      authority_host: https://login.example
      client_secret: {file: /etc/rootseal/blob-secret}
)");
  if (!cfg) FAIL(cfg.error().message);
  const auto& g = cfg->snapshots->destinations.at(0);
  CHECK(g.kind == "gcs");
  CHECK(g.bucket == "rootseal-snapshots");
  CHECK(g.prefix == "prod/");
  CHECK(g.endpoint == "http://127.0.0.1:4443");
  CHECK(g.token_uri == "http://127.0.0.1:4443/token");
  CHECK(g.ca_file == "/etc/rootseal/gcs-ca.pem");
  CHECK(g.service_account_json.credential == "gcs-key");
  const auto& a = cfg->snapshots->destinations.at(1);
  CHECK(a.kind == "azure");
  CHECK(a.account == "rootsealbackups");
  CHECK(a.container == "snapshots");
  CHECK(a.prefix == "prod/");
  CHECK(a.endpoint.empty());  // the real service unless overridden
  CHECK(a.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47");
  CHECK(a.client_id == "0c4f3e2a-1111-2222-3333-444455556666");
  CHECK(a.authority_host == "https://login.example");
  CHECK(a.client_secret.file == "/etc/rootseal/blob-secret");
}

TEST_CASE("snapshots: gcs and azure destinations refuse what is missing or misplaced, secrets never inline") {
  const std::string gcs = "snapshots:\n  destinations:\n    - name: g\n      kind: gcs\n";
  const std::string az = "snapshots:\n  destinations:\n    - name: a\n      kind: azure\n";
  const std::string az_ok = az +
                            "      account: acct\n      container: snaps\n      tenant_id: t\n"
                            "      client_id: c\n";
  const std::pair<std::string, std::string> cases[] = {
      {gcs + "      service_account_json: {file: /k}\n", "snapshots.destinations.g.bucket: required for gcs"},
      {gcs + "      bucket: b-1\n", "snapshots.destinations.g.service_account_json: required for gcs"},
      {gcs + "      bucket: b-1\n      service_account_json: '{\"private_key\": \"hunter2\"}'\n",
       "must be {file: PATH} or {credential: NAME}"},
      {gcs + "      bucket: b-1\n      service_account_json: {file: /k}\n      region: r\n",
       "snapshots.destinations.g.region: not an option of a gcs destination"},
      {gcs + "      bucket: b-1\n      service_account_json: {file: /k}\n      endpoint: storage.local\n",
       "snapshots.destinations.g.endpoint: must be an http(s):// URL"},
      {gcs + "      bucket: b-1\n      service_account_json: {file: /k}\n      token_uri: oauth2.local/token\n",
       "snapshots.destinations.g.token_uri: must be an http(s):// URL"},
      {gcs + "      bucket: b-1\n      service_account_json: {file: /k}\n      prefix: /x/\n",
       "snapshots.destinations.g.prefix: must end with '/' and not start with one"},
      {az + "      container: snaps\n      tenant_id: t\n      client_id: c\n      client_secret: {file: /s}\n",
       "snapshots.destinations.a.account: required for azure"},
      {az + "      account: acct\n      tenant_id: t\n      client_id: c\n      client_secret: {file: /s}\n",
       "snapshots.destinations.a.container: required for azure"},
      {az + "      account: acct\n      container: snaps\n      client_id: c\n      client_secret: {file: /s}\n",
       "snapshots.destinations.a.tenant_id: required for azure"},
      {az + "      account: acct\n      container: snaps\n      tenant_id: t\n      client_secret: {file: /s}\n",
       "snapshots.destinations.a.client_id: required for azure"},
      {az_ok, "snapshots.destinations.a.client_secret: required for azure ({file: ...} or {credential: ...})"},
      {az_ok + "      client_secret: hunter2\n", "a secret is never written in the configuration"},
      {az_ok + "      client_secret: {file: /s}\n      bucket: b\n",
       "snapshots.destinations.a.bucket: not an option of an azure destination"},
      {az_ok + "      client_secret: {file: /s}\n      authority_host: login.local\n",
       "snapshots.destinations.a.authority_host: must be an http(s):// URL"},
      {az_ok + "      client_secret: {file: /s}\n      access_key_id: {file: /i}\n",
       "not an option of an azure destination"},
  };
  for (const auto& [yaml, message] : cases) {
    INFO(yaml);
    auto cfg = parse_config(yaml);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().message.find(message) != std::string::npos);
    CHECK(cfg.error().message.find("hunter2") == std::string::npos);
  }
  // The same destinations, complete, are accepted.
  CHECK(parse_config(gcs + "      bucket: b-1\n      service_account_json: {file: /k}\n"));
  CHECK(parse_config(az_ok + "      client_secret: {credential: blob}\n"));
}

TEST_CASE("snapshots: defaults, and no section means no snapshots") {
  auto none = parse_config("");
  REQUIRE(none);
  CHECK_FALSE(none->snapshots);
  auto cfg = parse_config("snapshots:\n  destinations:\n    - {name: l, kind: folder, path: /b}\n");
  if (!cfg) FAIL(cfg.error().message);
  CHECK(cfg->snapshots->interval == std::chrono::hours(1));
  CHECK(cfg->snapshots->retain_count == 24);
  CHECK(cfg->snapshots->retain_age == std::chrono::milliseconds(0));
}

TEST_CASE("snapshots: bad values are refused with the option's name, secrets never inline") {
  const std::string s3 =
      "snapshots:\n  destinations:\n    - name: x\n      kind: s3\n      bucket: b-1\n      region: r\n"
      "      access_key_id: {file: /i}\n      secret_access_key: {file: /s}\n";
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"snapshots:\n  interval: 1h\n", "snapshots.destinations: required"},
      {"snapshots:\n  destinations: []\n", "snapshots.destinations: required"},
      {"snapshots:\n  intervall: 1h\n", "snapshots: unknown option 'intervall'"},
      {"snapshots:\n  interval: 500ms\n  destinations:\n    - {name: l, kind: folder, path: /b}\n",
       "snapshots.interval: at least 1s"},
      {"snapshots:\n  retain: {count: 0}\n  destinations:\n    - {name: l, kind: folder, path: /b}\n",
       "snapshots.retain.count: 1 to 100000"},
      {"snapshots:\n  interval: 1h\n  retain: {age: 10m}\n  destinations:\n    - {name: l, kind: folder, path: /b}\n",
       "snapshots.retain.age"},
      {"snapshots:\n  destinations:\n    - {name: l, kind: folder, path: rel}\n",
       "snapshots.destinations.l.path: must be an absolute path"},
      {"snapshots:\n  destinations:\n    - {name: l, kind: folder}\n", "snapshots.destinations.l.path: required"},
      {"snapshots:\n  destinations:\n    - {name: l, kind: tape}\n",
       "snapshots.destinations.l.kind: folder, s3, gcs or azure"},
      {"snapshots:\n  destinations:\n    - {name: L!, kind: folder, path: /b}\n", "name: 1 to 32 of"},
      {"snapshots:\n  destinations:\n    - {name: l, kind: folder, path: /b}\n    - {name: l, kind: folder, path: "
       "/c}\n",
       "is used twice"},
      {"snapshots:\n  destinations:\n    - {name: l, kind: folder, path: /b, bucket: x}\n",
       "not an option of a folder"},
      {s3 + "      prefix: /abs/\n", "prefix: must end with '/' and not start with one"},
      {s3 + "      prefix: noslash\n", "prefix: must end with '/'"},
      {s3 + "      server_side_encryption: aes\n", "server_side_encryption: AES256 or aws:kms"},
      {s3 + "      sse_kms_key_id: k\n", "sse_kms_key_id: needs server_side_encryption: aws:kms"},
      {s3 + "      endpoint: s3.local\n", "endpoint: must be an http(s):// URL"},
      {"snapshots:\n  destinations:\n    - {name: x, kind: s3, region: r, access_key_id: {file: /i}, "
       "secret_access_key: {file: /s}}\n",
       "bucket: required"},
      {"snapshots:\n  destinations:\n    - {name: x, kind: s3, bucket: b-1, region: r, access_key_id: AKIAXXXX, "
       "secret_access_key: {file: /s}}\n",
       "must be {file: PATH} or {credential: NAME}"},
      {"snapshots:\n  destinations:\n    - {name: x, kind: s3, bucket: b-1, region: r, access_key_id: {file: /i}, "
       "secret_access_key: hunter2}\n",
       "a secret is never written in the configuration"},
      {"snapshots:\n  destinations:\n    - {name: x, kind: s3, bucket: b-1, region: r, access_key_id: {file: /i}}\n",
       "s3 needs access_key_id and secret_access_key"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto cfg = parse_config(c.yaml);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().message.find(c.message) != std::string::npos);
    CHECK(cfg.error().message.find("hunter2") == std::string::npos);
    CHECK(cfg.error().message.find("AKIAXXXX") == std::string::npos);
  }
}

TEST_CASE("snapshots: names give their time back") {
  const std::int64_t t = 1796570340123;
  CHECK(snapshot_name_time(kms::snapshot_object_name(t)) == t);
  CHECK_FALSE(snapshot_name_time("rootseal-20261306T151900.123Z.snap"));  // month 13
  CHECK_FALSE(snapshot_name_time("notes.txt"));
}

TEST_CASE("snapshots: retention keeps the newest count, drops the too old, never the new one or strangers") {
  const std::int64_t hour = 3'600'000;
  const std::int64_t now = 1796570340000;
  std::vector<sync::ObjectInfo> objects;
  for (int i = 0; i < 6; ++i) objects.push_back({kms::snapshot_object_name(now - i * hour), 10});
  objects.push_back({"README", 5});
  const auto newest = kms::snapshot_object_name(now);

  auto by_count = snapshots_to_delete(objects, newest, 4, std::chrono::milliseconds(0), now);
  REQUIRE(by_count == std::vector<std::string>{kms::snapshot_object_name(now - 4 * hour),
                                               kms::snapshot_object_name(now - 5 * hour)});
  auto by_age = snapshots_to_delete(objects, newest, 100, std::chrono::milliseconds(2 * hour + 1), now);
  REQUIRE(by_age == std::vector<std::string>{kms::snapshot_object_name(now - 3 * hour),
                                             kms::snapshot_object_name(now - 4 * hour),
                                             kms::snapshot_object_name(now - 5 * hour)});
  // Everything is "too old" at a far later time: the one just written stays.
  auto all_old = snapshots_to_delete(objects, newest, 100, std::chrono::milliseconds(hour), now + 1000 * hour);
  CHECK(all_old.size() == 5);
  CHECK(std::find(all_old.begin(), all_old.end(), newest) == all_old.end());
  CHECK(std::find(all_old.begin(), all_old.end(), "README") == all_old.end());
}
