// EtcdStore: kms::StateStore on etcd (see the header for the layout and the
// rules). The etcd client is asynchronous; this store runs it on an
// io_context of its own (one thread) and blocks the calling thread (the
// daemon's blocking pool) on a future. Watch events are handed to a worker
// thread, so the callbacks may call back into the store.
#include "rootseal/etcdstore/etcd_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <charconv>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include "key_record.hpp"
#include "rootseal/kms/keyring.hpp"

namespace rootseal::etcdstore {
namespace {

namespace asio = boost::asio;
using kms::Errc;
using kms::fail;
using kms::Result;

constexpr int kMaxAttempts = 16;         // CAS rounds before a mutation gives up (conflict)
constexpr std::int64_t kPageSize = 256;  // keys per range page
constexpr std::size_t kMaxTxnKeys = 64;  // etcd's --max-txn-ops is 128 (compares and puts)

std::string key_name(std::string_view name) { return "'" + std::string(name) + "'"; }

// An etcd failure of a mutation, worded for the operator and the client.
kms::Error write_failed(const kms::Error& e) {
  if (e.code == Errc::unavailable) {
    return {Errc::unavailable,
            "etcd is unavailable (no quorum or no member reachable): key changes are refused until it is back; "
            "encrypt and decrypt keep working (" +
                e.message + ")"};
  }
  return {e.code == Errc::permission_denied ? Errc::permission_denied : Errc::storage_failure, e.message};
}

// Reads and writes fail alike: a key change starts with a read.
kms::Error read_failed(const kms::Error& e) { return write_failed(e); }

}  // namespace

struct EtcdStore::Impl {
  std::string prefix;
  std::chrono::milliseconds watch_retry{1000};
  std::string keys_prefix;  // <prefix>keys/
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::shared_ptr<etcd::Client> client;
  std::thread io_thread;

  std::string root_kcv_key;   // <prefix>cluster/root_kcv
  std::string restoring_key;  // <prefix>cluster/restoring

  // The lease this host's member record lives under (0: none now); locks
  // (hold_lock) live under it too.
  std::atomic<std::int64_t> member_lease{0};
  // member_lease_state(): the lease and until when it surely lives, together.
  mutable std::mutex lease_mu;
  LeaseState lease_state;
  void lease_answered(std::int64_t lease, std::chrono::steady_clock::time_point sent, std::int64_t ttl_s) {
    std::lock_guard lock(lease_mu);
    lease_state.id = lease;
    lease_state.alive_until = sent + std::chrono::seconds(ttl_s);
  }
  void lease_gone() {
    std::lock_guard lock(lease_mu);
    member_lease.store(0);
    lease_state = LeaseState{};
  }
  std::mutex root_mu;
  std::optional<std::string> joined_kcv;  // the cluster's root KCV, once checked against the quorum

  std::atomic<std::int64_t> loaded_revision{0};
  std::atomic<std::int64_t> watched_revision{0};

  // The watch: its control, and the queue its worker drains.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  std::deque<std::variant<std::string, std::monostate>> queue;  // a name, or monostate: reload
  bool watch_stopping = false;
  bool watching = false;
  net::StreamControl control;
  std::shared_ptr<asio::steady_timer> retry_timer;
  std::thread worker;
  std::promise<void> watch_done;
  std::future<void> watch_finished;

  // The membership loop (start_membership).
  struct Membership {
    std::chrono::seconds ttl{10};
    std::function<Member()> current;
    std::function<void(const kms::Error&)> on_error;
    std::int64_t lease = 0;
    std::string written;  // the value last written under `lease`
    bool failing = false;
    bool stopping = false;
    std::shared_ptr<asio::steady_timer> timer;
    std::promise<void> done;
    std::future<void> finished;
  };
  std::mutex member_mu;
  std::unique_ptr<Membership> membership;

  ~Impl() {
    work.reset();
    io.stop();
    if (io_thread.joinable()) io_thread.join();
  }

  std::string key_of(std::string_view name) const { return keys_prefix + std::string(name); }
  std::string keyring_key_of(std::uint32_t id) const { return prefix + "keyring/" + std::to_string(id); }

  // A record is written only while every keyring key its versions name is
  // still recorded: a compare per keyring key, added to the write's `compares`.
  void fence(std::string_view tag, std::vector<etcd::Compare>& compares) const {
    const auto id = kms::keyring_key_tag_id(tag);
    if (!id) return;
    const std::string key = keyring_key_of(*id);
    for (const auto& c : compares) {
      if (c.key == key && c.target == etcd::Compare::Target::version) return;
    }
    compares.push_back(etcd::Compare::version(key, 0, etcd::Compare::Result::greater));
  }
  void fence_versions(const kms::KeyRecord& record, std::vector<etcd::Compare>& compares) const {
    for (const auto& v : record.versions) fence(v.root_kcv, compares);
  }
  // A new version: wrapped by the cluster's root (check_root), or by a
  // keyring key (fenced by the write's compares).
  Result<void> check_new_version(std::string_view tag) {
    if (kms::keyring_key_tag_id(tag)) return {};
    return check_root(tag, true);
  }
  // After a write whose compares failed: conflict when the keyring key a
  // tag names is gone (the caller wraps again under the current one).
  Result<void> still_recorded(std::string_view tag) {
    const auto id = kms::keyring_key_tag_id(tag);
    if (!id) return {};
    ROOTSEAL_LET(value, value_at(keyring_key_of(*id), 0, false));
    if (!value) {
      return fail(Errc::conflict,
                  "keyring key " + std::string(tag) + " was retired meanwhile (another host rotated the keyring key)");
    }
    return {};
  }

  // A compare: `key` lives under `lease`.
  static etcd::Compare lease_is(std::string key, std::int64_t lease) {
    etcd::Compare c;
    c.key = std::move(key);
    c.target = etcd::Compare::Target::lease;
    c.number = lease;
    return c;
  }
  // Deletes `key` if it lives under `lease`: true when it did.
  Result<bool> delete_if_lease(const std::string& key, std::int64_t lease) {
    etcd::TxnRequest txn;
    txn.compare.push_back(lease_is(key, lease));
    etcd::DeleteRequest del;
    del.key = key;
    txn.success.emplace_back(std::move(del));
    auto r = run(client->txn(std::move(txn)));
    if (!r) return std::unexpected(write_failed(r.error()));
    return r->succeeded;
  }

  // Takes `key` for this host: put `value` under `lease` if the key is free
  // (create_revision 0) and this host's member record (`member_key`) still
  // lives under that lease (the fence: leases alone are not fencing). Either
  // way the answer holds the key as it is after the transaction and whether
  // the member record is still this lease's. A claim under a lock or a bucket
  // is this one transaction (hold_lock, claim_bucket).
  struct Claim {
    bool created = false;              // written now
    std::optional<etcd::KeyValue> kv;  // the key after the transaction (nullopt: absent)
    bool fenced = false;               // the member record lives under `lease`
  };
  Result<Claim> claim_fenced(const std::string& key, std::string value, const std::string& member_key,
                             std::int64_t lease) {
    etcd::TxnRequest txn;
    txn.compare.push_back(lease_is(member_key, lease));
    txn.compare.push_back(etcd::Compare::create_revision(key, 0));
    etcd::PutRequest put;
    put.key = key;
    put.value = std::move(value);
    put.lease = lease;
    txn.success.emplace_back(std::move(put));
    etcd::RangeRequest read;
    read.key = key;
    txn.success.emplace_back(read);
    txn.failure.emplace_back(read);
    etcd::RangeRequest member;
    member.key = member_key;
    txn.failure.emplace_back(std::move(member));
    auto r = run(client->txn(std::move(txn)));
    if (!r) return std::unexpected(write_failed(r.error()));
    const std::size_t at = r->succeeded ? 1 : 0;  // the read of `key`
    const auto* range = r->responses.size() <= at ? nullptr : std::get_if<etcd::RangeResponse>(&r->responses[at]);
    if (range == nullptr) return fail(Errc::storage_failure, "etcd store: an incomplete answer to a claim");
    Claim c;
    c.created = r->succeeded;
    if (!range->kvs.empty()) c.kv = range->kvs.front();
    if (r->succeeded) {
      if (!c.kv) return fail(Errc::storage_failure, "etcd store: an incomplete answer to a claim");
      c.fenced = true;
      return c;
    }
    const auto* m = r->responses.size() < 2 ? nullptr : std::get_if<etcd::RangeResponse>(&r->responses[1]);
    c.fenced = m != nullptr && !m->kvs.empty() && m->kvs.front().lease == lease;
    return c;
  }

  // Runs one client call on the store's thread and waits for it.
  template <class T>
  T run(asio::awaitable<T> call) {
    return asio::co_spawn(io, std::move(call), asio::use_future).get();
  }

  // The current value of one key and its mod_revision (nullopt: absent).
  struct Current {
    kms::KeyRecord record;
    std::int64_t mod_revision = 0;
  };
  Result<std::optional<Current>> read(std::string_view name) {
    etcd::RangeRequest req;
    req.key = key_of(name);
    auto r = run(client->range(std::move(req)));
    if (!r) return std::unexpected(read_failed(r.error()));
    if (r->kvs.empty()) return std::optional<Current>{};
    Current c;
    ROOTSEAL_TRY_ASSIGN(c.record, detail::parse_key_record(r->kvs.front().value, name));
    c.mod_revision = r->kvs.front().mod_revision;
    return std::optional<Current>(std::move(c));
  }

  // Puts `record` if the key's mod_revision is still `mod_revision` (and
  // every keyring key its versions name is still recorded).
  Result<etcd::TxnResponse> cas_put(const kms::KeyRecord& record, std::int64_t mod_revision) {
    etcd::TxnRequest txn;
    txn.compare.push_back(etcd::Compare::mod_revision(key_of(record.name), mod_revision));
    fence_versions(record, txn.compare);
    txn.success.emplace_back(etcd::PutRequest{key_of(record.name), detail::serialize_key_record(record), 0, false});
    auto r = run(client->txn(std::move(txn)));
    if (!r) return std::unexpected(write_failed(r.error()));
    return r;
  }

  // Pages through every key under <prefix>keys/ at one revision (the first
  // page's), calling `each` for every key-value. serializable: from the
  // member reached, without quorum. Returns the revision read.
  Result<std::int64_t> scan(bool keys_only, bool serializable,
                            const std::function<Result<void>(const etcd::KeyValue&)>& each) {
    std::string from = keys_prefix;
    const std::string end = etcd::prefix_end(keys_prefix);
    std::int64_t revision = 0;
    for (;;) {
      etcd::RangeRequest req;
      req.key = from;
      req.range_end = end;
      req.revision = revision;
      req.limit = kPageSize;
      req.keys_only = keys_only;
      req.serializable = serializable;
      auto r = run(client->range(std::move(req)));
      if (!r) return std::unexpected(read_failed(r.error()));
      if (revision == 0) revision = r->header.revision;
      for (const auto& kv : r->kvs) ROOTSEAL_TRY(each(kv));
      if (!r->more || r->kvs.empty()) break;
      from = r->kvs.back().key;
      from.push_back('\0');  // the next key after the last one read
    }
    return revision;
  }

  // Every key record at one revision (scan), by name; the revision read.
  Result<std::int64_t> read_keys(bool serializable, std::vector<kms::KeyRecord>& out) {
    ROOTSEAL_LET(revision, scan(false, serializable, [&](const etcd::KeyValue& kv) -> Result<void> {
                   kms::KeyRecord rec;
                   ROOTSEAL_TRY_ASSIGN(
                       rec, detail::parse_key_record(kv.value, std::string_view(kv.key).substr(keys_prefix.size())));
                   out.push_back(std::move(rec));
                   return {};
                 }));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return revision;
  }

  // The value of one key at `revision` (0: the latest); nullopt when absent.
  Result<std::optional<std::string>> value_at(const std::string& key, std::int64_t revision, bool serializable) {
    etcd::RangeRequest req;
    req.key = key;
    req.revision = revision;
    req.serializable = serializable;
    auto r = run(client->range(std::move(req)));
    if (!r) return std::unexpected(read_failed(r.error()));
    if (r->kvs.empty()) return std::optional<std::string>{};
    return std::optional<std::string>(r->kvs.front().value);
  }

  Result<std::vector<kms::KeyRecord>> load(bool serializable) {
    std::vector<kms::KeyRecord> out;
    ROOTSEAL_LET(revision, read_keys(serializable, out));
    // A restore under way (or interrupted): its keys are not the cluster's yet.
    ROOTSEAL_LET(restoring, value_at(restoring_key, revision, serializable));
    if (restoring) {
      return fail(Errc::sealed, "a snapshot restore into " + prefix + " is under way or was interrupted (" +
                                    restoring_key +
                                    "): the keyring stays sealed until rootseal snapshot restore "
                                    "has finished");
    }
    loaded_revision.store(revision);
    return out;
  }

  // update_config(_if): the config written over the value read, if that
  // value's config is still `expected` (when given).
  Result<void> write_config(std::string_view name, const kms::KeyConfig* expected, const kms::KeyConfig& config);

  // The root KCV check (see the header): records `kcv` if the cluster has
  // none; ok when the recorded one is equal.
  Result<void> check_root(std::string_view kcv, bool for_write) {
    {
      std::lock_guard lock(root_mu);
      if (joined_kcv) return same_root(kcv, *joined_kcv);
    }
    etcd::TxnRequest txn;
    txn.compare.push_back(etcd::Compare::create_revision(root_kcv_key, 0));
    txn.success.emplace_back(etcd::PutRequest{root_kcv_key, std::string(kcv), 0, false});
    txn.failure.emplace_back(etcd::RangeRequest{root_kcv_key, {}, 0, 0, false, false});
    auto r = run(client->txn(std::move(txn)));
    if (!r) {
      if (for_write || r.error().code != Errc::unavailable) return std::unexpected(write_failed(r.error()));
      // No quorum at unseal: what the reachable member holds still refuses a
      // differing root; the record is written (and checked) by the first write.
      etcd::RangeRequest req;
      req.key = root_kcv_key;
      req.serializable = true;
      auto local = run(client->range(std::move(req)));
      if (local && !local->kvs.empty()) return same_root(kcv, local->kvs.front().value);
      return {};
    }
    std::string recorded(kcv);
    if (!r->succeeded) {
      const auto* range = r->responses.empty() ? nullptr : std::get_if<etcd::RangeResponse>(&r->responses.front());
      if (range == nullptr || range->kvs.empty()) {
        return fail(Errc::unavailable, "etcd store: the cluster's root key check value changed while it was read");
      }
      recorded = range->kvs.front().value;
    }
    ROOTSEAL_TRY(same_root(kcv, recorded));
    std::lock_guard lock(root_mu);
    joined_kcv = recorded;
    return {};
  }

  Result<void> same_root(std::string_view kcv, std::string_view cluster) const {
    if (kcv == cluster) return {};
    return fail(Errc::sealed, "this host's root key (kcv " + std::string(kcv) + ") is not the cluster's (kcv " +
                                  std::string(cluster) + ", recorded in etcd at " + root_kcv_key +
                                  "): it stays sealed and writes nothing; restore the cluster's root key into its HSM");
  }

  void enqueue(std::variant<std::string, std::monostate> item) {
    {
      std::lock_guard lock(watch_mu);
      queue.push_back(std::move(item));
    }
    watch_cv.notify_one();
  }

  void work_queue(const WatchCallbacks& cb) {
    for (;;) {
      std::variant<std::string, std::monostate> item;
      {
        std::unique_lock lock(watch_mu);
        watch_cv.wait(lock, [&] { return watch_stopping || !queue.empty(); });
        if (watch_stopping) return;
        item = std::move(queue.front());
        queue.pop_front();
      }
      if (const auto* name = std::get_if<std::string>(&item)) {
        if (cb.changed) cb.changed(*name);
      } else if (cb.reload) {
        cb.reload();
      }
    }
  }

  // One round of the membership loop: a lease (granted or kept alive), then
  // the record if it changed. Returns the pause before the next round.
  asio::awaitable<std::chrono::milliseconds> member_round(Membership& m) {
    const std::chrono::milliseconds regular = std::chrono::duration_cast<std::chrono::milliseconds>(m.ttl) / 3;
    const std::chrono::milliseconds soon = std::min(regular, std::chrono::milliseconds(1000));
    auto failed = [&](const kms::Error& e) {
      if (!m.failing && m.on_error) m.on_error(e);
      m.failing = true;
    };
    const auto sent = std::chrono::steady_clock::now();
    if (m.lease == 0) {
      auto granted = co_await client->lease_grant(m.ttl);
      if (!granted) {
        failed(granted.error());
        co_return soon;
      }
      m.lease = granted->id;
      member_lease.store(m.lease);
      lease_answered(m.lease, sent, granted->ttl);
      m.written.clear();
    } else {
      auto kept = co_await client->lease_keepalive(m.lease);
      if (!kept) {
        if (kept.error().code == Errc::not_found) {
          m.lease = 0;  // expired: a new lease and the record again, now
          lease_gone();
          failed(kept.error());
          co_return std::chrono::milliseconds(0);
        }
        failed(kept.error());
        co_return soon;
      }
      lease_answered(m.lease, sent, kept->ttl);
    }
    const Member now = m.current();
    std::string value = detail::serialize_member(now);
    if (value != m.written) {
      // A named request: GCC 12 destroys a temporary aggregate argument of a
      // coroutine call in a co_await twice.
      etcd::PutRequest req;
      req.key = prefix + "members/" + now.host_id;
      req.value = value;
      req.lease = m.lease;
      auto put = co_await client->put(std::move(req));
      if (!put) {
        if (put.error().code == Errc::not_found) {
          m.lease = 0;
          lease_gone();
        }
        failed(put.error());
        co_return soon;
      }
      m.written = std::move(value);
    }
    m.failing = false;
    co_return regular;
  }

  asio::awaitable<void> member_loop(Membership& m) {
    for (;;) {
      std::chrono::milliseconds pause{1000};
      std::string thrown;
      try {
        pause = co_await member_round(m);
      } catch (const std::exception& e) {
        // Not expected (the client reports failures as values); the loop goes on.
        thrown = e.what();
      }
      if (!thrown.empty() && m.on_error) m.on_error(kms::Error(Errc::internal, "membership: " + thrown));
      {
        std::lock_guard lock(member_mu);
        if (m.stopping) break;
        m.timer = std::make_shared<asio::steady_timer>(io, pause);
      }
      co_await m.timer->async_wait(asio::as_tuple(asio::use_awaitable));
      std::lock_guard lock(member_mu);
      if (m.stopping) break;
    }
  }

  asio::awaitable<void> watch_loop(std::int64_t start) {
    std::int64_t next = start;
    const std::string end = etcd::prefix_end(keys_prefix);
    while (!control.cancelled()) {
      etcd::WatchRequest req;
      req.key = keys_prefix;
      req.range_end = end;
      req.start_revision = next;
      auto handler = [this](std::span<const etcd::Event> events, const etcd::ResponseHeader&) {
        for (const auto& e : events) {
          if (e.kv.key.size() > keys_prefix.size()) enqueue(e.kv.key.substr(keys_prefix.size()));
          watched_revision.store(std::max(watched_revision.load(), e.kv.mod_revision));
        }
      };
      auto ended = co_await client->watch(std::move(req), handler, control);
      if (control.cancelled()) break;
      if (ended && ended->reason == etcd::WatchEnd::Reason::compacted) {
        enqueue(std::monostate{});
        next = ended->compact_revision;
        continue;
      }
      if (ended && ended->next_revision > 0) next = ended->next_revision;
      if (!ended && watched_revision.load() > 0) next = std::max(next, watched_revision.load() + 1);
      // A refusal retrying cannot cure at once (RBAC, a bad request): wait a
      // moment, then try again (the operator may fix the role meanwhile).
      {
        std::lock_guard lock(watch_mu);
        retry_timer = std::make_shared<asio::steady_timer>(io, watch_retry);
      }
      co_await retry_timer->async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
};

Result<std::unique_ptr<EtcdStore>> EtcdStore::open(EtcdStoreConfig config) {
  if (config.prefix.empty() || config.prefix.back() != '/') {
    return fail(Errc::invalid_argument, "etcd store: the prefix must end with '/'");
  }
  auto impl = std::make_unique<Impl>();
  impl->keys_prefix = config.prefix + "keys/";
  impl->root_kcv_key = config.prefix + "cluster/root_kcv";
  impl->restoring_key = config.prefix + "cluster/restoring";
  impl->prefix = config.prefix;
  impl->watch_retry = config.client.watch_retry_max;
  auto client = etcd::Client::create(impl->io.get_executor(), std::move(config.client));
  if (!client) return std::unexpected(client.error());
  impl->client = std::move(*client);
  impl->io_thread = std::thread([io = &impl->io] { io->run(); });
  return std::unique_ptr<EtcdStore>(new EtcdStore(std::move(impl)));
}

EtcdStore::EtcdStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// The stops throw only when a mutex or an allocation fails: std::terminate is
// the right end then.
EtcdStore::~EtcdStore() {  // NOLINT(bugprone-exception-escape)
  stop_membership();
  stop_watch();
}

Result<std::vector<kms::KeyRecord>> EtcdStore::load_all() {
  auto all = impl_->load(false);
  if (!all && all.error().code == Errc::unavailable) return impl_->load(true);
  return all;
}

Result<std::optional<kms::KeyRecord>> EtcdStore::find(std::string_view name) {
  ROOTSEAL_LET(current, impl_->read(name));
  if (!current) return std::optional<kms::KeyRecord>{};
  return std::optional<kms::KeyRecord>(std::move(current->record));
}

Result<std::vector<std::string>> EtcdStore::list_names() {
  std::vector<std::string> names;
  ROOTSEAL_TRY(impl_->scan(true, false, [&](const etcd::KeyValue& kv) -> Result<void> {
    names.push_back(kv.key.substr(impl_->keys_prefix.size()));
    return {};
  }));
  return names;
}

Result<void> EtcdStore::check_root(std::string_view root_kcv) { return impl_->check_root(root_kcv, false); }

Result<void> EtcdStore::create_key(const kms::KeyRecord& key) {
  ROOTSEAL_TRY(kms::validate_key_name(key.name));
  for (const auto& v : key.versions) ROOTSEAL_TRY(impl_->check_new_version(v.root_kcv));
  etcd::TxnRequest txn;
  txn.compare.push_back(etcd::Compare::create_revision(impl_->key_of(key.name), 0));
  impl_->fence_versions(key, txn.compare);
  txn.success.emplace_back(etcd::PutRequest{impl_->key_of(key.name), detail::serialize_key_record(key), 0, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  if (r->succeeded) return {};
  if (r->attempts > 1) {
    // Sent again after a lost answer: our first attempt may be what is there.
    ROOTSEAL_LET(current, impl_->read(key.name));
    if (current && !current->record.versions.empty() && !key.versions.empty() &&
        current->record.versions.front().wrapped_key == key.versions.front().wrapped_key) {
      return {};
    }
  }
  for (const auto& v : key.versions) ROOTSEAL_TRY(impl_->still_recorded(v.root_kcv));
  return fail(Errc::already_exists, "key " + key_name(key.name) + " already exists");
}

Result<void> EtcdStore::add_version(std::string_view name, const kms::KeyVersionRecord& version) {
  ROOTSEAL_TRY(impl_->check_new_version(version.root_kcv));
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    if (attempt > 0) ROOTSEAL_TRY(impl_->still_recorded(version.root_kcv));
    ROOTSEAL_LET(current, impl_->read(name));
    if (!current) return fail(Errc::not_found, "key " + key_name(name) + " not found");
    auto& versions = current->record.versions;
    const auto latest = static_cast<std::uint32_t>(versions.size());
    if (version.version <= latest) {
      // Ours (an earlier attempt whose answer was lost) or another host's.
      if (versions[version.version - 1].wrapped_key == version.wrapped_key) return {};
      return fail(Errc::conflict, "key " + key_name(name) + " already has version " + std::to_string(version.version) +
                                      " (another host rotated it)");
    }
    if (version.version != latest + 1) {
      return fail(Errc::conflict, "key " + key_name(name) + ": version " + std::to_string(version.version) +
                                      " does not follow the latest, " + std::to_string(latest));
    }
    versions.push_back(version);
    ROOTSEAL_LET(txn, impl_->cas_put(current->record, current->mod_revision));
    if (txn.succeeded) return {};
  }
  return fail(Errc::conflict, "key " + key_name(name) + " changed too often to rotate it; try again");
}

Result<void> EtcdStore::update_config(std::string_view name, const kms::KeyConfig& config) {
  return impl_->write_config(name, nullptr, config);
}

Result<void> EtcdStore::update_config_if(std::string_view name, const kms::KeyConfig& expected,
                                         const kms::KeyConfig& config) {
  return impl_->write_config(name, &expected, config);
}

Result<void> EtcdStore::Impl::write_config(std::string_view name, const kms::KeyConfig* expected,
                                           const kms::KeyConfig& config) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    ROOTSEAL_LET(current, read(name));
    if (!current) return fail(Errc::not_found, "key " + key_name(name) + " not found");
    if (current->record.config == config) return {};
    if (expected != nullptr && !(current->record.config == *expected)) {
      return fail(Errc::conflict, "key " + key_name(name) + ": its config was changed meanwhile");
    }
    const auto latest = static_cast<std::uint32_t>(current->record.versions.size());
    if (config.min_decryption_version > latest || config.min_encryption_version > latest) {
      return fail(Errc::invalid_argument,
                  "key " + key_name(name) + ": a minimum version above the latest, " + std::to_string(latest));
    }
    current->record.config = config;
    ROOTSEAL_LET(txn, cas_put(current->record, current->mod_revision));
    if (txn.succeeded) return {};
  }
  return fail(Errc::conflict, "key " + key_name(name) + " changed too often to configure it; try again");
}

Result<void> EtcdStore::delete_key(std::string_view name) {
  etcd::TxnRequest txn;
  txn.compare.push_back(etcd::Compare::create_revision(impl_->key_of(name), 0, etcd::Compare::Result::greater));
  txn.success.emplace_back(etcd::DeleteRequest{impl_->key_of(name), {}, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  // Sent again after a lost answer: the key is gone either way.
  if (r->succeeded || r->attempts > 1) return {};
  return fail(Errc::not_found, "key " + key_name(name) + " not found");
}

Result<void> EtcdStore::replace_wrapped(const std::vector<Rewrapped>& versions,
                                        const std::vector<kms::KeyringKeyRecord>& keyring_keys) {
  std::map<std::string, std::vector<const Rewrapped*>, std::less<>> by_key;
  for (const auto& e : versions) by_key[e.name].push_back(&e);
  if (by_key.size() + keyring_keys.size() > kMaxTxnKeys) {
    return fail(Errc::invalid_argument, "etcd store: a rewrap of more than " + std::to_string(kMaxTxnKeys) +
                                            " keys does not fit one etcd transaction");
  }
  for (const auto& k : keyring_keys) {
    if (auto ok = kms::validate_keyring_key_record(k); !ok) return fail(Errc::invalid_argument, ok.error().message);
    ROOTSEAL_TRY(impl_->check_root(k.root_kcv, true));
  }
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    etcd::TxnRequest txn;
    for (const auto& k : keyring_keys) {
      const std::string key = impl_->keyring_key_of(k.id);
      ROOTSEAL_LET(current, impl_->value_at(key, 0, false));
      if (!current) return fail(Errc::not_found, "keyring key " + std::to_string(k.id) + " not found");
      ROOTSEAL_LET(held, detail::parse_keyring_key(*current, std::to_string(k.id)));
      if (held.kcv != k.kcv) return fail(Errc::conflict, "keyring key " + std::to_string(k.id) + " is another key");
      txn.compare.push_back(etcd::Compare::value_is(key, *current));
      txn.success.emplace_back(etcd::PutRequest{key, detail::serialize_keyring_key(k), 0, false});
    }
    for (const auto& [name, list] : by_key) {
      ROOTSEAL_LET(current, impl_->read(name));
      if (!current) return fail(Errc::not_found, "key " + key_name(name) + " not found");
      for (const Rewrapped* e : list) {
        if (e->version == 0 || e->version > current->record.versions.size()) {
          return fail(Errc::not_found, "key " + key_name(name) + " has no version " + std::to_string(e->version));
        }
        auto& v = current->record.versions[e->version - 1];
        v.wrapped_key = e->wrapped_key;
        v.root_kcv = e->root_kcv;
      }
      txn.compare.push_back(etcd::Compare::mod_revision(impl_->key_of(name), current->mod_revision));
      impl_->fence_versions(current->record, txn.compare);
      txn.success.emplace_back(
          etcd::PutRequest{impl_->key_of(name), detail::serialize_key_record(current->record), 0, false});
    }
    auto r = impl_->run(impl_->client->txn(std::move(txn)));
    if (!r) return std::unexpected(write_failed(r.error()));
    if (r->succeeded) return {};
    for (const auto& e : versions) ROOTSEAL_TRY(impl_->still_recorded(e.root_kcv));
  }
  return fail(Errc::conflict, "etcd store: the keys changed too often to rewrap them; try again");
}

Result<std::vector<kms::KeyringKeyRecord>> EtcdStore::keyring_keys() {
  const std::string prefix = impl_->prefix + "keyring/";
  auto read = [&](bool serializable) {
    etcd::RangeRequest req;
    req.key = prefix;
    req.range_end = etcd::prefix_end(prefix);
    req.serializable = serializable;
    return impl_->run(impl_->client->range(std::move(req)));
  };
  // Without quorum, what the member reached holds (as load_all): a host
  // starting then still unseals.
  auto r = read(false);
  if (!r && r.error().code == Errc::unavailable) r = read(true);
  if (!r) return std::unexpected(read_failed(r.error()));
  std::vector<kms::KeyringKeyRecord> out;
  for (const auto& kv : r->kvs) {
    ROOTSEAL_LET(rec, detail::parse_keyring_key(kv.value, std::string_view(kv.key).substr(prefix.size())));
    out.push_back(std::move(rec));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<void> EtcdStore::add_keyring_key(const kms::KeyringKeyRecord& key) {
  if (auto ok = kms::validate_keyring_key_record(key); !ok) return fail(Errc::invalid_argument, ok.error().message);
  ROOTSEAL_TRY(impl_->check_root(key.root_kcv, true));
  const std::string at = impl_->keyring_key_of(key.id);
  const std::string value = detail::serialize_keyring_key(key);
  etcd::TxnRequest txn;
  txn.compare.push_back(etcd::Compare::create_revision(at, 0));
  txn.success.emplace_back(etcd::PutRequest{at, value, 0, false});
  txn.failure.emplace_back(etcd::RangeRequest{at, {}, 0, 0, false, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  if (r->succeeded) return {};
  const auto* range = r->responses.empty() ? nullptr : std::get_if<etcd::RangeResponse>(&r->responses.front());
  // Sent again after a lost answer: our first attempt may be what is there.
  if (r->attempts > 1 && range != nullptr && !range->kvs.empty() && range->kvs.front().value == value) return {};
  return fail(Errc::already_exists, "keyring key " + std::to_string(key.id) + " already exists");
}

Result<void> EtcdStore::retire_keyring_key(std::uint32_t id) {
  const std::string at = impl_->keyring_key_of(id);
  ROOTSEAL_LET(current, impl_->value_at(at, 0, false));
  if (!current) return fail(Errc::not_found, "keyring key " + std::to_string(id) + " not found");
  ROOTSEAL_LET(record, detail::parse_keyring_key(*current, std::to_string(id)));
  const std::string tag = kms::keyring_key_tag(record.id, record.kcv);
  std::vector<kms::KeyRecord> keys;
  ROOTSEAL_LET(revision, impl_->read_keys(false, keys));
  for (const auto& k : keys) {
    for (const auto& v : k.versions) {
      if (v.root_kcv == tag) {
        return fail(Errc::conflict, "keyring key " + std::to_string(id) + " still wraps key '" + k.name + "' version " +
                                        std::to_string(v.version));
      }
    }
  }
  etcd::TxnRequest txn;
  // No key record written after the scan (none could have been written under this key since).
  etcd::Compare unchanged = etcd::Compare::mod_revision(impl_->keys_prefix, revision + 1, etcd::Compare::Result::less);
  unchanged.range_end = etcd::prefix_end(impl_->keys_prefix);
  txn.compare.push_back(std::move(unchanged));
  txn.compare.push_back(etcd::Compare::value_is(at, *current));
  txn.success.emplace_back(etcd::DeleteRequest{at, {}, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  if (r->succeeded || r->attempts > 1) return {};
  return fail(Errc::conflict, "keyring key " + std::to_string(id) + ": key records changed while it was retired");
}

int EtcdStore::schema_version() const noexcept { return detail::kRecordFormat; }

Result<std::string> EtcdStore::cluster_id(std::string_view proposed) {
  const std::string key = impl_->prefix + "cluster/id";
  etcd::TxnRequest txn;
  txn.compare.push_back(etcd::Compare::create_revision(key, 0));
  txn.success.emplace_back(etcd::PutRequest{key, std::string(proposed), 0, false});
  txn.failure.emplace_back(etcd::RangeRequest{key, {}, 0, 0, false, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  if (r->succeeded) return std::string(proposed);
  const auto* range = r->responses.empty() ? nullptr : std::get_if<etcd::RangeResponse>(&r->responses.front());
  if (range == nullptr || range->kvs.empty()) {
    return fail(Errc::unavailable, "etcd store: the cluster id changed while it was read");
  }
  // A resent txn that finds its own first attempt applied reads it here.
  const std::string& recorded = range->kvs.front().value;
  const bool readable =
      !recorded.empty() && recorded.size() <= 64 && std::all_of(recorded.begin(), recorded.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
      });
  if (!readable) return fail(Errc::storage_failure, "etcd store: " + impl_->prefix + "cluster/id is not a cluster id");
  return recorded;
}

Result<EtcdStore::ClusterView> EtcdStore::cluster_view() {
  const std::string members = impl_->prefix + "members/";
  etcd::TxnRequest txn;  // no compare: the reads below, at one revision
  txn.success.emplace_back(etcd::RangeRequest{impl_->prefix + "cluster/id", {}, 0, 0, false, false});
  txn.success.emplace_back(etcd::RangeRequest{impl_->root_kcv_key, {}, 0, 0, false, false});
  txn.success.emplace_back(etcd::RangeRequest{members, etcd::prefix_end(members), 0, 0, false, false});
  txn.success.emplace_back(etcd::RangeRequest{impl_->restoring_key, {}, 0, 0, false, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(read_failed(r.error()));
  if (r->responses.size() != 4) return fail(Errc::storage_failure, "etcd store: an incomplete answer to a read");
  ClusterView view;
  view.revision = r->header.revision;
  auto value = [&](std::size_t i) -> std::optional<std::string> {
    const auto* range = std::get_if<etcd::RangeResponse>(&r->responses[i]);
    if (range == nullptr || range->kvs.empty()) return std::nullopt;
    return range->kvs.front().value;
  };
  view.cluster_id = value(0);
  view.root_kcv = value(1);
  view.restoring = value(3);
  if (const auto* range = std::get_if<etcd::RangeResponse>(&r->responses[2])) {
    for (const auto& kv : range->kvs) {
      auto m = detail::parse_member(kv.value, std::string_view(kv.key).substr(members.size()));
      m.lease = kv.lease;
      view.members.push_back(std::move(m));
    }
  }
  ROOTSEAL_TRY(impl_->scan(true, false, [&](const etcd::KeyValue& kv) -> Result<void> {
    view.latest_key_revision = std::max(view.latest_key_revision, kv.mod_revision);
    return {};
  }));
  return view;
}

Result<EtcdStore::Snapshot> EtcdStore::read_snapshot() {
  Snapshot out;
  ROOTSEAL_TRY_ASSIGN(out.revision, impl_->read_keys(false, out.keys));
  ROOTSEAL_TRY_ASSIGN(out.cluster_id, impl_->value_at(impl_->prefix + "cluster/id", out.revision, false));
  ROOTSEAL_TRY_ASSIGN(out.root_kcv, impl_->value_at(impl_->root_kcv_key, out.revision, false));
  ROOTSEAL_TRY_ASSIGN(out.restoring, impl_->value_at(impl_->restoring_key, out.revision, false));
  {
    const std::string kk = impl_->prefix + "keyring/";
    etcd::RangeRequest at;
    at.key = kk;
    at.range_end = etcd::prefix_end(kk);
    at.revision = out.revision;
    auto r = impl_->run(impl_->client->range(std::move(at)));
    if (!r) return std::unexpected(read_failed(r.error()));
    for (const auto& kv : r->kvs) {
      ROOTSEAL_LET(rec, detail::parse_keyring_key(kv.value, std::string_view(kv.key).substr(kk.size())));
      out.keyring_keys.push_back(std::move(rec));
    }
    std::sort(out.keyring_keys.begin(), out.keyring_keys.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
  }
  etcd::RangeRequest req;
  const std::string tokens = impl_->prefix + "tokens/";
  req.key = tokens;
  req.range_end = etcd::prefix_end(tokens);
  req.revision = out.revision;
  auto r = impl_->run(impl_->client->range(std::move(req)));
  if (!r) return std::unexpected(read_failed(r.error()));
  for (auto& kv : r->kvs) out.tokens.emplace_back(kv.key.substr(tokens.size()), std::move(kv.value));
  return out;
}

// Requests are named variables below: GCC 12 destroys a temporary aggregate
// argument of a coroutine call twice.
Result<void> EtcdStore::mark_restoring(std::string_view snapshot) {
  etcd::PutRequest req;
  req.key = impl_->restoring_key;
  req.value = std::string(snapshot);
  auto r = impl_->run(impl_->client->put(std::move(req)));
  if (!r) return std::unexpected(write_failed(r.error()));
  return {};
}

Result<void> EtcdStore::unmark_restoring() {
  etcd::DeleteRequest req;
  req.key = impl_->restoring_key;
  auto r = impl_->run(impl_->client->delete_range(std::move(req)));
  if (!r) return std::unexpected(write_failed(r.error()));
  return {};
}

Result<void> EtcdStore::set_cluster_records(std::string_view cluster_id, std::string_view root_kcv) {
  etcd::TxnRequest txn;  // both or neither
  if (!cluster_id.empty()) {
    txn.success.emplace_back(etcd::PutRequest{impl_->prefix + "cluster/id", std::string(cluster_id), 0, false});
  }
  txn.success.emplace_back(etcd::PutRequest{impl_->root_kcv_key, std::string(root_kcv), 0, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(write_failed(r.error()));
  std::lock_guard lock(impl_->root_mu);
  impl_->joined_kcv.reset();  // checked anew against the record
  return {};
}

Result<bool> EtcdStore::hold_lock(std::string_view name, std::string_view me, std::string* holder) {
  Impl& s = *impl_;
  const std::int64_t lease = s.member_lease.load();
  if (lease == 0) return fail(Errc::unavailable, "etcd store: this host is not registered (no member lease) yet");
  // Taken if free, else read: ours when it lives under our lease and our
  // member record still does too.
  ROOTSEAL_LET(c, s.claim_fenced(s.prefix + "locks/" + std::string(name), std::string(me),
                                 s.prefix + "members/" + std::string(me), lease));
  if (!c.kv) return false;  // released meanwhile (or not fenced): the next call takes it
  if (holder != nullptr) *holder = c.kv->value;
  return c.created || (c.fenced && c.kv->lease == lease);
}

void EtcdStore::release_lock(std::string_view name) {
  Impl& s = *impl_;
  const std::int64_t lease = s.member_lease.load();
  if (lease == 0) return;  // no lease: no lock of ours
  (void)s.delete_if_lease(s.prefix + "locks/" + std::string(name), lease);
}

Result<void> EtcdStore::put_note(std::string_view name, std::string value) {
  etcd::PutRequest req;
  req.key = impl_->prefix + "notes/" + std::string(name);
  req.value = std::move(value);
  auto r = impl_->run(impl_->client->put(std::move(req)));
  if (!r) return std::unexpected(write_failed(r.error()));
  return {};
}

Result<std::optional<std::string>> EtcdStore::note(std::string_view name) {
  return impl_->value_at(impl_->prefix + "notes/" + std::string(name), 0, false);
}

void EtcdStore::start_watch(WatchCallbacks callbacks) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.watch_mu);
    if (s.watching) return;
    s.watching = true;
    s.watch_stopping = false;
  }
  const std::int64_t loaded = s.loaded_revision.load();
  const std::int64_t start = loaded > 0 ? loaded + 1 : 0;
  s.worker = std::thread([&s, cb = std::move(callbacks)] { s.work_queue(cb); });
  s.watch_finished = s.watch_done.get_future();
  asio::co_spawn(s.io, s.watch_loop(start), [&s](const std::exception_ptr&) { s.watch_done.set_value(); });
}

void EtcdStore::stop_watch() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.watch_mu);
    if (!s.watching) return;
    s.watching = false;
    s.watch_stopping = true;
  }
  s.control.cancel();
  asio::post(s.io, [&s] {
    std::lock_guard lock(s.watch_mu);
    if (s.retry_timer) s.retry_timer->cancel();
  });
  s.watch_finished.wait();
  s.watch_cv.notify_all();
  if (s.worker.joinable()) s.worker.join();
}

void EtcdStore::start_membership(std::chrono::seconds ttl, std::function<Member()> current,
                                 std::function<void(const kms::Error&)> on_error) {
  Impl& s = *impl_;
  std::lock_guard lock(s.member_mu);
  if (s.membership) return;
  s.membership = std::make_unique<Impl::Membership>();
  auto& m = *s.membership;
  m.ttl = std::max(ttl, std::chrono::seconds(1));
  m.current = std::move(current);
  m.on_error = std::move(on_error);
  m.finished = m.done.get_future();
  asio::co_spawn(s.io, s.member_loop(m), [&m](const std::exception_ptr&) { m.done.set_value(); });
}

void EtcdStore::stop_membership() {
  Impl& s = *impl_;
  Impl::Membership* m = nullptr;
  {
    std::lock_guard lock(s.member_mu);
    if (!s.membership || s.membership->stopping) return;
    m = s.membership.get();
    m->stopping = true;
  }
  asio::post(s.io, [&s, m] {
    std::lock_guard lock(s.member_mu);
    if (m->timer) m->timer->cancel();
  });
  m->finished.wait();
  // The loop has ended: its lease is ours to revoke (the record and our locks go with it).
  s.lease_gone();
  if (m->lease != 0) (void)s.run(s.client->lease_revoke(m->lease));
}

EtcdStore::LeaseState EtcdStore::member_lease_state() const {
  std::lock_guard lock(impl_->lease_mu);
  return impl_->lease_state;
}

namespace {

std::string bucket_key(const std::string& prefix, std::uint32_t bucket) {
  std::string n = std::to_string(bucket);
  return prefix + "shards/" + std::string(n.size() < 3 ? 3 - n.size() : 0, '0') + n;
}

}  // namespace

Result<EtcdStore::ShardView> EtcdStore::shard_view() {
  const std::string members = impl_->prefix + "members/";
  const std::string shards = impl_->prefix + "shards/";
  etcd::TxnRequest txn;  // no compare: the reads below, at one revision
  txn.success.emplace_back(etcd::RangeRequest{members, etcd::prefix_end(members), 0, 0, false, false});
  txn.success.emplace_back(etcd::RangeRequest{shards, etcd::prefix_end(shards), 0, 0, false, false});
  auto r = impl_->run(impl_->client->txn(std::move(txn)));
  if (!r) return std::unexpected(read_failed(r.error()));
  if (r->responses.size() != 2) return fail(Errc::storage_failure, "etcd store: an incomplete answer to a read");
  ShardView view;
  view.revision = r->header.revision;
  if (const auto* range = std::get_if<etcd::RangeResponse>(&r->responses[0])) {
    for (const auto& kv : range->kvs) {
      auto m = detail::parse_member(kv.value, std::string_view(kv.key).substr(members.size()));
      m.lease = kv.lease;
      view.members.push_back(std::move(m));
    }
  }
  if (const auto* range = std::get_if<etcd::RangeResponse>(&r->responses[1])) {
    for (const auto& kv : range->kvs) {
      const std::string_view name = std::string_view(kv.key).substr(shards.size());
      std::uint32_t bucket = 0;
      const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), bucket);
      if (ec != std::errc() || end != name.data() + name.size() || name.size() != 3) continue;  // not a bucket's key
      auto b = detail::parse_bucket_owner(kv.value, bucket);
      b.lease = kv.lease;
      b.epoch = kv.create_revision;
      view.owners.push_back(std::move(b));
    }
  }
  return view;
}

Result<std::optional<std::int64_t>> EtcdStore::claim_bucket(std::uint32_t bucket, std::string_view host_id,
                                                            std::string_view instance) {
  Impl& s = *impl_;
  const std::int64_t lease = s.member_lease.load();
  if (lease == 0) return fail(Errc::unavailable, "etcd store: this host is not registered (no member lease) yet");
  BucketOwner owner;
  owner.host_id = std::string(host_id);
  owner.instance = std::string(instance);
  ROOTSEAL_LET(c, s.claim_fenced(bucket_key(s.prefix, bucket), detail::serialize_bucket_owner(owner),
                                 s.prefix + "members/" + std::string(host_id), lease));
  if (!c.created) return std::optional<std::int64_t>{};
  if (!c.kv) return fail(Errc::storage_failure, "etcd store: the bucket claim's answer holds no key");
  return std::optional<std::int64_t>(c.kv->create_revision);  // the epoch
}

Result<bool> EtcdStore::release_bucket(std::uint32_t bucket) {
  Impl& s = *impl_;
  const std::int64_t lease = s.member_lease.load();
  if (lease == 0) return false;  // no lease: no bucket of ours
  return s.delete_if_lease(bucket_key(s.prefix, bucket), lease);
}

std::vector<EtcdStore::EndpointHealth> EtcdStore::endpoint_health() {
  std::vector<EndpointHealth> out;
  const auto endpoints = impl_->client->endpoints();
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    EndpointHealth h;
    auto st = impl_->run(impl_->client->status(i));
    if (st) {
      h.reachable = true;
      h.status = std::move(*st);
    } else {
      h.error = st.error().message;
      h.status.endpoint = endpoints[i];
    }
    out.push_back(std::move(h));
  }
  return out;
}

std::int64_t EtcdStore::loaded_revision() const noexcept { return impl_->loaded_revision.load(); }
std::int64_t EtcdStore::watched_revision() const noexcept { return impl_->watched_revision.load(); }
const std::string& EtcdStore::prefix() const noexcept { return impl_->prefix; }

}  // namespace rootseal::etcdstore
