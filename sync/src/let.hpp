// rootseal::sync — ROOTSEAL_LET(name, expr): declares `name` from a Result's
// value in the enclosing scope, or returns its error (ROOTSEAL_TRY_ASSIGN
// needs an already declared lhs). Works in functions returning Result<U>; in
// coroutines returning Task<U> use ROOTSEAL_CO_LET.
#pragma once

#include <expected>
#include <utility>

#define ROOTSEAL_LET(name, expr)                                   \
  auto name##_result_ = (expr);                                    \
  if (!name##_result_) {                                           \
    return std::unexpected(std::move(name##_result_).error());     \
  }                                                                \
  auto name = std::move(*name##_result_)

#define ROOTSEAL_CO_LET(name, expr)                                \
  auto name##_result_ = (expr);                                    \
  if (!name##_result_) {                                           \
    co_return std::unexpected(std::move(name##_result_).error());  \
  }                                                                \
  auto name = std::move(*name##_result_)

#define ROOTSEAL_CO_TRY(expr)                                                 \
  do {                                                                        \
    auto rootseal_co_try_result_ = (expr);                                    \
    if (!rootseal_co_try_result_) {                                           \
      co_return std::unexpected(std::move(rootseal_co_try_result_).error()); \
    }                                                                         \
  } while (false)
