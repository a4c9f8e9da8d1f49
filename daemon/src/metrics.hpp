// Counters and histograms for /v1/sys/metrics?format=prometheus.
// Fixed label sets (routes, outcomes), so no client input ever becomes a
// label and the number of series is bounded. No key names, no secrets.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rootseal::daemon {

enum class Route : std::uint8_t {
  health,
  seal_status,
  leader,
  metrics,
  keys,
  encrypt,
  decrypt,
  rewrap,
  datakey,
  token,
  other,
  count_
};
std::string_view to_string(Route route) noexcept;
// Classifies a request path (after "/v1/") for the given Transit mount.
Route classify(std::string_view path, std::string_view mount) noexcept;

class Metrics {
 public:
  static constexpr std::array<double, 12> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.025,   0.05,   0.1,   0.5,    1.0};

  void observe_request(Route route, std::string_view method, unsigned status, std::chrono::nanoseconds elapsed);

  // Values read at scrape time (sealed state, key counts, locked memory ...);
  // a name ending in _total is exposed as a counter.
  using Gauge = std::function<double()>;
  void add_gauge(std::string name, std::string help, Gauge gauge);
  // A gauge with one label (`label`), values read at scrape time: one series
  // per (label value, number). Label values are escaped; at most 1000 series.
  using GaugeFamily = std::function<std::vector<std::pair<std::string, double>>()>;
  void add_gauge_family(std::string name, std::string help, GaugeFamily family, std::string label);

  // A section rendered by its owner (whole families, HELP and TYPE lines
  // included), appended at every scrape.
  using Section = std::function<void(std::string& out)>;
  void add_section(Section section);

  // Prometheus text exposition format 0.0.4.
  [[nodiscard]] std::string render() const;

 private:
  struct Histogram {
    // Per bucket, not cumulative (one increment a request); render() sums up.
    // The last slot counts what is above the largest bound.
    std::array<std::atomic<std::uint64_t>, kBuckets.size() + 1> buckets{};
    std::atomic<std::uint64_t> sum_ns{0};
  };
  std::array<Histogram, static_cast<std::size_t>(Route::count_)> latency_{};

  // Request counts by (route, method, status) for the methods and statuses the
  // API answers with, lock-free; anything else goes to the map under mu_.
  static constexpr std::array<std::string_view, 7> kMethods = {"GET", "HEAD", "POST", "PUT", "DELETE", "LIST", "OTHER"};
  static constexpr std::array<unsigned, 12> kStatuses = {200, 204, 400, 401, 403, 404, 405, 408, 413, 429, 500, 503};
  static constexpr std::size_t kRoutes = static_cast<std::size_t>(Route::count_);
  std::array<std::atomic<std::uint64_t>, kRoutes * kMethods.size() * kStatuses.size()> common_{};

  mutable std::mutex mu_;
  std::map<std::tuple<Route, std::string, unsigned>, std::uint64_t> requests_;  // the rare other statuses
  std::vector<std::tuple<std::string, std::string, Gauge>> gauges_;
  std::vector<std::tuple<std::string, std::string, GaugeFamily, std::string>> families_;
  std::vector<Section> sections_;

  // render()'s parts: request counts (with the rare ones from `requests`), latency histograms.
  void append_requests(std::string& out,
                       std::map<std::tuple<Route, std::string, unsigned>, std::uint64_t> requests) const;
  void append_latency(std::string& out) const;
};

}  // namespace rootseal::daemon
