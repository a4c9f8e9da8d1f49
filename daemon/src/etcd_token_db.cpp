#include "etcd_token_db.hpp"

#include "log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace rootseal::daemon {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

constexpr std::size_t kMaxRecordBytes = 16 * 1024;
constexpr std::size_t kMaxPolicies = 64;
constexpr int kCasAttempts = 16;

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::optional<std::int64_t> non_negative(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64() && v->get_int64() >= 0) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  return std::nullopt;
}

// etcd's failures, named for the operator: a token change waits for etcd.
kms::Error token_failure(const kms::Error& e, std::string_view what) {
  return kms::Error(e.code, "token store (etcd): " + std::string(what) + ": " + e.message);
}

}  // namespace

std::string serialize_token_record(const StoredToken& t) {
  json::object o;
  o["v"] = 1;
  o["hash"] = t.hash;
  o["accessor"] = t.info.accessor;
  o["display_name"] = t.info.display_name;
  json::array policies;
  for (const auto& p : t.info.policies) policies.emplace_back(p);
  o["policies"] = std::move(policies);
  o["creation_time"] = t.info.creation_time;
  o["ttl_s"] = t.info.ttl_s;
  o["expire_time"] = t.info.expire_time;
  o["renewable"] = t.info.renewable;
  return json::serialize(o);
}

std::optional<StoredToken> parse_token_record(std::string_view accessor, std::string_view text) {
  if (text.size() > kMaxRecordBytes || accessor.empty() || accessor.size() > 64 || !lower_hex(accessor)) {
    return std::nullopt;
  }
  json::error_code ec;
  const json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::object& o = v.as_object();
  const auto* version = o.if_contains("v");
  if (version == nullptr || !version->is_int64() || version->get_int64() != 1) return std::nullopt;
  const auto* hash = o.if_contains("hash");
  const auto* acc = o.if_contains("accessor");
  const auto* name = o.if_contains("display_name");
  const auto* policies = o.if_contains("policies");
  const auto* renewable = o.if_contains("renewable");
  if (hash == nullptr || !hash->is_string() || hash->as_string().size() != 64 || !lower_hex(hash->as_string())) {
    return std::nullopt;
  }
  if (acc == nullptr || !acc->is_string() || acc->as_string() != accessor) return std::nullopt;
  if (name == nullptr || !name->is_string() || name->as_string().size() > 256) return std::nullopt;
  if (policies == nullptr || !policies->is_array() || policies->as_array().size() > kMaxPolicies) return std::nullopt;
  if (renewable == nullptr || !renewable->is_bool()) return std::nullopt;
  StoredToken t;
  for (const auto& p : policies->as_array()) {
    if (!p.is_string() || p.as_string().empty() || p.as_string().size() > 128) return std::nullopt;
    t.info.policies.emplace_back(p.as_string());
  }
  const auto created = non_negative(o, "creation_time");
  const auto ttl = non_negative(o, "ttl_s");
  const auto expires = non_negative(o, "expire_time");
  if (!created || !ttl || !expires) return std::nullopt;
  t.hash = std::string(hash->as_string());
  t.info.accessor = std::string(accessor);
  t.info.display_name = std::string(name->as_string());
  t.info.creation_time = *created;
  t.info.ttl_s = *ttl;
  t.info.expire_time = *expires;
  t.info.renewable = renewable->as_bool();
  t.info.root = std::find(t.info.policies.begin(), t.info.policies.end(), "root") != t.info.policies.end();
  t.info.persistent = true;
  return t;
}

struct EtcdTokenDb::Impl {
  std::string prefix;  // <prefix>tokens/
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::shared_ptr<etcd::Client> client;
  std::thread io_thread;
  std::chrono::milliseconds watch_retry{1000};
  std::atomic<std::int64_t> loaded_revision{0};
  std::atomic<std::size_t> ignored{0};

  std::mutex watch_mu;
  bool watching = false;
  net::StreamControl control;
  std::shared_ptr<asio::steady_timer> retry_timer;
  std::promise<void> watch_done;
  std::future<void> watch_finished;

  ~Impl() {
    work.reset();
    io.stop();
    if (io_thread.joinable()) io_thread.join();
  }

  template <class T>
  T run(asio::awaitable<T> call) {
    return asio::co_spawn(io, std::move(call), asio::use_future).get();
  }

  std::string key_of(std::string_view accessor) const { return prefix + std::string(accessor); }

  // One token's value and its mod_revision (nullopt: absent or unreadable).
  kms::Result<std::optional<std::pair<StoredToken, std::int64_t>>> read(std::string_view accessor) {
    etcd::RangeRequest req;
    req.key = key_of(accessor);
    auto r = run(client->range(std::move(req)));
    if (!r) return std::unexpected(token_failure(r.error(), "read"));
    if (r->kvs.empty()) return std::optional<std::pair<StoredToken, std::int64_t>>{};
    auto t = parse_token_record(accessor, r->kvs.front().value);
    if (!t) return std::optional<std::pair<StoredToken, std::int64_t>>{};
    return std::optional(std::make_pair(std::move(*t), r->kvs.front().mod_revision));
  }

  asio::awaitable<void> watch_loop(std::int64_t start, std::function<void()> changed) {
    std::int64_t next = start;
    std::int64_t seen = 0;
    while (!control.cancelled()) {
      etcd::WatchRequest req;
      req.key = prefix;
      req.range_end = etcd::prefix_end(prefix);
      req.start_revision = next;
      auto handler = [&](std::span<const etcd::Event> events, const etcd::ResponseHeader&) {
        for (const auto& e : events) seen = std::max(seen, e.kv.mod_revision);
        if (!events.empty()) changed();
      };
      auto ended = co_await client->watch(std::move(req), handler, control);
      if (control.cancelled()) break;
      if (ended && ended->reason == etcd::WatchEnd::Reason::compacted) {
        changed();  // changes were compacted away: the caller re-reads everything
        next = ended->compact_revision;
        continue;
      }
      if (ended && ended->next_revision > 0) next = ended->next_revision;
      if (!ended && seen > 0) next = std::max(next, seen + 1);
      {
        std::lock_guard lock(watch_mu);
        retry_timer = std::make_shared<asio::steady_timer>(io, watch_retry);
      }
      co_await retry_timer->async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
};

kms::Result<std::unique_ptr<EtcdTokenDb>> EtcdTokenDb::open(etcd::ClientConfig client, std::string prefix) {
  if (prefix.empty() || prefix.back() != '/')
    return fail(Errc::invalid_argument, "token store: the prefix must end with '/'");
  auto impl = std::make_unique<Impl>();
  impl->prefix = prefix + "tokens/";
  impl->watch_retry = client.watch_retry_max;
  auto c = etcd::Client::create(impl->io.get_executor(), std::move(client));
  if (!c) return std::unexpected(c.error());
  impl->client = std::move(*c);
  impl->io_thread = std::thread([io = &impl->io] { io->run(); });
  return std::unique_ptr<EtcdTokenDb>(new EtcdTokenDb(std::move(impl)));
}

EtcdTokenDb::EtcdTokenDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EtcdTokenDb::~EtcdTokenDb() { stop_watch(); }

std::size_t EtcdTokenDb::ignored() const noexcept { return impl_->ignored.load(); }

kms::Result<std::vector<StoredToken>> EtcdTokenDb::load_all() {
  Impl& s = *impl_;
  etcd::RangeRequest req;
  req.key = s.prefix;
  req.range_end = etcd::prefix_end(s.prefix);
  auto r = s.run(s.client->range(std::move(req)));
  if (!r) return std::unexpected(token_failure(r.error(), "load"));
  std::vector<StoredToken> out;
  std::size_t ignored = 0;
  std::string first_ignored;
  for (const auto& kv : r->kvs) {
    const std::string_view accessor = std::string_view(kv.key).substr(s.prefix.size());
    auto t = parse_token_record(accessor, kv.value);
    if (t) {
      out.push_back(std::move(*t));
    } else if (ignored++ == 0) {
      first_ignored = std::string(accessor.substr(0, 128));
    }
  }
  // Said once per change of the count (every host re-reads on each token
  // change): a record another writer left that no host will honour.
  if (s.ignored.exchange(ignored) != ignored && ignored > 0) {
    log::warn(
        "created tokens: records on etcd that do not read as tokens are ignored (no host accepts them)",
        {{"ignored", static_cast<std::int64_t>(ignored)}, {"first", s.prefix + first_ignored}, {"prefix", s.prefix}});
  }
  s.loaded_revision = r->header.revision;
  std::sort(out.begin(), out.end(), [](const StoredToken& a, const StoredToken& b) {
    return a.info.creation_time != b.info.creation_time ? a.info.creation_time < b.info.creation_time
                                                        : a.info.accessor < b.info.accessor;
  });
  return out;
}

kms::Result<void> EtcdTokenDb::insert(const std::string& hash, const TokenInfo& info) {
  Impl& s = *impl_;
  StoredToken t{hash, info};
  if (!parse_token_record(info.accessor, serialize_token_record(t))) {
    return fail(Errc::invalid_argument, "token store: a token record that would not read back");
  }
  const std::string key = s.key_of(info.accessor);
  etcd::TxnRequest txn;
  txn.compare.push_back(etcd::Compare::create_revision(key, 0));
  etcd::PutRequest put{key, serialize_token_record(t), 0, false};
  txn.success.emplace_back(std::move(put));
  auto r = s.run(s.client->txn(std::move(txn)));
  if (!r) return std::unexpected(token_failure(r.error(), "create"));
  if (!r->succeeded) {
    // A retried txn whose first attempt committed finds its own value.
    auto current = s.read(info.accessor);
    if (current && *current && current->value().first.hash == hash) return {};
    return fail(Errc::already_exists, "token store: accessor " + info.accessor + " is taken");
  }
  return {};
}

kms::Result<bool> EtcdTokenDb::remove(std::string_view accessor) {
  Impl& s = *impl_;
  etcd::DeleteRequest req;
  req.key = s.key_of(accessor);
  auto r = s.run(s.client->delete_range(std::move(req)));
  if (!r) return std::unexpected(token_failure(r.error(), "revoke"));
  return r->deleted > 0;
}

kms::Result<void> EtcdTokenDb::set_expiry(std::string_view accessor, std::int64_t expire_time) {
  Impl& s = *impl_;
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    ROOTSEAL_LET(current, s.read(accessor));
    if (!current) return fail(Errc::not_found, "token store: no token with accessor " + std::string(accessor));
    auto& [token, mod_revision] = *current;
    if (token.info.expire_time >= expire_time) return {};  // another host renewed it further
    token.info.expire_time = expire_time;
    const std::string key = s.key_of(accessor);
    etcd::TxnRequest txn;
    txn.compare.push_back(etcd::Compare::mod_revision(key, mod_revision));
    etcd::PutRequest put{key, serialize_token_record(token), 0, false};
    txn.success.emplace_back(std::move(put));
    auto r = s.run(s.client->txn(std::move(txn)));
    if (!r) return std::unexpected(token_failure(r.error(), "renew"));
    if (r->succeeded) return {};
  }
  return fail(Errc::conflict, "token store: the token kept changing while it was renewed");
}

kms::Result<std::size_t> EtcdTokenDb::purge_expired(std::int64_t now) {
  Impl& s = *impl_;
  etcd::RangeRequest req;
  req.key = s.prefix;
  req.range_end = etcd::prefix_end(s.prefix);
  auto r = s.run(s.client->range(std::move(req)));
  if (!r) return std::unexpected(token_failure(r.error(), "purge"));
  std::size_t purged = 0;
  for (const auto& kv : r->kvs) {
    auto t = parse_token_record(std::string_view(kv.key).substr(s.prefix.size()), kv.value);
    if (!t || t->info.expire_time == 0 || t->info.expire_time > now) continue;
    // Only the value read: a renewal another host committed meanwhile wins.
    etcd::TxnRequest txn;
    txn.compare.push_back(etcd::Compare::mod_revision(kv.key, kv.mod_revision));
    etcd::DeleteRequest del;
    del.key = kv.key;
    txn.success.emplace_back(std::move(del));
    auto d = s.run(s.client->txn(std::move(txn)));
    if (!d) return std::unexpected(token_failure(d.error(), "purge"));
    if (d->succeeded) ++purged;
  }
  return purged;
}

void EtcdTokenDb::start_watch(std::function<void()> changed) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.watch_mu);
    if (s.watching) return;
    s.watching = true;
  }
  const std::int64_t loaded = s.loaded_revision.load();
  s.watch_finished = s.watch_done.get_future();
  asio::co_spawn(s.io, s.watch_loop(loaded > 0 ? loaded + 1 : 0, std::move(changed)),
                 [&s](std::exception_ptr) { s.watch_done.set_value(); });
}

void EtcdTokenDb::stop_watch() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.watch_mu);
    if (!s.watching) return;
    s.watching = false;
  }
  s.control.cancel();
  asio::post(s.io, [&s] {
    std::lock_guard lock(s.watch_mu);
    if (s.retry_timer) s.retry_timer->cancel();
  });
  s.watch_finished.wait();
}

}  // namespace rootseal::daemon
