// rootseal::kms — error values.
//
// Errors a caller must handle are values: Result<T> = std::expected<T, Error>.
// An Error carries a stable code (for programs, metrics and the one place that
// maps codes to HTTP status) and a message that is safe to show to a client:
// it never contains key material, plaintext, PINs or tokens.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace rootseal::kms {

enum class Errc {
  // The caller's input is wrong.
  invalid_argument,      // a bad field value (bits, key type, version, name ...)
  malformed_ciphertext,  // not "vault:v<N>:<base64>" or the body is too short
  bad_base64,            // a field that must be standard base64 is not
  decryption_failed,     // authentication tag mismatch: wrong key, AAD, context or tampering
  version_disallowed,    // key_version / ciphertext version outside the key's policy window
  // The named thing.
  not_found,  // no such key (or key version)
  already_exists,
  conflict,              // a concurrent change won (e.g. two rotations of one key)
  deletion_not_allowed,  // delete of a key whose deletion_allowed is false
  // The service.
  sealed,       // the root of trust is unavailable; nothing can be decrypted
  unavailable,  // the HSM/TPM is reachable but failed transiently (device removed ...)
  permission_denied,
  storage_failure,  // the state store could not read or commit
  compacted,        // a read or watch asked for a revision the store has compacted away (etcd): reload in full
  crypto_failure,   // a cryptographic library call failed unexpectedly
  internal,         // a broken invariant; a bug
};

// A stable, lower_snake_case name for the code (for logs, metrics, JSON).
std::string_view to_string(Errc code) noexcept;

// The description of an errno value ("No such file or directory"), from
// glibc's table: thread-safe, unlike strerror. Unknown values read
// "error <n>".
std::string errno_text(int err);

struct Error {
  Errc code;
  std::string message;  // safe to show; no secret values

  Error(Errc c, std::string msg) : code(c), message(std::move(msg)) {}
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(Errc code, std::string message) {
  return std::unexpected<Error>(std::in_place, code, std::move(message));
}

}  // namespace rootseal::kms

// Error flow vocabulary (s2n's RESULT_GUARD in std::expected form). Inside a
// function returning Result<U>:
//   ROOTSEAL_TRY(expr);              // return the error of a failed Result
//   ROOTSEAL_TRY_ASSIGN(lhs, expr);  // or move its value into an already declared lhs
//   ROOTSEAL_LET(name, expr);        // or declare `name` from its value in the enclosing scope
// Inside a coroutine whose result is a Result<U> (asio::awaitable<Result<U>>,
// sync's Task<U>), the same with co_return instead of return:
//   ROOTSEAL_CO_TRY(expr);  ROOTSEAL_CO_TRY_ASSIGN(lhs, expr);  ROOTSEAL_CO_LET(name, expr);
// `ret` below is the keyword `return` or `co_return`.
#define ROOTSEAL_DETAIL_TRY(ret, expr)                              \
  do {                                                              \
    auto rootseal_try_result_ = (expr);                             \
    if (!rootseal_try_result_) {                                    \
      ret std::unexpected(std::move(rootseal_try_result_).error()); \
    }                                                               \
  } while (false)

#define ROOTSEAL_DETAIL_TRY_ASSIGN(ret, lhs, expr)                  \
  do {                                                              \
    auto rootseal_try_result_ = (expr);                             \
    if (!rootseal_try_result_) {                                    \
      ret std::unexpected(std::move(rootseal_try_result_).error()); \
    }                                                               \
    (lhs) = std::move(*rootseal_try_result_);                       \
  } while (false)

// Not wrapped in do/while: `name` must outlive the macro.
#define ROOTSEAL_DETAIL_LET(ret, name, expr)                \
  auto name##_result_ = (expr);                             \
  if (!name##_result_) {                                    \
    ret std::unexpected(std::move(name##_result_).error()); \
  }                                                         \
  auto name = std::move(*name##_result_) /* NOLINT(bugprone-macro-parentheses): a declarator */

#define ROOTSEAL_TRY(expr) ROOTSEAL_DETAIL_TRY(return, expr)
#define ROOTSEAL_TRY_ASSIGN(lhs, expr) ROOTSEAL_DETAIL_TRY_ASSIGN(return, lhs, expr)
#define ROOTSEAL_LET(name, expr) ROOTSEAL_DETAIL_LET(return, name, expr)

#define ROOTSEAL_CO_TRY(expr) ROOTSEAL_DETAIL_TRY(co_return, expr)
#define ROOTSEAL_CO_TRY_ASSIGN(lhs, expr) ROOTSEAL_DETAIL_TRY_ASSIGN(co_return, lhs, expr)
#define ROOTSEAL_CO_LET(name, expr) ROOTSEAL_DETAIL_LET(co_return, name, expr)
