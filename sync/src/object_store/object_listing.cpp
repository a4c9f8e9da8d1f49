// Object names, XML text and listing pages of the snapshot object stores
// (object_store/object_listing.hpp).
#include "object_store/object_listing.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>

namespace rootseal::sync::providers {

using kms::Errc;
using kms::fail;

bool valid_object_name(std::string_view n) {
  if (n.empty() || n.size() > 200 || n.front() == '.') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.';
  });
}

kms::Result<void> check_object_name(std::string_view n) {
  if (!valid_object_name(n))
    return fail(Errc::invalid_argument, "object name must be [A-Za-z0-9._-], not starting with '.'");
  return {};
}

bool valid_object_prefix(std::string_view p) {
  if (p.empty()) return true;
  if (p.size() > 512 || p.front() == '/' || p.back() != '/' || p.find("//") != std::string_view::npos) return false;
  return std::all_of(p.begin(), p.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.' || c == '~' || c == '/';
  });
}

std::optional<std::string> xml_text(std::string_view doc, std::string_view tag, std::size_t& from) {
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  const auto a = doc.find(open, from);
  if (a == std::string_view::npos) return std::nullopt;
  const auto b = doc.find(close, a + open.size());
  if (b == std::string_view::npos) return std::nullopt;
  from = b + close.size();
  const auto raw = doc.substr(a + open.size(), b - a - open.size());
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out.push_back(raw[i]);
      continue;
    }
    static constexpr std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (const auto& [e, c] : kEntities) {
      if (raw.substr(i, e.size()) == e) {
        out.push_back(c);
        i += e.size() - 1;
        done = true;
        break;
      }
    }
    if (!done) out.push_back('&');
  }
  return out;
}

std::string xml_error_text(std::string_view who, std::string_view op, const net::ClientResponse& res,
                           std::string_view code_header) {
  std::size_t at = 0;
  std::string c = xml_text(res.body.view(), "Code", at).value_or("");
  if (c.empty() && !code_header.empty()) {
    for (const auto& [k, v] : res.headers) {
      if (k.size() == code_header.size() && std::equal(k.begin(), k.end(), code_header.begin(), [](char x, char y) {
            return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
          })) {
        c = v;
      }
    }
  }
  if (c.size() > 64 ||
      !std::all_of(c.begin(), c.end(), [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) != 0; })) {
    c.clear();
  }
  return std::string(who) + ": " + std::string(op) + ": HTTP " + std::to_string(res.status) +
         (c.empty() ? "" : " " + c);
}

namespace {

// The object `full` names, if it is directly under `prefix` with a valid name.
std::optional<ObjectInfo> ours(std::string_view full, std::string_view prefix, std::uint64_t size) {
  if (!full.starts_with(prefix)) return std::nullopt;
  ObjectInfo info;
  info.name = std::string(full.substr(prefix.size()));
  if (!valid_object_name(info.name)) return std::nullopt;  // not ours (a "folder" below the prefix, ...)
  info.size = size;
  return info;
}

std::optional<std::uint64_t> decimal(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

ListingPage parse_s3_listing(std::string_view doc, std::string_view prefix) {
  ListingPage page;
  for (std::size_t at = doc.find("<Contents>"); at != std::string_view::npos; at = doc.find("<Contents>", at)) {
    const auto end = doc.find("</Contents>", at);
    if (end == std::string_view::npos) break;
    const auto part = doc.substr(at, end - at);
    at = end;
    std::size_t k = 0;
    std::size_t z = 0;
    const auto key = xml_text(part, "Key", k);
    const auto size = xml_text(part, "Size", z);
    if (!key) continue;
    if (auto o = ours(*key, prefix, size ? std::strtoull(size->c_str(), nullptr, 10) : 0)) {
      page.objects.push_back(std::move(*o));
    }
  }
  std::size_t t = 0;
  const auto truncated = xml_text(doc, "IsTruncated", t);
  std::size_t n = 0;
  const auto next = xml_text(doc, "NextContinuationToken", n);
  if (truncated && *truncated == "true" && next) page.next = *next;
  return page;
}

kms::Result<ListingPage> parse_gcs_listing(std::string_view text, std::string_view prefix) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return fail(Errc::unavailable, "gcs: the listing is not a JSON object");
  const auto& o = v.as_object();
  ListingPage page;
  if (const auto* items = o.if_contains("items")) {
    if (!items->is_array()) return fail(Errc::unavailable, "gcs: the listing's items is not an array");
    for (const auto& item : items->as_array()) {
      const auto* name = item.is_object() ? item.as_object().if_contains("name") : nullptr;
      if (name == nullptr || !name->is_string()) return fail(Errc::unavailable, "gcs: a listed object has no name");
      std::uint64_t size = 0;
      if (const auto* s = item.as_object().if_contains("size")) {
        // uint64 is a JSON string in Google's APIs.
        const auto n = s->is_string() ? decimal(std::string_view(s->as_string())) : std::nullopt;
        if (!n) return fail(Errc::unavailable, "gcs: a listed object's size is not a number");
        size = *n;
      }
      if (auto info = ours(std::string_view(name->as_string()), prefix, size)) page.objects.push_back(std::move(*info));
    }
  }
  if (const auto* next = o.if_contains("nextPageToken")) {
    if (!next->is_string()) return fail(Errc::unavailable, "gcs: the listing's nextPageToken is not a string");
    page.next = std::string(next->as_string());
  }
  return page;
}

kms::Result<ListingPage> parse_azure_listing(std::string_view doc, std::string_view prefix) {
  if (doc.find("<EnumerationResults") == std::string_view::npos) {
    return fail(Errc::unavailable, "azure-blob: the listing is not an EnumerationResults document");
  }
  ListingPage page;
  for (std::size_t at = doc.find("<Blob>"); at != std::string_view::npos; at = doc.find("<Blob>", at)) {
    const auto end = doc.find("</Blob>", at);
    if (end == std::string_view::npos) break;
    const auto part = doc.substr(at, end - at);
    at = end;
    std::size_t k = 0;
    std::size_t z = 0;
    const auto name = xml_text(part, "Name", k);  // <Name Encoded="true"> (not a name we write) is skipped
    if (!name) continue;
    const auto length = xml_text(part, "Content-Length", z);
    std::uint64_t size = 0;
    if (length) {
      const auto n = decimal(*length);
      if (!n) return fail(Errc::unavailable, "azure-blob: a listed blob's Content-Length is not a number");
      size = *n;
    }
    if (auto info = ours(*name, prefix, size)) page.objects.push_back(std::move(*info));
  }
  const auto blobs_end = doc.rfind("</Blobs>");
  std::size_t n = blobs_end == std::string_view::npos ? 0 : blobs_end;
  if (auto next = xml_text(doc, "NextMarker", n)) page.next = std::move(*next);
  return page;
}

}  // namespace rootseal::sync::providers
