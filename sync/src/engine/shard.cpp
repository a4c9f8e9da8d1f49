#include "rootseal/sync/shard.hpp"

namespace rootseal::sync {

std::uint64_t stable_hash(std::string_view bytes) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;  // fmix64
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::uint32_t namespace_bucket(std::string_view ns) noexcept {
  return static_cast<std::uint32_t>(stable_hash(ns) % kBuckets);
}

std::uint64_t rendezvous_score(std::uint32_t bucket, std::string_view member) noexcept {
  std::string text(member);
  text.push_back('\0');
  text += std::to_string(bucket);
  return stable_hash(text);
}

std::string bucket_owner(std::uint32_t bucket, std::span<const std::string> members) {
  const std::string* best = nullptr;
  std::uint64_t best_score = 0;
  for (const auto& m : members) {
    const std::uint64_t s = rendezvous_score(bucket, m);
    if (best == nullptr || s > best_score || (s == best_score && m < *best)) {
      best = &m;
      best_score = s;
    }
  }
  return best == nullptr ? std::string() : *best;
}

std::vector<std::string> assign_buckets(std::span<const std::string> members) {
  std::vector<std::string> out;
  out.reserve(kBuckets);
  for (std::uint32_t b = 0; b < kBuckets; ++b) out.push_back(bucket_owner(b, members));
  return out;
}

ShardGate::Work::~Work() {
  if (gate_ != nullptr) gate_->in_flight_[bucket_].fetch_sub(1);
}

bool ShardGate::owns(std::uint32_t bucket) const { return granted(bucket) && Clock::now() < deadline(); }

bool ShardGate::granted(std::uint32_t bucket) const noexcept { return bucket < kBuckets && owned_[bucket].load(); }

bool ShardGate::acts_on(std::string_view ns) const { return owns(namespace_bucket(ns)); }

std::optional<ShardGate::Work> ShardGate::enter(std::string_view ns) {
  const std::uint32_t b = namespace_bucket(ns);
  // Counted first, then checked: a revoke that clears the bucket and then
  // reads in_flight() either sees this work or this check sees the revoke.
  in_flight_[b].fetch_add(1);
  Work w(this, b);
  if (!owns(b)) return std::nullopt;  // w's destructor uncounts it
  return std::optional<Work>(std::move(w));
}

std::uint32_t ShardGate::in_flight(std::uint32_t bucket) const noexcept {
  return bucket < kBuckets ? in_flight_[bucket].load() : 0;
}

std::int64_t ShardGate::epoch(std::string_view ns) const noexcept {
  const std::uint32_t b = namespace_bucket(ns);
  return granted(b) ? epoch_[b].load() : 0;
}

void ShardGate::set_epoch(std::uint32_t bucket, std::int64_t epoch) noexcept {
  if (bucket < kBuckets) epoch_[bucket].store(epoch);
}

void ShardGate::grant(std::span<const std::uint32_t> buckets) {
  std::vector<std::uint32_t> gained;
  for (const auto b : buckets) {
    if (b < kBuckets && !owned_[b].exchange(true)) gained.push_back(b);
  }
  if (gained.empty()) return;
  std::function<void(const std::vector<std::uint32_t>&)> cb;
  {
    std::lock_guard lock(mu_);
    cb = on_gained_;
  }
  if (cb) cb(gained);
}

void ShardGate::revoke(std::uint32_t bucket) noexcept {
  if (bucket < kBuckets) owned_[bucket].store(false);
}

void ShardGate::revoke_all() noexcept {
  for (auto& o : owned_) o.store(false);
}

void ShardGate::set_deadline(Clock::time_point until) noexcept { deadline_.store(until.time_since_epoch().count()); }

ShardGate::Clock::time_point ShardGate::deadline() const {
  if (deadline_source_) return deadline_source_();
  return Clock::time_point(Clock::duration(deadline_.load()));
}

void ShardGate::set_deadline_source(std::function<Clock::time_point()> source) { deadline_source_ = std::move(source); }

std::vector<std::uint32_t> ShardGate::owned() const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t b = 0; b < kBuckets; ++b) {
    if (owned_[b].load()) out.push_back(b);
  }
  return out;
}

void ShardGate::on_gained(std::function<void(const std::vector<std::uint32_t>&)> callback) {
  std::lock_guard lock(mu_);
  on_gained_ = std::move(callback);
}

}  // namespace rootseal::sync
