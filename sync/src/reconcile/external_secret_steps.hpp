// rootseal::sync::reconcile — the ExternalSecret reconcile as pure steps: no
// I/O, no clock, no state. ExternalSecretReconciler::run reads the world
// (the ExternalSecret, its Secret, the stores' values), calls these in order
// and does what they decide:
//
//   invalid_shell / check_templates   → refuse before any read
//   must_fetch                        → skip the provider when nothing is due
//   add_data_from / add_data          → each whole remote value, property,
//                                       dataFrom's rewrite / key conversion and
//                                       validation (rewrite.hpp), decoding
//   secret_content_of                 → target.template rendered (templateFrom
//                                       ConfigMaps read by the caller;
//                                       apply_secret_template, which the
//                                       PushSecret's spec.template shares)
//   desired_secret                    → Keep, Delete or Write (the body)
//
// Every step that can stop the reconcile says why in a Refusal: the Ready=False
// reason and message, and whether to retry with backoff.
#pragma once

#include <boost/json/value.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/types.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::reconcile {

inline constexpr std::string_view kReasonSynced = "SecretSynced";
inline constexpr std::string_view kReasonError = "SecretSyncedError";
inline constexpr std::string_view kReasonDeleted = "SecretDeleted";
inline constexpr std::string_view kReasonMissing = "SecretMissing";
// ESO's condition messages (externalsecret_controller.go) for the outcomes
// that are not errors: each goes with Ready=True.
inline constexpr std::string_view kMsgDeleted = "secret deleted due to DeletionPolicy=Delete";
inline constexpr std::string_view kMsgRetained = "secret retained due to DeletionPolicy=Retain";
inline constexpr std::string_view kMsgMissing = "secret will not be created due to CreationPolicy=Merge";
// ESO's Normal event messages for a Secret written (eventCreated, eventUpdated).
inline constexpr std::string_view kEventCreated = "secret created";
inline constexpr std::string_view kEventUpdated = "secret updated";
// ESO's fixed Ready=False messages (reason SecretSyncedError), one per path;
// the error itself goes only into the Warning event UpdateFailed.
inline constexpr std::string_view kMsgErrorGetSecretData = "could not get secret data from provider";
inline constexpr std::string_view kMsgErrorDeleteSecret = "could not delete secret";
inline constexpr std::string_view kMsgErrorUpdateSecret = "could not update secret";
inline constexpr std::string_view kMsgErrorUpdateImmutable = "could not update secret, target is immutable";
inline constexpr std::string_view kMsgErrorBecomeOwner = "failed to take ownership of target secret";
inline constexpr std::string_view kMsgErrorIsOwned = "target is owned by another ExternalSecret";

// Why a reconcile stops short: the Ready=False condition's reason and
// message (ESO's fixed text for the path) and the Warning event UpdateFailed's
// message (the error, worded as ESO's controller wraps it). Refusals ESO has
// no path for (an invalid spec, which ESO's webhook refuses; a template
// rootseal does not run; the Secret unreadable) carry the error in both.
// retry false: wait for a change of the object. conflict: a 409 on the
// write — retry at once, status untouched.
struct Refusal {
  std::string_view reason = kReasonError;
  std::string condition;
  std::string event;
  bool retry = true;
  bool conflict = false;
};
// A refusal of ESO's path `condition`, with the error `event`.
Refusal refusal(std::string_view condition, std::string event, bool retry);
// A refusal ESO has no path for: the error in the condition and the event.
Refusal own_refusal(std::string message, bool retry);

// The prefixes of ESO's GetProviderSecretData errors (the event of a
// "could not get secret data from provider"): "error processing
// spec.dataFrom[i].find, err: " (or .extract), "error processing
// spec.data[i] (key: <remote key>), err: ".
std::string data_from_where(const model::ExternalSecret& es, std::size_t i);
std::string data_where(const model::ExternalSecret& es, std::size_t i);
// A refusal met while reading item `where` (a store refused, ...): ESO's
// provider-data condition, the event prefixed with `where`.
Refusal provider_refusal(const std::string& where, Refusal why);
// A refusal of the Secret's mutation (templates, ownership) as ESO's
// updateSecret words it for an existing Secret: "unable to mutate secret
// <name>: " before the event; unchanged for a Secret to create.
Refusal mutate_refusal(const model::ExternalSecret& es, bool existing, Refusal why);
template <class T>
using Step = std::expected<T, Refusal>;

// An ExternalSecret the parser rejected, with what its status needs (meta,
// target name, current status); nullopt when even its metadata is unreadable.
std::optional<model::ExternalSecret> invalid_shell(const boost::json::value& object);

// Template texts are checked before anything is fetched (no retry); with
// creationPolicy None they are not (ESO never applies them).
Step<void> check_templates(const model::ExternalSecret& es);

// ESO's isSecretValid: the managed label, and a data-hash annotation that
// matches the Secret's data.
bool secret_valid(const boost::json::value& secret);

// ESO's shouldRefresh || !isSecretValid: whether the provider must be read.
// spec_changed: syncedResourceVersion moved; interval_elapsed: the
// refreshInterval since the last refresh has passed (the caller's clock);
// existing: the Secret, nullptr if absent.
bool must_fetch(const model::ExternalSecret& es, bool spec_changed, bool interval_elapsed,
                const boost::json::value* existing);

// The values read so far, property and decoding applied.
struct ProviderData {
  SecretMap data;
  // One per remote secret not found and skipped (deletionPolicy Delete/Merge):
  // the message of ESO's Normal event MissingProviderSecret for it.
  std::vector<std::string> missing;
};
// Adds dataFrom[i] / data[i] to `out`, given the whole remote value the
// provider answered (or its error) through `store`, read as the provider's
// `format` says. Later entries override earlier ones (ESO: dataFrom first,
// then data).
Step<void> add_data_from(ProviderData& out, const model::ExternalSecret& es, std::size_t i,
                         const model::StoreRef& store, ValueFormat format, kms::Result<kms::SecureBytes> whole);
Step<void> add_data(ProviderData& out, const model::ExternalSecret& es, std::size_t i, const model::StoreRef& store,
                    ValueFormat format, kms::Result<kms::SecureBytes> whole);
// dataFrom[i].find: the secrets the provider found (name -> whole value, or
// its error) through ESO's handleFindAllSecrets: rewrite or conversion,
// key validation, then decodingStrategy.
Step<void> add_data_found(ProviderData& out, const model::ExternalSecret& es, std::size_t i,
                          kms::Result<SecretMap> found);

// What the templates make of the provider data: the Secret's data, and the
// labels and annotations templates put on it (locked memory: a template may
// place values there).
struct SecretContent {
  SecretMap data;
  SecretMap labels;
  SecretMap annotations;
};
// The ConfigMaps templateFrom names, by name, as read (nullptr: absent).
using TemplateSources = std::map<std::string, std::shared_ptr<const boost::json::value>, std::less<>>;

// ESO's templating.Parser, shared by the ExternalSecret and the PushSecret:
// each templateFrom (configMap items, literals; Values or KeysAndValues;
// into Data, Annotations or Labels), then template.data, then the
// template.metadata labels and annotations, all rendered over `values` into
// `out` (which holds what the caller starts from). `at` names the template
// in errors ("spec.target.template", "spec.template"). A refusal carries
// ESO's wrapping of the stage ("error fetching templateFrom data: ",
// "could not execute template: ") and the error in condition and event.
Step<void> apply_secret_template(SecretContent& out, const model::SecretTemplate& tmpl, std::string_view at,
                                 const SecretMap& values, const TemplateSources& config_maps);

// ESO's ApplyTemplate: the provider data (without a template, or with
// mergePolicy Merge, or when no data template exists), then
// apply_secret_template over the provider data; a failure is "could not
// update secret", the event "could not apply template: " + the error. With
// creationPolicy None nothing is rendered (ESO's mutation never runs): the
// provider data as it is.
Step<SecretContent> secret_content_of(const model::ExternalSecret& es, SecretMap provider_data,
                                      const TemplateSources& config_maps);

// What desired_secret decides.
struct Keep {  // no write; the status to set
  std::string_view reason = kReasonSynced;
  std::string message = "secret synced";
  bool ready = true;
};
struct Delete {  // delete the Secret (uid precondition), then Keep{SecretDeleted}
  std::string uid;
};
struct Write {  // create or update with this body (locked memory)
  boost::json::value body;
  bool create = false;
};
using Action = std::variant<Keep, Delete, Write>;

// The Secret `data` calls for, given whether any remote key was missing and
// the existing Secret (nullptr: none): creationPolicy, deletionPolicy, owner
// and immutability checks, the ESO metadata, and no write when up to date.
Step<Action> desired_secret(const model::ExternalSecret& es, SecretContent content, bool any_missing,
                            const boost::json::value* existing);

// Delete{uid of `existing`} when the ExternalSecret is its controller
// (creationPolicy Owner), else nullopt.
std::optional<Delete> owned_secret(const model::ExternalSecret& es, const boost::json::value& existing);

}  // namespace rootseal::sync::reconcile
