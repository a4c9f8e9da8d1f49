#include "engine/store_parking.hpp"

#include <algorithm>

namespace rootseal::sync::engine {

namespace json = boost::json;

namespace {

// A probe is queued at least this late (a store whose backoff just ended is
// probed by whoever comes first; no tight loop when one is out).
constexpr std::chrono::milliseconds kMinProbeDelay{50};

std::string_view str(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v != nullptr && v->is_string() ? std::string_view(v->as_string()) : std::string_view{};
}

void add_ref(const json::value& ref, std::string_view ns, std::vector<std::string>& out) {
  if (!ref.is_object()) return;
  const auto& o = ref.as_object();
  const auto name = str(o, "name");
  if (name.empty()) return;
  std::string id =
      str(o, "kind") == "ClusterSecretStore" ? "ClusterSecretStore//" : "SecretStore/" + std::string(ns) + "/";
  id += name;
  if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(std::move(id));
}

void walk(const json::value& v, std::string_view ns, std::vector<std::string>& out, int depth) {
  if (depth > 8) return;
  if (v.is_array()) {
    for (const auto& e : v.as_array()) walk(e, ns, out, depth + 1);
    return;
  }
  if (!v.is_object()) return;
  for (const auto& kv : v.as_object()) {
    if (kv.key() == "secretStoreRef" || kv.key() == "storeRef") {
      add_ref(kv.value(), ns, out);
    } else if (kv.key() == "secretStoreRefs" && kv.value().is_array()) {
      for (const auto& r : kv.value().as_array()) add_ref(r, ns, out);
    } else {
      walk(kv.value(), ns, out, depth + 1);
    }
  }
}

}  // namespace

std::vector<std::string> store_ids_of(const json::value& object) {
  std::vector<std::string> out;
  if (!object.is_object()) return out;
  const auto& o = object.as_object();
  std::string_view ns;
  if (const auto* md = o.if_contains("metadata"); md != nullptr && md->is_object())
    ns = str(md->as_object(), "namespace");
  if (const auto* spec = o.if_contains("spec")) walk(*spec, ns, out, 0);
  return out;
}

std::chrono::milliseconds ParkingLot::delay_until(const StoreHealth& health) {
  const auto next = health.snapshot().next_attempt;
  const auto now = StoreHealth::Clock::now();
  const auto d = next > now ? std::chrono::ceil<std::chrono::milliseconds>(next - now) : std::chrono::milliseconds(0);
  return std::max(d, kMinProbeDelay);
}

ParkingLot::Parked ParkingLot::park(const std::string& store, const std::string& key, const StoreHealth& health) {
  std::lock_guard lock(mu_);
  if (!health.backing_off()) return {};
  auto& lot = lots_[store];
  if (lot.probe.empty() || lot.probe == key) {
    lot.probe = key;
    lot.keys.erase(key);
    return {true, delay_until(health)};
  }
  lot.keys.insert(key);
  return {true, std::nullopt};
}

std::optional<std::pair<std::string, std::chrono::milliseconds>> ParkingLot::probe_done(const std::string& store,
                                                                                        const std::string& key,
                                                                                        const StoreHealth& health) {
  std::lock_guard lock(mu_);
  auto it = lots_.find(store);
  if (it == lots_.end() || it->second.probe != key) return std::nullopt;
  it->second.probe.clear();
  if (!health.backing_off() || it->second.keys.empty()) return std::nullopt;
  // The probe did not park itself again (its object changed or is gone): hand the role on.
  auto first = it->second.keys.begin();
  std::string next = *first;
  it->second.keys.erase(first);
  it->second.probe = next;
  return std::make_pair(std::move(next), delay_until(health));
}

std::vector<std::string> ParkingLot::release(const std::string& store) {
  std::lock_guard lock(mu_);
  auto it = lots_.find(store);
  if (it == lots_.end()) return {};
  std::vector<std::string> out(it->second.keys.begin(), it->second.keys.end());
  lots_.erase(it);
  return out;
}

std::vector<std::string> ParkingLot::probed_by(const std::string& key) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [store, lot] : lots_) {
    if (lot.probe == key) out.push_back(store);
  }
  return out;
}

std::size_t ParkingLot::parked(const std::string& store) const {
  std::lock_guard lock(mu_);
  auto it = lots_.find(store);
  return it == lots_.end() ? 0 : it->second.keys.size();
}

}  // namespace rootseal::sync::engine
