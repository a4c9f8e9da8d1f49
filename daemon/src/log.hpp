// Structured logs to stderr (logfmt or JSON lines), through spdlog.
// Callers pass fields as key/value pairs; values are escaped. Never pass a
// secret: there is no field type for SecureBytes, on purpose.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace rootseal::daemon::log {

enum class Level { trace, debug, info, warn, error };

struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <class N>
    requires std::is_arithmetic_v<N>
  Field(std::string_view k, N v)
      : key(k), value(std::is_same_v<N, bool> ? (v ? "true" : "false") : std::to_string(v)) {}
};

// format: "logfmt" or "json"; level: trace..error.
void init(std::string_view format, std::string_view level);
void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});
// The same with fields known only at run time.
void write(Level level, std::string_view message, std::span<const Field> fields);

inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }
inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::debug, m, f); }

}  // namespace rootseal::daemon::log
