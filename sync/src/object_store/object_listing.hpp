// The parts of the snapshot object stores (rootseal/sync/object_store.hpp)
// that read what a remote answers, apart from the I/O so they are unit
// tested and fuzzed on their own: object-name rules, a minimal XML text
// reader, and the listing pages of S3 (ListObjectsV2), Google Cloud Storage
// (objects.list, JSON) and Azure Blob Storage (List Blobs, XML).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/net/http_client.hpp"
#include "rootseal/sync/object_store.hpp"

namespace rootseal::sync::providers {

// What a snapshot writer produces, and nothing that could climb out of a
// folder or need escaping in a URL or XML: 1-200 of [A-Za-z0-9._-], not
// starting with '.'.
bool valid_object_name(std::string_view name);
kms::Result<void> check_object_name(std::string_view name);
// "" or 1-512 of [A-Za-z0-9._~/-] ending with '/', not starting with one,
// without "//" (GCS and Azure prefixes).
bool valid_object_prefix(std::string_view prefix);

// The text of the first <tag>…</tag> at or after `from` (the five XML
// entities decoded); `from` moves past it. nullopt when there is none (a
// self-closing <tag/> is none).
std::optional<std::string> xml_text(std::string_view doc, std::string_view tag, std::size_t& from);

// "<who>: <op>: HTTP 404 BlobNotFound": the service's error code only (from
// <Error><Code> or `code_header`), never its message (which may echo input);
// a code that is not 1-64 letters and digits is left out.
std::string xml_error_text(std::string_view who, std::string_view op, const net::ClientResponse& res,
                           std::string_view code_header = {});

// One page of a listing: the objects directly under `prefix` whose names
// are valid object names (relative to the prefix, in the page's order), and
// the token of the next page ("" on the last).
struct ListingPage {
  std::vector<ObjectInfo> objects;
  std::string next;
};

// ListObjectsV2: <Contents><Key>, <Size>; <IsTruncated>, <NextContinuationToken>.
ListingPage parse_s3_listing(std::string_view xml, std::string_view prefix);
// objects.list: {"items":[{"name","size":"<digits>"}],"nextPageToken"}.
// unavailable when the answer is not such an object (an item without a
// name or with a size that is not a number included).
kms::Result<ListingPage> parse_gcs_listing(std::string_view json, std::string_view prefix);
// List Blobs: <EnumerationResults><Blobs><Blob><Name>,
// <Properties><Content-Length>; <NextMarker>. unavailable when there is no
// <EnumerationResults>.
kms::Result<ListingPage> parse_azure_listing(std::string_view xml, std::string_view prefix);

}  // namespace rootseal::sync::providers
