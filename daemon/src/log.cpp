#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

namespace rootseal::daemon::log {
namespace {

bool g_json = false;
spdlog::level::level_enum g_level = spdlog::level::info;
std::shared_ptr<spdlog::logger> g_logger;

std::string_view level_name(Level l) {
  switch (l) {
    case Level::trace:
      return "trace";
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

void append_escaped(std::string& out, std::string_view s, bool json) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, json ? "\\u%04x" : "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (const char c : s) {
    if (c == ' ' || c == '=' || c == '"' || static_cast<unsigned char>(c) < 0x21) return true;
  }
  return false;
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

void init(std::string_view format, std::string_view level) {
  g_json = (format == "json");
  g_level = spdlog::level::from_str(std::string(level == "warn" ? "warning" : level));
  g_logger = spdlog::stderr_logger_mt("rootseal");
  g_logger->set_pattern("%v");  // the line is formatted here, fully
  g_logger->set_level(g_level);
  g_logger->flush_on(spdlog::level::trace);
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  write(level, message, std::span<const Field>(fields.begin(), fields.size()));
}

void write(Level level, std::string_view message, std::span<const Field> fields) {
  if (to_spd(level) < g_level) return;
  std::string line;
  line.reserve(128);
  if (g_json) {
    line += R"({"ts":")" + timestamp() + R"(","level":")";
    line += level_name(level);
    line += R"(","msg":")";
    append_escaped(line, message, true);
    line += '"';
    for (const auto& f : fields) {
      line += ",\"";
      append_escaped(line, f.key, true);
      line += "\":\"";
      append_escaped(line, f.value, true);
      line += '"';
    }
    line += '}';
  } else {
    line += "ts=" + timestamp() + " level=";
    line += level_name(level);
    line += " msg=\"";
    append_escaped(line, message, false);
    line += '"';
    for (const auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      if (needs_quotes(f.value)) {
        line += '"';
        append_escaped(line, f.value, false);
        line += '"';
      } else {
        line += f.value;
      }
    }
  }
  if (g_logger) {
    g_logger->log(to_spd(level), "{}", line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

}  // namespace rootseal::daemon::log
