// The snapshot object stores' answer readers (object_store/object_listing.hpp):
// listing pages of GCS (JSON), Azure Blob and S3 (XML), error texts, names
// and prefixes; and the GCS / Azure Blob store specs checked before any
// request. The answers are the services' documented examples.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <functional>

#include "object_store/object_listing.hpp"
#include "rootseal/sync/object_store.hpp"

using namespace rootseal;
using namespace rootseal::sync::providers;
using kms::Errc;

namespace {

std::vector<std::string> names(const ListingPage& p) {
  std::vector<std::string> out;
  for (const auto& o : p.objects) out.push_back(o.name);
  return out;
}

net::ClientResponse answer(unsigned status, std::string_view body,
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
  net::ClientResponse r;
  r.status = status;
  r.headers = std::move(headers);
  r.body.append(body);
  return r;
}

}  // namespace

TEST_CASE("gcs listing: items under the prefix with sizes, and the next page token") {
  // objects.list as documented (https://cloud.google.com/storage/docs/json_api/v1/objects/list).
  const std::string page = R"({
 "kind": "storage#objects",
 "nextPageToken": "CkRyb290c2VhbC0yMDI2MTIwNlQxODE5MDAuMDAwWi5zbmFw",
 "prefixes": ["prod/old/"],
 "items": [
  {"kind": "storage#object", "id": "b/prod/rootseal-20261206T171900.123Z.snap/1733505540123456",
   "name": "prod/rootseal-20261206T171900.123Z.snap", "bucket": "b", "generation": "1733505540123456",
   "metageneration": "1", "contentType": "application/octet-stream", "size": "103424",
   "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==", "crc32c": "AAAAAA==", "etag": "CMDo6Zb4j4oDEAE="},
  {"name": "prod/rootseal-20261206T181900.000Z.snap", "size": "18446744073709551615"},
  {"name": "prod/old/rootseal-20250101T000000.000Z.snap", "size": "1"},
  {"name": "prod/.hidden", "size": "1"},
  {"name": "elsewhere/rootseal-20261206T171900.123Z.snap", "size": "1"},
  {"name": "prod/no-size"}
 ]
})";
  auto p = parse_gcs_listing(page, "prod/");
  REQUIRE(p);
  CHECK(names(*p) == std::vector<std::string>{"rootseal-20261206T171900.123Z.snap",
                                              "rootseal-20261206T181900.000Z.snap", "no-size"});
  CHECK(p->objects[0].size == 103424);
  CHECK(p->objects[1].size == 18446744073709551615ull);
  CHECK(p->objects[2].size == 0);
  CHECK(p->next == "CkRyb290c2VhbC0yMDI2MTIwNlQxODE5MDAuMDAwWi5zbmFw");

  // The last page has no token; an empty bucket answers no items at all.
  auto last = parse_gcs_listing(R"({"kind":"storage#objects","items":[{"name":"a.snap","size":"7"}]})", "");
  REQUIRE(last);
  CHECK(names(*last) == std::vector<std::string>{"a.snap"});
  CHECK(last->next.empty());
  auto empty = parse_gcs_listing(R"({"kind":"storage#objects"})", "");
  REQUIRE(empty);
  CHECK(empty->objects.empty());
  CHECK(empty->next.empty());
}

TEST_CASE("gcs listing: answers that are not a listing are refused, not half read") {
  const std::pair<std::string, std::string> cases[] = {
      {"<html>502 Bad Gateway</html>", "not a JSON object"},
      {"[]", "not a JSON object"},
      {R"({"items": {"name": "a"}})", "items is not an array"},
      {R"({"items": [{"size": "1"}]})", "has no name"},
      {R"({"items": ["a.snap"]})", "has no name"},
      {R"({"items": [{"name": "a.snap", "size": 7}]})", "size is not a number"},
      {R"({"items": [{"name": "a.snap", "size": "-7"}]})", "size is not a number"},
      {R"({"items": [{"name": "a.snap", "size": "99999999999999999999"}]})", "size is not a number"},
      {R"({"items": [], "nextPageToken": 5})", "nextPageToken is not a string"},
  };
  for (const auto& [body, message] : cases) {
    INFO(body);
    auto p = parse_gcs_listing(body, "");
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::unavailable);
    CHECK(p.error().message.find(message) != std::string::npos);
  }
}

TEST_CASE("azure listing: blobs under the prefix with Content-Length, NextMarker") {
  // List Blobs as documented (https://learn.microsoft.com/rest/api/storageservices/list-blobs),
  // with the byte-order mark the service puts before the declaration.
  const std::string page =
      "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>"
      "<EnumerationResults ServiceEndpoint=\"https://acct.blob.core.windows.net/\" ContainerName=\"snaps\">"
      "<Prefix>prod/</Prefix><MaxResults>2</MaxResults><Blobs>"
      "<Blob><Name>prod/rootseal-20261206T171900.123Z.snap</Name><Properties>"
      "<Creation-Time>Sun, 06 Dec 2026 17:19:00 GMT</Creation-Time><Last-Modified>Sun, 06 Dec 2026 17:19:00 GMT"
      "</Last-Modified><Etag>0x8DD15A0D5C8E3F1</Etag><Content-Length>103424</Content-Length>"
      "<Content-Type>application/octet-stream</Content-Type><Content-MD5>1B2M2Y8AsgTpgAmY7PhCfg==</Content-MD5>"
      "<BlobType>BlockBlob</BlobType></Properties><Metadata><Name>not-the-blob-name</Name></Metadata></Blob>"
      "<BlobPrefix><Name>prod/old/</Name></BlobPrefix>"
      "<Blob><Name>prod/a&amp;b</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"
      "<Blob><Name Encoded=\"true\">prod/%EF%BF%BE</Name><Properties><Content-Length>1</Content-Length>"
      "</Properties></Blob>"
      "<Blob><Name>prod/rootseal-20261206T181900.000Z.snap</Name><Properties><Content-Length>0</Content-Length>"
      "</Properties></Blob>"
      "</Blobs><NextMarker>2!96!MDAwMDIxIXByb2Qvcm9vdHNlYWwtMjAyNjEyMDZUMTkxOTAwLjAwMFouc25hcCEwMDAwMjgh</NextMarker>"
      "</EnumerationResults>";
  auto p = parse_azure_listing(page, "prod/");
  REQUIRE(p);
  CHECK(names(*p) ==
        std::vector<std::string>{"rootseal-20261206T171900.123Z.snap", "rootseal-20261206T181900.000Z.snap"});
  CHECK(p->objects[0].size == 103424);
  CHECK(p->next == "2!96!MDAwMDIxIXByb2Qvcm9vdHNlYWwtMjAyNjEyMDZUMTkxOTAwLjAwMFouc25hcCEwMDAwMjgh");

  // The last page: an empty, self-closing NextMarker.
  auto last = parse_azure_listing(
      "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"snaps\"><Blobs>"
      "<Blob><Name>a.snap</Name><Properties><Content-Length>9</Content-Length></Properties></Blob></Blobs>"
      "<NextMarker /></EnumerationResults>",
      "");
  REQUIRE(last);
  CHECK(names(*last) == std::vector<std::string>{"a.snap"});
  CHECK(last->objects[0].size == 9);
  CHECK(last->next.empty());
}

TEST_CASE("azure listing: answers that are not a listing are refused") {
  auto err = parse_azure_listing(
      "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerNotFound</Code></Error>", "");
  REQUIRE_FALSE(err);
  CHECK(err.error().code == Errc::unavailable);
  auto bad = parse_azure_listing(
      "<EnumerationResults><Blobs><Blob><Name>a.snap</Name><Properties><Content-Length>x1</Content-Length>"
      "</Properties></Blob></Blobs></EnumerationResults>",
      "");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("Content-Length is not a number") != std::string::npos);
}

TEST_CASE("s3 listing: keys under the prefix, the continuation token only while truncated") {
  auto p = parse_s3_listing(
      "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/"
      "wm36Hy4vbOwM=</NextContinuationToken><Contents><Key>p/rootseal-20261206T171900.123Z.snap</Key><Size>7</Size>"
      "</Contents><Contents><Key>other/x.snap</Key></Contents><Contents><Key>p/sub/y.snap</Key></Contents>"
      "</ListBucketResult>",
      "p/");
  CHECK(names(p) == std::vector<std::string>{"rootseal-20261206T171900.123Z.snap"});
  CHECK(p.objects[0].size == 7);
  CHECK(p.next == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  auto last = parse_s3_listing(
      "<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken>"
      "</ListBucketResult>",
      "");
  CHECK(last.next.empty());
}

TEST_CASE("xml error texts: the code only, from the body or the header, never the message") {
  CHECK(xml_error_text("azure-blob", "Get Blob x",
                       answer(404,
                              "\xEF\xBB\xBF<?xml version=\"1.0\"?><Error><Code>"
                              "BlobNotFound</Code><Message>The specified blob does "
                              "not exist. secret-ish</Message></Error>")) ==
        "azure-blob: Get Blob x: HTTP 404 BlobNotFound");
  CHECK(xml_error_text("azure-blob", "Put Blob x", answer(403, "", {{"X-Ms-Error-Code", "AuthenticationFailed"}}),
                       "x-ms-error-code") == "azure-blob: Put Blob x: HTTP 403 AuthenticationFailed");
  CHECK(xml_error_text("s3", "PutObject", answer(500, "<Error><Code>Bad Code!</Code></Error>")) ==
        "s3: PutObject: HTTP 500");
  CHECK(xml_error_text("s3", "PutObject", answer(502, "<html>")) == "s3: PutObject: HTTP 502");
}

TEST_CASE("object names and prefixes") {
  CHECK(valid_object_name("rootseal-20261206T171900.123Z.snap"));
  CHECK_FALSE(valid_object_name(""));
  CHECK_FALSE(valid_object_name(".hidden"));
  CHECK_FALSE(valid_object_name("a/b"));
  CHECK_FALSE(valid_object_name(std::string(201, 'a')));
  CHECK(valid_object_prefix(""));
  CHECK(valid_object_prefix("rootseal/prod-eu/"));
  CHECK_FALSE(valid_object_prefix("/abs/"));
  CHECK_FALSE(valid_object_prefix("noslash"));
  CHECK_FALSE(valid_object_prefix("a//b/"));
  CHECK_FALSE(valid_object_prefix("sp ace/"));
  CHECK_FALSE(valid_object_prefix("q?x/"));
}

TEST_CASE("gcs and azure stores: the spec is checked before any request") {
  boost::asio::io_context io;
  const std::string key =
      R"({"type":"service_account","client_email":"s@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+0\n-----END PRIVATE KEY-----\n"})";
  auto gcs = [&] {
    sync::GcsSpec s;
    s.bucket = "rootseal-snapshots";
    s.prefix = "prod/";
    s.service_account_json = kms::SecureBytes::copy_of(std::string_view(key));
    return s;
  };
  REQUIRE(sync::make_gcs_store(io.get_executor(), gcs()));
  const std::pair<std::function<void(sync::GcsSpec&)>, std::string> gcs_cases[] = {
      {[](sync::GcsSpec& s) { s.bucket = "Upper"; }, "gcs: bucket"},
      {[](sync::GcsSpec& s) { s.bucket = "ab"; }, "gcs: bucket"},
      {[](sync::GcsSpec& s) { s.prefix = "noslash"; }, "gcs: prefix"},
      {[](sync::GcsSpec& s) { s.endpoint = "http://127.0.0.1:4443/storage"; }, "gcs: endpoint"},
      {[](sync::GcsSpec& s) { s.endpoint = "ftp://127.0.0.1"; }, "gcs: endpoint"},
      {[](sync::GcsSpec& s) { s.token_uri = "ftp://x/token"; }, "gcs: bad token_uri"},
      {[](sync::GcsSpec& s) { s.service_account_json = kms::SecureBytes(); },
       "gcs: the service-account key is required"},
      {[](sync::GcsSpec& s) { s.service_account_json = kms::SecureBytes::copy_of(std::string_view("hunter2")); },
       "gcs: the service-account key is not JSON"},
      {[](sync::GcsSpec& s) { s.service_account_json = kms::SecureBytes::copy_of(std::string_view("{}")); },
       "needs client_email and private_key"},
  };
  for (const auto& [change, message] : gcs_cases) {
    auto s = gcs();
    change(s);
    auto r = sync::make_gcs_store(io.get_executor(), std::move(s));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(message) != std::string::npos);
    CHECK(r.error().message.find("hunter2") == std::string::npos);
  }

  auto az = [] {
    sync::AzureBlobSpec s;
    s.account = "rootsealbackups";
    s.container = "snapshots";
    s.tenant_id = "t";
    s.client_id = "c";
    s.client_secret = kms::SecureBytes::copy_of(std::string_view("secret"));
    return s;
  };
  auto made = sync::make_azure_blob_store(io.get_executor(), az());
  REQUIRE(made);
  CHECK((*made)->describe() == "azure://rootsealbackups/snapshots/");
  const std::pair<std::function<void(sync::AzureBlobSpec&)>, std::string> az_cases[] = {
      {[](sync::AzureBlobSpec& s) { s.account = "Upper"; }, "azure-blob: account"},
      {[](sync::AzureBlobSpec& s) { s.account = std::string(25, 'a'); }, "azure-blob: account"},
      {[](sync::AzureBlobSpec& s) { s.container = "-snaps"; }, "azure-blob: container"},
      {[](sync::AzureBlobSpec& s) { s.container = "sn--aps"; }, "azure-blob: container"},
      {[](sync::AzureBlobSpec& s) { s.prefix = "/x/"; }, "azure-blob: prefix"},
      {[](sync::AzureBlobSpec& s) { s.endpoint = "http://127.0.0.1:10000/devstoreaccount1"; }, "azure-blob: endpoint"},
      {[](sync::AzureBlobSpec& s) { s.authority_host = "login.microsoftonline.com"; }, "azure-blob: authority_host"},
      {[](sync::AzureBlobSpec& s) { s.client_secret = kms::SecureBytes(); }, "clientSecret are required"},
      {[](sync::AzureBlobSpec& s) { s.tenant_id.clear(); }, "tenantId"},
  };
  for (const auto& [change, message] : az_cases) {
    auto s = az();
    change(s);
    auto r = sync::make_azure_blob_store(io.get_executor(), std::move(s));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}
