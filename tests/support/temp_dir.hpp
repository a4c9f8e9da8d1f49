// A private temporary folder (mode 0700), removed with its contents.
#pragma once

#include <filesystem>
#include <string>

namespace rootseal::test {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "rootseal-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& leaf) const { return path_ / leaf; }

 private:
  std::filesystem::path path_;
};

}  // namespace rootseal::test
