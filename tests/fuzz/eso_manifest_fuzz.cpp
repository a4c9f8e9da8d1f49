// Fuzz target: ESO resources as the Kubernetes API hands them to the sync
// engine (sync/src/model/parse.cpp): ExternalSecret, SecretStore,
// ClusterSecretStore and PushSecret in their JSON form. Every input is given
// to all four parsers (each checks the kind itself) and to parse_meta.
//
// Properties beyond "no crash, no sanitizer report":
//  - a failure is invalid_argument with a "<field path>: <reason>" message;
//  - parsing depends on the JSON value only: the value serialized and parsed
//    again (another text of the same value) gives the same outcome and the
//    same message;
//  - namespace_allowed() of a parsed store: a SecretStore serves its own
//    namespace only, a ClusterSecretStore without conditions every one.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "json_limits.hpp"
#include "model/parse.hpp"

namespace json = boost::json;
namespace model = rootseal::sync::model;
using namespace rootseal;

namespace {

// "" for success, else the message (after checking the error is clean).
template <class T>
std::string outcome(const kms::Result<T>& r) {
  if (r) return {};
  fuzz::require_clean_error(r.error(), {kms::Errc::invalid_argument}, "manifest error code");
  fuzz::require(r.error().message.find(": ") != std::string::npos, "manifest error names its field");
  return r.error().message;
}

std::string parse_all(const json::value& v, bool check_stores) {
  std::string out;
  out += outcome(model::parse_meta(v)) + "\n";
  out += outcome(model::parse_external_secret(v)) + "\n";
  out += outcome(model::parse_push_secret(v)) + "\n";
  auto store = model::parse_secret_store(v);
  out += outcome(store);
  if (check_stores && store) {
    model::StringMap labels;
    if (const auto* o = v.if_object()) {
      if (const auto* m = o->if_contains("metadata"); m != nullptr && m->is_object()) {
        if (const auto* l = m->as_object().if_contains("labels"); l != nullptr && l->is_object()) {
          for (const auto& kv : l->as_object()) {
            if (kv.value().is_string()) labels.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
          }
        }
      }
    }
    if (store->kind != model::StoreKind::cluster_secret_store) {
      // ESO's rule: a SecretStore's serviceAccountRef names its own namespace only.
      const auto& va = store->vault.auth;
      fuzz::require(!va.has_service_account || va.service_account.namespace_ == store->meta.namespace_,
                    "a SecretStore's Vault serviceAccountRef is in its namespace");
      fuzz::require(!store->aws.has_jwt || store->aws.jwt_service_account.namespace_ == store->meta.namespace_,
                    "a SecretStore's AWS serviceAccountRef is in its namespace");
      fuzz::require(
          !store->azurekv.workload_identity || store->azurekv.service_account.namespace_ == store->meta.namespace_,
          "a SecretStore's Azure serviceAccountRef is in its namespace");
      fuzz::require(store->gcpsm.federation == model::GcpProviderSpec::Federation::none ||
                        store->gcpsm.service_account.namespace_ == store->meta.namespace_,
                    "a SecretStore's GCP serviceAccountRef is in its namespace");
      fuzz::require(
          !store->conjur.has_service_account || store->conjur.service_account.namespace_ == store->meta.namespace_,
          "a SecretStore's Conjur serviceAccountRef is in its namespace");
    }
    for (const std::string ns : {"default", "namespace-a", "team-a", ""}) {
      const bool a = model::namespace_allowed(*store, ns, labels);
      if (store->kind != model::StoreKind::cluster_secret_store) {
        fuzz::require(a == (ns == store->meta.namespace_), "a SecretStore serves its own namespace only");
      } else if (store->conditions.empty()) {
        fuzz::require(a, "a ClusterSecretStore without conditions allows every namespace");
      }
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  json::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;
  const json::value v = json::parse(fuzz::as_text(data, size), ec, {}, opts);
  if (ec) return 0;
  const std::string first = parse_all(v, true);
  if (!fuzz::boost_json_round_trips(v)) return 0;
  const json::value again = json::parse(json::serialize(v), ec, {}, opts);
  fuzz::require(!ec, "serialize/parse of a parsed value");
  fuzz::require(parse_all(again, false) == first, "same value, same outcome");
  return 0;
}
