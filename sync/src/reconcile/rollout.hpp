// rootseal::sync::reconcile — rollout restarts of opted-in workloads.
//
// A Deployment, StatefulSet or DaemonSet annotated
//   secret.rootseal.io/reload: "<secret>[,<secret>...]"
// gets its pod template annotation rootseal.io/restartedAt set to the current
// time (RFC 3339) when the data of one of those Secrets changes — once per
// change. Level-based: the workload records, in its own annotation
// secret.rootseal.io/reloaded-hashes ("<secret>=<ESO data hash>,..."), the
// data it last rolled for; a reconcile compares that record with the Secrets'
// current data. The first sight of a Secret only records it (nothing changed
// yet); a missing Secret is left out. One merge patch per workload per change.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile/kube_api.hpp"

namespace rootseal::sync::reconcile {

class RolloutReconciler {
 public:
  RolloutReconciler(KubeApi& api, std::function<std::chrono::system_clock::time_point()> now);

  boost::asio::awaitable<ReconcileResult> reconcile(Resource kind, std::string ns, std::string name);
  // Workloads of `ns` whose reload annotation names `secret`: (kind, name).
  [[nodiscard]] std::vector<std::pair<Resource, std::string>> referencing(const std::string& ns,
                                                                          const std::string& secret) const;
  [[nodiscard]] std::uint64_t restarts() const noexcept { return restarts_.load(); }

 private:
  KubeApi& api_;
  std::function<std::chrono::system_clock::time_point()> now_;
  std::atomic<std::uint64_t> restarts_{0};
};

// Parses "a, b,c" into names (empty entries dropped).
std::vector<std::string> split_names(std::string_view list);

}  // namespace rootseal::sync::reconcile
