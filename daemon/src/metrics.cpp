#include "metrics.hpp"

#include <cstdio>
#include <tuple>
#include <vector>

namespace rootseal::daemon {

std::string_view to_string(Route route) noexcept {
  switch (route) {
    case Route::health:
      return "sys/health";
    case Route::seal_status:
      return "sys/seal-status";
    case Route::leader:
      return "sys/leader";
    case Route::metrics:
      return "sys/metrics";
    case Route::keys:
      return "transit/keys";
    case Route::encrypt:
      return "transit/encrypt";
    case Route::decrypt:
      return "transit/decrypt";
    case Route::rewrap:
      return "transit/rewrap";
    case Route::datakey:
      return "transit/datakey";
    case Route::token:
      return "auth/token";
    case Route::other:
    case Route::count_:
      break;
  }
  return "other";
}

Route classify(std::string_view path, std::string_view mount) noexcept {
  if (path == "sys/health") return Route::health;
  if (path == "sys/seal-status") return Route::seal_status;
  if (path == "sys/leader") return Route::leader;
  if (path == "sys/metrics") return Route::metrics;
  if (path.starts_with("auth/token/")) return Route::token;
  if (path.size() > mount.size() && path.starts_with(mount) && path[mount.size()] == '/') {
    const std::string_view rest = path.substr(mount.size() + 1);
    if (rest.starts_with("keys")) return Route::keys;
    if (rest.starts_with("encrypt/")) return Route::encrypt;
    if (rest.starts_with("decrypt/")) return Route::decrypt;
    if (rest.starts_with("rewrap/")) return Route::rewrap;
    if (rest.starts_with("datakey/")) return Route::datakey;
  }
  return Route::other;
}

void Metrics::observe_request(Route route, std::string_view method, unsigned status, std::chrono::nanoseconds elapsed) {
  auto& h = latency_[static_cast<std::size_t>(route)];
  const double seconds = std::chrono::duration<double>(elapsed).count();
  std::size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  h.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  h.sum_ns.fetch_add(static_cast<std::uint64_t>(elapsed.count()), std::memory_order_relaxed);
  // Methods outside the known set are folded so a client cannot mint series.
  std::size_t m = kMethods.size() - 1;  // OTHER
  for (std::size_t i = 0; i + 1 < kMethods.size(); ++i) {
    if (method == kMethods[i]) m = i;
  }
  for (std::size_t s = 0; s < kStatuses.size(); ++s) {
    if (kStatuses[s] == status) {
      common_[(static_cast<std::size_t>(route) * kMethods.size() + m) * kStatuses.size() + s].fetch_add(
          1, std::memory_order_relaxed);
      return;
    }
  }
  std::lock_guard lock(mu_);
  ++requests_[{route, std::string(kMethods[m]), status}];
}

void Metrics::add_gauge(std::string name, std::string help, Gauge gauge) {
  std::lock_guard lock(mu_);
  gauges_.emplace_back(std::move(name), std::move(help), std::move(gauge));
}

void Metrics::add_gauge_family(std::string name, std::string help, GaugeFamily family, std::string label) {
  std::lock_guard lock(mu_);
  families_.emplace_back(std::move(name), std::move(help), std::move(family), std::move(label));
}

void Metrics::add_section(Section section) {
  std::lock_guard lock(mu_);
  sections_.push_back(std::move(section));
}

namespace {

// Scrape-time gauges; by Prometheus' naming rule one ending in _total only
// ever grows: a counter.
void append_gauges(std::string& out, const std::vector<std::tuple<std::string, std::string, Metrics::Gauge>>& gauges) {
  char buf[64];
  for (const auto& [name, help, gauge] : gauges) {
    // (Name and help are appended as they are: they may be longer than buf.)
    const char* type = std::string_view(name).ends_with("_total") ? "counter" : "gauge";
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
    out.append(type).append("\n").append(name);
    std::snprintf(buf, sizeof buf, " %.17g\n", gauge());
    out += buf;
  }
}

// A label value with the text format's escapes: backslash, quote, newline.
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
}

// Gauge families: one series per label value, at most 1000 a family.
void append_families(
    std::string& out,
    const std::vector<std::tuple<std::string, std::string, Metrics::GaugeFamily, std::string>>& families) {
  char buf[64];
  for (const auto& [name, help, family, label] : families) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n";
    std::size_t n = 0;
    for (const auto& [value_label, value] : family()) {
      if (++n > 1000) break;
      out += name + "{" + label + "=\"";
      append_label_value(out, value_label);
      std::snprintf(buf, sizeof buf, "\"} %.17g\n", value);
      out += buf;
    }
  }
}

}  // namespace

// The lock-free counters merged into `requests` (the rare statuses), in the
// map's order: route, method, status.
void Metrics::append_requests(std::string& out,
                              std::map<std::tuple<Route, std::string, unsigned>, std::uint64_t> requests) const {
  char buf[256];
  out += "# HELP rootseal_http_requests_total HTTP requests by route, method and status.\n";
  out += "# TYPE rootseal_http_requests_total counter\n";
  for (std::size_t r = 0; r < kRoutes; ++r) {
    for (std::size_t m = 0; m < kMethods.size(); ++m) {
      for (std::size_t s = 0; s < kStatuses.size(); ++s) {
        const auto n = common_[(r * kMethods.size() + m) * kStatuses.size() + s].load(std::memory_order_relaxed);
        if (n != 0) requests[{static_cast<Route>(r), std::string(kMethods[m]), kStatuses[s]}] = n;
      }
    }
  }
  for (const auto& [key, count] : requests) {
    const auto& [route, method, status] = key;
    std::snprintf(buf, sizeof buf, "rootseal_http_requests_total{route=\"%.*s\",method=\"%s\",status=\"%u\"} %llu\n",
                  static_cast<int>(to_string(route).size()), to_string(route).data(), method.c_str(), status,
                  static_cast<unsigned long long>(count));
    out += buf;
  }
}

// One histogram per route that saw a request; cumulative buckets.
void Metrics::append_latency(std::string& out) const {
  char buf[256];
  out += "# HELP rootseal_http_request_duration_seconds Time from a parsed request to its response.\n";
  out += "# TYPE rootseal_http_request_duration_seconds histogram\n";
  for (std::size_t r = 0; r < latency_.size(); ++r) {
    const auto& h = latency_[r];
    std::array<std::uint64_t, kBuckets.size() + 1> per{};
    std::uint64_t count = 0;
    for (std::size_t i = 0; i < per.size(); ++i) count += per[i] = h.buckets[i].load(std::memory_order_relaxed);
    if (count == 0) continue;
    const auto name = to_string(static_cast<Route>(r));
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += per[i];
      std::snprintf(buf, sizeof buf, "rootseal_http_request_duration_seconds_bucket{route=\"%.*s\",le=\"%g\"} %llu\n",
                    static_cast<int>(name.size()), name.data(), kBuckets[i],
                    static_cast<unsigned long long>(cumulative));
      out += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "rootseal_http_request_duration_seconds_bucket{route=\"%.*s\",le=\"+Inf\"} %llu\n"
                  "rootseal_http_request_duration_seconds_sum{route=\"%.*s\"} %.9f\n"
                  "rootseal_http_request_duration_seconds_count{route=\"%.*s\"} %llu\n",
                  static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(count),
                  static_cast<int>(name.size()), name.data(),
                  static_cast<double>(h.sum_ns.load(std::memory_order_relaxed)) / 1e9, static_cast<int>(name.size()),
                  name.data(), static_cast<unsigned long long>(count));
    out += buf;
  }
}

std::string Metrics::render() const {
  std::vector<std::tuple<std::string, std::string, Gauge>> gauges;
  std::vector<std::tuple<std::string, std::string, GaugeFamily, std::string>> families;
  std::map<std::tuple<Route, std::string, unsigned>, std::uint64_t> requests;
  std::vector<Section> sections;
  {
    std::lock_guard lock(mu_);
    requests = requests_;
    gauges = gauges_;
    families = families_;
    sections = sections_;
  }
  std::string out;
  append_requests(out, std::move(requests));
  append_latency(out);
  append_gauges(out, gauges);
  append_families(out, families);
  for (const auto& section : sections) section(out);
  return out;
}

}  // namespace rootseal::daemon
