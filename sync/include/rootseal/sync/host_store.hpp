// rootseal::sync — what a host store's settings are made of.
//
// A host store (`sync.stores.<name>` in rootseald.yaml, docs/sync.md) lends
// its credentials and endpoints to the SecretStores annotated
// sync.rootseal.io/credentials: <name>. Each provider declares its own
// settings next to it (rootseal/sync/providers/<provider>.hpp) as a struct
// with a `kind`, a table of options and a check between options; the
// daemon's configuration parser reads every kind through that table, so a
// new provider adds no parsing code of its own there.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

namespace rootseal::sync {

// Where a credential is read from: exactly one of the two.
struct CredentialRef {
  std::filesystem::path file;  // mode 0600/0400, owned by the service user
  std::string credential;      // systemd credential name ($CREDENTIALS_DIRECTORY/<name>)
  [[nodiscard]] bool set() const noexcept { return !file.empty() || !credential.empty(); }
};

// One option of a provider's host settings H: its name in the configuration
// and the member it is read into — a string, or a credential (written only
// as {file: PATH} or {credential: NAME}, never as a value).
template <class H>
struct HostOption {
  std::string_view name;
  std::variant<std::string H::*, CredentialRef H::*> field;
  bool url = false;       // an http:// or https:// URL (refused without echoing it)
  bool required = false;  // "<where>.<name>: required for <kind>"
};

}  // namespace rootseal::sync
