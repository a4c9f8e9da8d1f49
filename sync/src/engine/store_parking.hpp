// rootseal::sync::engine — ExternalSecrets and PushSecrets waiting for a store
// that is backed off (providers/store_health.hpp).
//
// While a store backs off, the keys whose reconcile it refused are parked
// here instead of being re-queued one by one with their own backoff. One of
// them is the store's probe: the engine queues it again when the store's
// backoff ends, and its reconcile makes the one call the store lets through.
// When the store answers again (StoreHealth's recovery callback), every
// parked key is released at once and queued together; the fetch cache then
// makes one provider call per distinct remote key.
//
// park() checks the store's state under the lot's lock, and release() (from
// the recovery callback) takes the same lock, so a key is never parked after
// the store recovered.
#pragma once

#include <boost/json/value.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "providers/store_health.hpp"

namespace rootseal::sync::engine {

// The health ids ("SecretStore/<ns>/<name>", "ClusterSecretStore//<name>") of
// every store an ExternalSecret or PushSecret object names (secretStoreRef,
// secretStoreRefs[], any sourceRef.storeRef / storeRef), without duplicates.
std::vector<std::string> store_ids_of(const boost::json::value& object);

class ParkingLot {
 public:
  struct Parked {
    bool parked = false;  // false: the store is not backing off; retry as usual
    // Set when this key is the store's probe: queue it again after this delay
    // (it is not in the parked set).
    std::optional<std::chrono::milliseconds> probe_after;
  };

  // Parks `key` under `store` if `health` still backs off.
  Parked park(const std::string& store, const std::string& key, const StoreHealth& health);
  // The probe of `store` ran (whatever its outcome). If the store still backs
  // off and keys are parked but no probe is out, one of them becomes the probe:
  // returned with its delay.
  std::optional<std::pair<std::string, std::chrono::milliseconds>> probe_done(const std::string& store,
                                                                              const std::string& key,
                                                                              const StoreHealth& health);
  // Every key parked under `store` (and its probe mark), removed.
  std::vector<std::string> release(const std::string& store);
  // The stores whose probe `key` is.
  [[nodiscard]] std::vector<std::string> probed_by(const std::string& key) const;
  [[nodiscard]] std::size_t parked(const std::string& store) const;

 private:
  static std::chrono::milliseconds delay_until(const StoreHealth& health);
  struct Lot {
    std::set<std::string> keys;
    std::string probe;  // empty: none out
  };
  mutable std::mutex mu_;
  std::map<std::string, Lot> lots_;
};

}  // namespace rootseal::sync::engine
