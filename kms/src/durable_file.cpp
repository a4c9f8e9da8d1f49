#include "rootseal/kms/durable_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace rootseal::kms {

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<void> write_file_durably(const std::filesystem::path& path, std::span<const std::uint8_t> data, unsigned mode,
                                bool exclusive) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string leaf = path.filename().string();
  leaf.insert(leaf.begin(), '.');  // (not "." + s: g++ 12 -Wrestrict false positive)
  leaf.append(".tmp-XXXXXX");
  const std::string tmpl = (dir / leaf).string();
  std::vector<char> tmp(tmpl.begin(), tmpl.end());
  tmp.push_back('\0');
  Fd f;
  f.fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (f.fd < 0)
    return fail(Errc::storage_failure, "cannot create a file in " + dir.string() + ": " + errno_text(errno));
  const auto undo = [&](const std::string& what) {
    const int e = errno;
    ::unlink(tmp.data());
    return fail(Errc::storage_failure, path.string() + ": " + what + ": " + errno_text(e));
  };
  if (::fchmod(f.fd, static_cast<mode_t>(mode)) != 0) return undo("fchmod");
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(f.fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return undo("write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) return undo("fsync");
  if (exclusive) {
    // link(2) fails if the name exists: no race with another writer.
    if (::link(tmp.data(), path.c_str()) != 0) {
      const int e = errno;
      ::unlink(tmp.data());
      if (e == EEXIST) return fail(Errc::already_exists, path.string() + " exists; refusing to overwrite it");
      return fail(Errc::storage_failure, path.string() + ": " + errno_text(e));
    }
    ::unlink(tmp.data());
  } else if (::rename(tmp.data(), path.c_str()) != 0) {
    return undo("rename");
  }
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd < 0 || ::fsync(d.fd) != 0)
    return fail(Errc::storage_failure, dir.string() + ": fsync: " + errno_text(errno));
  return {};
}

}  // namespace rootseal::kms
