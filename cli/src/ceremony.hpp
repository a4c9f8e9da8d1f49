// rootseal::cli — the offline key ceremony (private to the CLI; the
// commands in commands.cpp parse arguments and call these).
//
//   init         root key = OS random XOR HSM random, split M-of-N (Shamir over
//                GF(2^8)), each share encrypted to one custodian, share files
//                written, the key imported into the token (non-extractable),
//                its check value as computed by the token compared, a
//                transcript appended. --no-backup: generated inside the token.
//   share decrypt  a custodian opens their share file with their private key
//                and gets the share as typeable lines.
//   restore      shares (files + custodian keys, or typed) checked against the
//                commitments of the transcript, combined, the check value
//                compared with the transcript, and only then imported.
//   reshare      M shares of a ceremony split again for a new custodian set
//                (same key, new ceremony id, new shares; no token).
//   verify       the token's key (by label) has the transcript's check value
//                and root-key attributes; optionally, the state store opens.
//   rotate-root  a new root key (same flow, new shares) under "<label>.next",
//                every wrapped key of the store rewrapped in one transaction,
//                then the old key retired and the new one moved to <label>.
//                Resumable (--resume) after a crash at any point.
//   audit        checks the transcript chain.
//
// Root mechanisms (docs/ceremony.md): aes-kwp / aes-gcm roots are one
// 32-byte AES key; an aes-cbc-pad-hmac root is an AES key and an HMAC key
// ("<label>-hmac"), made and split as one 64-byte secret and imported, checked
// and moved together; rsa-oaep roots are only generated in the token
// (--no-backup), never split.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "secret_io.hpp"

namespace rootseal::cli {

using PinProvider = std::function<kms::Result<kms::SecureBytes>()>;

struct TokenTarget {
  std::filesystem::path module;
  std::string token_label;
  std::string key_label = "rootseal-root";
  PinProvider pin;
};

struct People {
  std::string officer;
  std::vector<std::string> witnesses;
};

struct CustodianArg {
  std::string name;
  std::filesystem::path public_key;
};

struct Outcome {
  std::string ceremony_id;
  std::string kcv;
  std::string mechanism;             // of the root key (aes-kwp, aes-gcm, aes-cbc-pad-hmac); empty if not recorded
  std::string hmac_check;            // aes-cbc-pad-hmac: the HMAC key's check value
  std::filesystem::path transcript;  // the last entry written
  std::vector<std::filesystem::path> share_files;
  std::size_t rewrapped = 0;
  std::string key_label;  // where the verified / restored key is
};

struct InitOptions {
  TokenTarget token;
  std::vector<CustodianArg> custodians;
  unsigned threshold = 0;
  std::filesystem::path out_dir;
  std::filesystem::path transcript_dir;
  People people;
  bool no_backup = false;
  // auto: the strongest the token offers (aes-kwp, aes-gcm, aes-cbc-pad-hmac).
  // rsa-oaep is refused (docs/ceremony.md: RSA roots).
  hsm::RootMechanism mechanism = hsm::RootMechanism::automatic;
};
kms::Result<Outcome> ceremony_init(const InitOptions& options, Console& console);

struct DecryptOptions {
  std::filesystem::path share_file;
  std::filesystem::path private_key;
};
kms::Result<void> share_decrypt(const DecryptOptions& options, Console& console);

struct ShareSource {
  std::filesystem::path share_file;
  std::filesystem::path private_key;
};
struct RestoreOptions {
  TokenTarget token;
  std::filesystem::path transcript_dir;
  std::string ceremony_id;  // empty: the shares' own
  std::vector<ShareSource> files;
  LineSource* typed = nullptr;  // typed shares, if any
  bool dry_run = false;         // check and combine, import nothing
  People people;
};
kms::Result<Outcome> ceremony_restore(const RestoreOptions& options, Console& console);

// New shares of the same root key for a new custodian set (a custodian
// leaves): M shares of a ceremony are checked and combined as for restore,
// then split again under a new ceremony id. No token is involved. The old
// shares still reconstruct the key: rotate the root if they may be exposed.
struct ReshareOptions {
  std::filesystem::path transcript_dir;
  std::string ceremony_id;  // empty: the shares' own
  std::vector<ShareSource> files;
  LineSource* typed = nullptr;
  std::vector<CustodianArg> custodians;
  unsigned threshold = 0;
  std::filesystem::path out_dir;
  People people;
};
kms::Result<Outcome> ceremony_reshare(const ReshareOptions& options, Console& console);

struct VerifyOptions {
  TokenTarget token;
  std::filesystem::path transcript_dir;
  std::string ceremony_id;      // empty: the current root key of the transcript
  std::filesystem::path store;  // empty: do not open a state store
  People people;
};
kms::Result<Outcome> ceremony_verify(const VerifyOptions& options, Console& console);

enum class Retire { relabel, destroy };
struct RotateOptions {
  TokenTarget token;
  std::filesystem::path store;
  std::vector<CustodianArg> custodians;
  unsigned threshold = 0;
  std::filesystem::path out_dir;
  std::filesystem::path transcript_dir;
  People people;
  bool no_backup = false;
  bool resume = false;
  Retire retire = Retire::relabel;
  // The new root's mechanism; auto: the current root's (a rotation may move
  // between aes-kwp / aes-gcm and aes-cbc-pad-hmac).
  hsm::RootMechanism mechanism = hsm::RootMechanism::automatic;
};
kms::Result<Outcome> ceremony_rotate_root(const RotateOptions& options, Console& console);

struct AuditOptions {
  std::filesystem::path transcript_dir;
  std::string expect_head;
};
kms::Result<void> ceremony_audit(const AuditOptions& options, Console& console);

// The labels of a root rotation.
std::string next_label(std::string_view key_label);
std::string retired_label(std::string_view key_label, std::string_view kcv);

}  // namespace rootseal::cli
