#include "cluster_commands.hpp"

#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <string>

#include "admin_client.hpp"

namespace rootseal::cli {

namespace json = boost::json;

struct ClusterCommands {
  CLI::App* status = nullptr;
  std::string socket;
  std::string config;
  int timeout_s = 30;
  bool json_out = false;
};

namespace {

// A field as text ("" when absent).
std::string text(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  if (v->is_bool()) return v->get_bool() ? "true" : "false";
  return {};
}

bool flag(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

const json::array* list(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_array() ? &v->get_array() : nullptr;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string member_line(const json::object& m) {
  std::string line = "  " + pad(text(m, "host_id"), 20);
  if (!text(m, "error").empty()) return line + "unreadable record: " + text(m, "error") + "\n";
  line += pad(flag(m, "sealed") ? "sealed" : "unsealed", 10) + pad("rootseal " + text(m, "version"), 16) +
          pad("kcv " + text(m, "root_kcv"), 12) + "revision " + text(m, "seen_revision") +
          (flag(m, "current") ? " (current)" : " (behind)") + "  since " + text(m, "started");
  if (flag(m, "sync")) line += "  sync";
  if (flag(m, "self")) line += "  <- this host";
  return line + "\n";
}

// The sync buckets (sync.sharded on etcd): who owns how many, and this
// host's share.
std::string sync_lines(const json::object& s) {
  std::string out = "sync buckets  " + text(s, "buckets");
  if (!text(s, "error").empty()) return out + ", owners unknown: " + text(s, "error") + "\n";
  out += ":";
  if (const auto* owners = s.if_contains("owners"); owners != nullptr && owners->is_object()) {
    bool first = true;
    for (const auto& kv : owners->get_object()) {
      out += std::string(first ? " " : ", ") + std::string(kv.key()) + " " +
             (kv.value().is_int64() ? std::to_string(kv.value().get_int64()) : std::string("?"));
      first = false;
    }
  }
  out += " (" + text(s, "unowned") + " without an owner)\n";
  const auto* owned = list(s, "owned");
  out += "              this host acts on " + std::to_string(owned != nullptr ? owned->size() : 0) +
         (flag(s, "acting") ? "" : " (not now: its member lease is not renewed)");
  if (owned != nullptr && !owned->empty()) {
    out += ":";
    for (const auto& b : *owned) out += " " + (b.is_int64() ? std::to_string(b.get_int64()) : std::string("?"));
  }
  return out + "\n";
}

std::string endpoint_line(const json::object& e) {
  std::string line = "  " + pad(text(e, "endpoint"), 28);
  if (!flag(e, "reachable")) return line + "unreachable: " + text(e, "error") + "\n";
  line += "member " + pad(text(e, "member_id"), 18) + pad(flag(e, "is_leader") ? "leader" : "follower", 10) + "term " +
          text(e, "raft_term") + "  revision " + text(e, "revision") + "  etcd " + text(e, "version");
  if (text(e, "leader_id").empty() || text(e, "leader_id") == "0") line += "  (knows no leader)";
  return line + "\n";
}

int run_status(const ClusterCommands& c, Console& con) {
  auto socket = admin_socket_path(c.socket, c.config);
  if (!socket) {
    con.err("rootseal: error: " + socket.error().message + "\n");
    return 1;
  }
  const auto request = kms::SecureBytes::copy_of(std::string_view(R"({"op":"cluster.status"})"));
  auto answer = admin_call(*socket, request, std::chrono::seconds(std::max(1, c.timeout_s)));
  if (!answer) {
    con.err("rootseal: error: " + answer.error().message + "\n");
    return 1;
  }
  auto data = (*answer)->data();
  if (!data) {
    con.err("rootseal: error: " + data.error().message + "\n");
    return 1;
  }
  const json::object& d = **data;
  const bool unread = !text(d, "error").empty();
  if (c.json_out) {
    write_json(STDOUT_FILENO, d);
    return unread ? 2 : 0;
  }
  const auto* self_v = d.if_contains("this_host");
  const json::object empty;
  const json::object& self = self_v != nullptr && self_v->is_object() ? self_v->get_object() : empty;
  if (!flag(d, "ha_enabled")) {
    con.out("storage sqlite: one host, no cluster (docs/ha.md)\n");
    con.out("this host     " + text(self, "host_id") + ", " + (flag(self, "sealed") ? "sealed" : "unsealed") +
            ", cluster id " + text(d, "cluster_id") + "\n");
    return 0;
  }
  con.out("cluster       " + text(d, "cluster_id") + " (etcd, prefix " + text(d, "prefix") + ")\n");
  if (!text(d, "cluster_root_kcv").empty()) con.out("root kcv      " + text(d, "cluster_root_kcv") + "\n");
  con.out("this host     " + text(self, "host_id") + ", " + (flag(self, "sealed") ? "sealed" : "unsealed") +
          ", keyring at revision " + text(self, "seen_revision") +
          (unread                  ? ""
           : flag(self, "current") ? " (current)"
                                   : " (behind)") +
          (unread || flag(self, "registered") ? "" : ", not registered yet") + "\n");
  if (unread) {
    con.out("members       unknown: " + text(d, "error") + "\n");
  } else if (const auto* members = list(d, "members")) {
    con.out("members       " + std::to_string(members->size()) + " (latest key change at revision " +
            text(d, "latest_key_revision") + ")\n");
    for (const auto& m : *members) {
      if (m.is_object()) con.out(member_line(m.get_object()));
    }
  }
  if (const auto* s = d.if_contains("sync"); s != nullptr && s->is_object()) con.out(sync_lines(s->get_object()));
  if (const auto* endpoints = list(d, "endpoints")) {
    std::size_t up = 0;
    for (const auto& e : *endpoints) up += e.is_object() && flag(e.get_object(), "reachable") ? 1U : 0U;
    con.out("etcd          " + std::to_string(up) + " of " + std::to_string(endpoints->size()) +
            " endpoints reachable\n");
    for (const auto& e : *endpoints) {
      if (e.is_object()) con.out(endpoint_line(e.get_object()));
    }
  }
  return unread ? 2 : 0;
}

}  // namespace

std::unique_ptr<ClusterCommands, void (*)(ClusterCommands*)> add_cluster_commands(CLI::App& app) {
  std::unique_ptr<ClusterCommands, void (*)(ClusterCommands*)> c(new ClusterCommands,
                                                                 [](ClusterCommands* p) { delete p; });
  CLI::App* cluster = app.add_subcommand("cluster", "hosts sharing one keyring on etcd (docs/ha.md)");
  cluster->require_subcommand(1);
  c->status = cluster->add_subcommand(
      "status",
      "the cluster's hosts (registered in etcd under a lease: host id, version, root kcv, keyring revision), the "
      "etcd endpoints' health and this host's view, from the running rootseald (exit 2 when etcd could not be "
      "read)");
  c->status->add_option("--socket", c->socket,
                        "rootseald's admin socket (default: admin.socket of --config, $ROOTSEAL_ADMIN_SOCKET, "
                        "/run/rootseal/admin.sock)");
  c->status->add_option("--config", c->config, "rootseald's configuration file, to find admin.socket");
  c->status->add_option("--timeout", c->timeout_s, "seconds to wait for rootseald's answer")->capture_default_str();
  c->status->add_flag("--json", c->json_out, "print the answer's data as JSON");
  return c;
}

std::optional<int> run_cluster_commands(ClusterCommands& c, Console& con) {
  if (!*c.status) return std::nullopt;
  return run_status(c, con);
}

}  // namespace rootseal::cli
