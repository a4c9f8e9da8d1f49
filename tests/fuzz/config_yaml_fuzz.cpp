// Fuzz target: the YAML files rootseald reads.
//
// Input: a first line naming the parser, then the YAML text:
//   rootseald    daemon::parse_config (rootseald.yaml, with its sync: section)
//   sync         daemon::parse_sync_config on the document (the sync: section)
//   kubeconfig   sync::kube::KubeConfig::from_yaml (kubectl's kubeconfig)
// Properties beyond "no crash, no sanitizer report, no exception escaping":
//  - a failure is invalid_argument with a message;
//  (Parsing each input twice to check determinism halved the rate and found
//  nothing in millions of runs: the parsers keep no state between calls.)
//  - kubeconfig: an error message does not depend on a credential of the
//    file (users[].user token, password, client-key-data of 6+ characters,
//    read with yaml-cpp directly): its text is in the message only if it
//    still is with another credential in its place.
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "kube/kube_client.hpp"
#include "rootseal/daemon/config.hpp"
#include "sync_config.hpp"

using namespace rootseal;

namespace {

template <class T>
std::string outcome(const kms::Result<T>& r) {
  if (r) return "ok";
  fuzz::require_clean_error(r.error(), {kms::Errc::invalid_argument}, "config error code");
  return r.error().message;
}

std::string parse_sync(std::string_view text) {
  YAML::Node node;
  try {
    node = YAML::Load(std::string(text));
  } catch (const YAML::Exception&) {
    return "not yaml";
  }
  return outcome(daemon::parse_sync_config(node));
}

std::vector<std::string> credentials(std::string_view text) {
  std::vector<std::string> out;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsMap() || !root["users"] || !root["users"].IsSequence()) return out;
    for (const auto& u : root["users"]) {
      if (!u.IsMap() || !u["user"] || !u["user"].IsMap()) continue;
      for (const char* k : {"token", "password", "client-key-data"}) {
        const YAML::Node v = u["user"][k];
        if (v && v.IsScalar() && v.Scalar().size() >= 6) out.push_back(v.Scalar());
      }
    }
  } catch (const YAML::Exception&) {
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_text(data, size);
  const std::string_view which = fuzz::next_line(in);
  if (which == "rootseald") {
    (void)outcome(daemon::parse_config(in));
  } else if (which == "sync") {
    (void)parse_sync(in);
  } else if (which == "kubeconfig") {
    const auto r = sync::kube::KubeConfig::from_yaml(in, "/nonexistent-fuzz-dir");
    (void)outcome(r);
    if (!r) {
      for (const auto& c : credentials(in)) {
        // Only a credential that is not also a name or path of the file's structure.
        if (in.find(c) != in.rfind(c) || r.error().message.find(c) == std::string::npos) continue;
        // Its text may be in the message for another reason (a word of the
        // message): then it stays there with another credential in its place.
        std::string other(in);
        other.replace(in.find(c), c.size(), std::string(c.size(), c.front() == 'Z' ? 'Y' : 'Z'));
        const auto r2 = sync::kube::KubeConfig::from_yaml(other, "/nonexistent-fuzz-dir");
        fuzz::require(!r2 && r2.error().message.find(c) != std::string::npos, "no credential in a kubeconfig error");
      }
    }
  }
  return 0;
}
