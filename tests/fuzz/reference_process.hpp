// Runs a reference implementation (a Go program of tests/fuzz/*_ref) once
// over many requests: one request per line on its standard input (through a
// scratch file), one answer per line on its standard output.
#pragma once

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

namespace rootseal::fuzz {

// The answers, one per request; nullopt (after saying why on stderr) when
// the reference fails or answers a different number of lines.
inline std::optional<std::vector<std::string>> run_reference(const std::string& ref,
                                                             const std::vector<std::string>& requests) {
  char in_path[] = "/tmp/rootseal-reference-XXXXXX";
  const int fd = ::mkstemp(in_path);
  if (fd < 0) return std::nullopt;
  ::close(fd);
  {
    std::ofstream req(in_path, std::ios::binary);
    for (const auto& r : requests) req << r << "\n";
  }
  const std::string cmd = "'" + ref + "' < " + in_path;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::vector<std::string> answers;
  std::string line;
  for (int ch; p != nullptr && (ch = std::fgetc(p)) != EOF;) {
    if (ch != '\n') {
      line.push_back(static_cast<char>(ch));
      continue;
    }
    answers.push_back(std::move(line));
    line.clear();
  }
  const int status = p != nullptr ? ::pclose(p) : -1;
  ::unlink(in_path);
  if (status != 0 || answers.size() != requests.size()) {
    std::cerr << ref << ": the reference failed (status " << status << ", " << answers.size() << " of "
              << requests.size() << " answers)\n";
    return std::nullopt;
  }
  return answers;
}

}  // namespace rootseal::fuzz
