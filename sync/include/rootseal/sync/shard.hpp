// rootseal::sync — how the sync engine's work is split between the hosts of
// a cluster (docs/ha.md "The sync engine on several hosts").
//
// A namespace belongs to one of kBuckets buckets (namespace_bucket: a stable
// hash, the same on every host and every release); each bucket goes to one
// live member by rendezvous hashing (bucket_owner: the member with the
// highest score for that bucket), so a member joining or leaving moves only
// the buckets it gains or had (about 1/N of them).
//
// ShardGate is what the engine asks before it acts: whether this host owns a
// namespace's bucket now. The daemon's coordinator (which claims buckets in
// etcd under fenced transactions) grants and revokes buckets and sets the
// deadline after which nothing is owned (last lease renewal + TTL − margin).
// An engine without a gate acts on every namespace (one host).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rootseal::sync {

inline constexpr std::uint32_t kBuckets = 256;

// 64-bit FNV-1a of the bytes, then MurmurHash3's fmix64 finalizer (so the
// low bits mix well). Stable: part of the cluster's protocol.
std::uint64_t stable_hash(std::string_view bytes) noexcept;

// stable_hash(namespace) % kBuckets.
std::uint32_t namespace_bucket(std::string_view ns) noexcept;

// The rendezvous score of `member` for `bucket`:
// stable_hash(member + '\0' + decimal bucket).
std::uint64_t rendezvous_score(std::uint32_t bucket, std::string_view member) noexcept;

// The member with the highest score for `bucket` (ties: the smaller id);
// "" when there is no member.
std::string bucket_owner(std::uint32_t bucket, std::span<const std::string> members);

// bucket_owner for every bucket (kBuckets entries).
std::vector<std::string> assign_buckets(std::span<const std::string> members);

class ShardGate {
 public:
  using Clock = std::chrono::steady_clock;

  // Work on one bucket, counted until destroyed (see enter).
  class Work {
   public:
    Work(Work&& o) noexcept : gate_(o.gate_), bucket_(o.bucket_) { o.gate_ = nullptr; }
    Work& operator=(Work&&) = delete;
    Work(const Work&) = delete;
    ~Work();

   private:
    friend class ShardGate;
    Work(ShardGate* gate, std::uint32_t bucket) : gate_(gate), bucket_(bucket) {}
    ShardGate* gate_;
    std::uint32_t bucket_;
  };

  // Whether this host acts on `ns` now: its bucket is granted and the
  // deadline has not passed.
  [[nodiscard]] bool acts_on(std::string_view ns) const;
  [[nodiscard]] bool owns(std::uint32_t bucket) const;
  // Granted, whatever the deadline (work refused only for the deadline is
  // tried again later: the bucket is still this host's if the lease lives).
  [[nodiscard]] bool granted(std::uint32_t bucket) const noexcept;
  // Counts work on the namespace's bucket while this host acts on it;
  // nullopt (nothing counted) when it does not. A bucket revoked after
  // enter() keeps the work counted until it ends (in_flight).
  [[nodiscard]] std::optional<Work> enter(std::string_view ns);
  [[nodiscard]] std::uint32_t in_flight(std::uint32_t bucket) const noexcept;
  // The epoch of the namespace's bucket as this host holds it (the
  // create_revision of its ownership record in etcd: larger for every new
  // owner); 0 when this host does not hold it. Carried into cloud pushes
  // (docs/ha.md "Writes after a lost bucket").
  [[nodiscard]] std::int64_t epoch(std::string_view ns) const noexcept;

  // The coordinator's side. grant() calls the on_gained callback with the
  // buckets newly granted (on the caller's thread).
  void grant(std::span<const std::uint32_t> buckets);
  void revoke(std::uint32_t bucket) noexcept;
  // The epoch under which `bucket` is held (set before granting it).
  void set_epoch(std::uint32_t bucket, std::int64_t epoch) noexcept;
  void revoke_all() noexcept;
  void set_deadline(Clock::time_point until) noexcept;
  // Asked at every check instead of the stored deadline, when set (the
  // daemon: the member lease's live "alive until", renewed by its
  // keepalives between the coordinator's rounds). Thread-safe, cheap.
  void set_deadline_source(std::function<Clock::time_point()> source);
  [[nodiscard]] Clock::time_point deadline() const;
  [[nodiscard]] std::vector<std::uint32_t> owned() const;
  void on_gained(std::function<void(const std::vector<std::uint32_t>&)> callback);

 private:
  std::array<std::atomic<bool>, kBuckets> owned_{};
  std::array<std::atomic<std::uint32_t>, kBuckets> in_flight_{};
  std::array<std::atomic<std::int64_t>, kBuckets> epoch_{};
  std::atomic<Clock::rep> deadline_{Clock::time_point::min().time_since_epoch().count()};
  std::function<Clock::time_point()> deadline_source_;  // set before use, then only read
  mutable std::mutex mu_;
  std::function<void(const std::vector<std::uint32_t>&)> on_gained_;
};

}  // namespace rootseal::sync
