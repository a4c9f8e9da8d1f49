// Metrics: request counters by (route, method, status) and latency histograms
// in Prometheus text format.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "metrics.hpp"

using namespace rootseal::daemon;
using namespace std::chrono_literals;

namespace {

// The value of the series line that starts with `series` (exactly), or -1.
long long value_of(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(series + " ")) return std::stoll(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace

TEST_CASE("metrics: requests are counted by route, method and status, odd ones folded or kept aside") {
  Metrics m;
  for (int i = 0; i < 3; ++i) m.observe_request(Route::encrypt, "PUT", 200, 300us);
  m.observe_request(Route::encrypt, "POST", 403, 50us);
  m.observe_request(Route::keys, "LIST", 200, 2ms);
  m.observe_request(Route::other, "BREW", 418, 1s + 1ms);  // unknown method folded, unusual status kept
  const auto text = m.render();
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="transit/encrypt",method="PUT",status="200"})") == 3);
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="transit/encrypt",method="POST",status="403"})") == 1);
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="transit/keys",method="LIST",status="200"})") == 1);
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="other",method="OTHER",status="418"})") == 1);
  CHECK(text.find("BREW") == std::string::npos);
}

TEST_CASE("metrics: latency histograms are cumulative, end in +Inf and match the count") {
  Metrics m;
  m.observe_request(Route::decrypt, "PUT", 200, 50us);   // le 0.0001
  m.observe_request(Route::decrypt, "PUT", 200, 300us);  // le 0.0005
  m.observe_request(Route::decrypt, "PUT", 200, 300us);
  m.observe_request(Route::decrypt, "PUT", 200, 2s);  // above every bound
  const auto text = m.render();
  const std::string b = R"(rootseal_http_request_duration_seconds_bucket{route="transit/decrypt",le=")";
  CHECK(value_of(text, b + R"(0.0001"})") == 1);
  CHECK(value_of(text, b + R"(0.00025"})") == 1);
  CHECK(value_of(text, b + R"(0.0005"})") == 3);
  CHECK(value_of(text, b + R"(1"})") == 3);
  CHECK(value_of(text, b + R"(+Inf"})") == 4);
  CHECK(value_of(text, R"(rootseal_http_request_duration_seconds_count{route="transit/decrypt"})") == 4);
  CHECK(text.find(R"(route="transit/encrypt",le=)") == std::string::npos);  // routes without requests are left out
}

TEST_CASE("metrics: counts from many threads add up") {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10000; ++i) m.observe_request(Route::encrypt, "PUT", i % 10 == 0 ? 429 : 200, 100us);
    });
  }
  for (auto& t : threads) t.join();
  const auto text = m.render();
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="transit/encrypt",method="PUT",status="200"})") == 36000);
  CHECK(value_of(text, R"(rootseal_http_requests_total{route="transit/encrypt",method="PUT",status="429"})") == 4000);
  CHECK(value_of(text, R"(rootseal_http_request_duration_seconds_count{route="transit/encrypt"})") == 40000);
}

TEST_CASE("metrics: a labelled gauge family renders one escaped series per value, bounded") {
  Metrics m;
  std::vector<std::pair<std::string, double>> values = {{"SecretStore/ns/vault", 1}, {"odd\"store\\x\ny", 2}};
  m.add_gauge_family("rootseal_sync_store_backing_off", "help", [&] { return values; }, "store");
  auto text = m.render();
  CHECK(text.find("# TYPE rootseal_sync_store_backing_off gauge\n") != std::string::npos);
  CHECK(value_of(text, R"(rootseal_sync_store_backing_off{store="SecretStore/ns/vault"})") == 1);
  CHECK(value_of(text, R"(rootseal_sync_store_backing_off{store="odd\"store\\x\ny"})") == 2);
  values.clear();
  for (int i = 0; i < 1500; ++i) values.emplace_back("s" + std::to_string(i), i);
  text = m.render();
  std::size_t series = 0;
  for (std::size_t p = 0; (p = text.find("rootseal_sync_store_backing_off{", p)) != std::string::npos; ++p) ++series;
  CHECK(series == 1000);
}

TEST_CASE("metrics: a gauge whose name and help are long renders whole") {
  // The HELP, TYPE and sample lines of one gauge went through one 256-byte
  // buffer: rootseal_http_connections_rejected_per_client_total's were cut off
  // mid-line, and Prometheus refuses a scrape with a broken line.
  Metrics m;
  const std::string name = "rootseal_" + std::string(120, 'x') + "_total";
  const std::string help = "A help text of some length. " + std::string(200, 'h');
  m.add_gauge(name, help, [] { return 42.0; });
  m.add_gauge("rootseal_after", "next", [] { return 1.0; });
  const auto text = m.render();
  CHECK(text.find("# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " 42\n") !=
        std::string::npos);
  CHECK(text.find("# HELP rootseal_after next\n# TYPE rootseal_after gauge\nrootseal_after 1\n") != std::string::npos);
}
