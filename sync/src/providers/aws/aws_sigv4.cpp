#include "providers/aws/aws_sigv4.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <stdexcept>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/net/http_client.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::providers::sigv4 {

namespace {

using Digest = std::array<std::uint8_t, 32>;

Digest hmac(std::span<const std::uint8_t> key, std::string_view data) {
  Digest out{};
  unsigned len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    throw std::runtime_error("HMAC-SHA256 failed");  // OpenSSL broken: a programming/fatal error
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Trims and collapses runs of spaces, as the canonical header form requires.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string amz_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string sha256_hex(std::string_view data) {
  Digest d{};
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return kms::hex_encode(d);
}

std::string canonical_request(const Request& r, std::string& signed_headers) {
  std::vector<std::pair<std::string, std::string>> q;
  for (const auto& [k, v] : r.query) q.emplace_back(net::url_encode(k), net::url_encode(v));
  std::sort(q.begin(), q.end());
  std::string query;
  for (const auto& [k, v] : q) {
    if (!query.empty()) query += '&';
    query += k + "=" + v;
  }
  // By name; a repeated header keeps its values in request order (SigV4 joins
  // them in that order): the position breaks ties, as a stable sort would.
  std::vector<std::pair<std::string, std::string>> h;
  for (const auto& [k, v] : r.headers) h.emplace_back(lower(k), canonical_value(v));
  std::vector<std::size_t> order(h.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&h](std::size_t a, std::size_t b) { return h[a].first != h[b].first ? h[a].first < h[b].first : a < b; });
  std::vector<std::pair<std::string, std::string>> sorted;
  sorted.reserve(h.size());
  for (std::size_t i : order) sorted.push_back(std::move(h[i]));
  h = std::move(sorted);
  std::string headers;
  signed_headers.clear();
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (i > 0 && h[i].first == h[i - 1].first) {  // repeated header: values joined by commas
      headers.pop_back();
      headers += "," + h[i].second + "\n";
      continue;
    }
    headers += h[i].first + ":" + h[i].second + "\n";
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += h[i].first;
  }
  return r.method + "\n" + r.path + "\n" + query + "\n" + headers + "\n" + signed_headers + "\n" +
         sha256_hex(r.payload);
}

kms::SecureBytes signing_key(const kms::SecureBytes& secret, std::string_view date, std::string_view region,
                             std::string_view service) {
  SecureBuffer k0(secret.size() + 4);
  k0.append("AWS4");
  k0.append(secret.span());
  Digest k_date = hmac(k0.span(), date);
  Digest k_region = hmac(k_date, region);
  Digest k_service = hmac(k_region, service);
  Digest k_signing = hmac(k_service, "aws4_request");
  auto out = kms::SecureBytes::copy_of(std::span<const std::uint8_t>(k_signing));
  kms::secure_zero(k_date.data(), k_date.size());
  kms::secure_zero(k_region.data(), k_region.size());
  kms::secure_zero(k_service.data(), k_service.size());
  kms::secure_zero(k_signing.data(), k_signing.size());
  return out;
}

namespace {

std::string sign_with(const Request& r, const kms::SecureBytes& secret, std::string_view region,
                      std::string_view service, std::string_view date_time, std::string& signed_headers,
                      std::string& scope) {
  if (date_time.size() < 8) throw std::invalid_argument("sigv4: bad x-amz-date");
  const std::string date(date_time.substr(0, 8));
  scope = date + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  const std::string creq = canonical_request(r, signed_headers);
  const std::string to_sign = "AWS4-HMAC-SHA256\n" + std::string(date_time) + "\n" + scope + "\n" + sha256_hex(creq);
  const auto key = signing_key(secret, date, region, service);
  const Digest sig = hmac(key.span(), to_sign);
  return kms::hex_encode(sig);
}

}  // namespace

std::string signature(const Request& r, const kms::SecureBytes& secret, std::string_view region,
                      std::string_view service, std::string_view date_time) {
  std::string signed_headers;
  std::string scope;
  return sign_with(r, secret, region, service, date_time, signed_headers, scope);
}

kms::SecureBytes authorization(const Request& r, const Credentials& c, std::string_view region,
                               std::string_view service, std::string_view date_time) {
  std::string signed_headers;
  std::string scope;
  const std::string sig = sign_with(r, c.secret_access_key, region, service, date_time, signed_headers, scope);
  SecureBuffer out(256);
  out.append("AWS4-HMAC-SHA256 Credential=");
  out.append(c.access_key_id.span());
  out.append("/" + scope + ", SignedHeaders=" + signed_headers + ", Signature=" + sig);
  return out.take();
}

}  // namespace rootseal::sync::providers::sigv4
