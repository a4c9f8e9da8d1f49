#include "admin_commands.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "admin_client.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "util.hpp"

namespace rootseal::cli {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

struct AdminCommands {
  // Shared by every admin command.
  std::string socket;
  std::string config;
  bool json_out = false;
  int timeout_s = 120;

  CLI::App* status = nullptr;
  CLI::App* unseal = nullptr;
  int unseal_pin_fd = -1;

  CLI::App* token = nullptr;
  CLI::App* token_create = nullptr;
  std::vector<std::string> policies;
  std::string ttl;
  bool renewable = false;
  std::string display_name;
  CLI::App* token_list = nullptr;
  CLI::App* token_lookup = nullptr;
  CLI::App* token_revoke = nullptr;
  std::string accessor;

  CLI::App* tpm = nullptr;
  CLI::App* seal_pin = nullptr;
  int seal_pin_fd = -1;
  std::string pcrs;
  std::string out_file;
  CLI::App* reseal = nullptr;
  std::string target;

  CLI::App* kms = nullptr;
  CLI::App* kms_rotate = nullptr;

  CLI::App* keyring = nullptr;
  CLI::App* keyring_rotate = nullptr;
};

namespace {

void add_socket_options(CLI::App* cmd, AdminCommands& c, bool json_flag = true) {
  cmd->add_option("--socket", c.socket,
                  "rootseald's admin socket (default: admin.socket of --config, "
                  "$ROOTSEAL_ADMIN_SOCKET, /run/rootseal/admin.sock)");
  cmd->add_option("--config", c.config, "rootseald's configuration file, to find admin.socket");
  cmd->add_option("--timeout", c.timeout_s, "seconds to wait for rootseald's answer")->capture_default_str();
  if (json_flag) cmd->add_flag("--json", c.json_out, "print the answer's data as JSON");
}

// "90s", "15m", "1h", "7d", or a bare number of seconds.
kms::Result<std::int64_t> parse_ttl(const std::string& s) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || v < 0) return fail(Errc::invalid_argument, "--ttl: e.g. 90s, 15m, 24h, 30d");
  const std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
  std::int64_t mul = 0;
  if (unit.empty() || unit == "s")
    mul = 1;
  else if (unit == "m")
    mul = 60;
  else if (unit == "h")
    mul = 3600;
  else if (unit == "d")
    mul = 86400;
  else
    return fail(Errc::invalid_argument, "--ttl: e.g. 90s, 15m, 24h, 30d");
  if (v > (std::int64_t{10} * 365 * 86400) / mul) return fail(Errc::invalid_argument, "--ttl: at most 10 years");
  return v * mul;
}

// "7", "0,7", "none" (no PCRs: bound to this TPM only).
kms::Result<std::vector<std::uint32_t>> parse_pcr_list(const std::string& s) {
  std::vector<std::uint32_t> out;
  if (s == "none") return out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const auto comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc{} || end != item.data() + item.size() || v > 23 || v == 16 || v == 23) {
      return fail(Errc::invalid_argument, "--pcrs: PCR indices 0..23 (not 16 or 23) separated by commas, or none");
    }
    if (std::find(out.begin(), out.end(), v) != out.end()) {
      return fail(Errc::invalid_argument, "--pcrs: PCR " + std::to_string(v) + " is listed twice");
    }
    out.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string pcr_text(const std::vector<std::uint32_t>& pcrs) {
  std::string out;
  for (const auto p : pcrs) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "none" : out;
}

std::string str(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return {};
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_int64()) return std::to_string(v->as_int64());
  if (v->is_uint64()) return std::to_string(v->as_uint64());
  if (v->is_bool()) return v->as_bool() ? "true" : "false";
  return {};
}

std::int64_t num(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_int64() ? v->as_int64() : 0;
}

std::string utc(std::int64_t t) {
  if (t == 0) return "never";
  return utc_text(static_cast<std::time_t>(t));
}

std::string policies_text(const json::object& o) {
  std::string out;
  if (const auto* p = o.if_contains("policies"); p != nullptr && p->is_array()) {
    for (const auto& e : p->as_array()) {
      if (e.is_string()) out += (out.empty() ? "" : ",") + std::string(e.as_string());
    }
  }
  return out;
}

kms::SecureBytes request_of(const json::object& req) {
  return kms::SecureBytes::copy_of(std::string_view(json::serialize(req)));  // no secret in these requests
}

struct Call {
  std::unique_ptr<AdminAnswer> answer;
  const json::object* data = nullptr;
};

kms::Result<Call> call(const AdminCommands& c, const kms::SecureBytes& request) {
  std::filesystem::path socket;
  ROOTSEAL_TRY_ASSIGN(socket, admin_socket_path(c.socket, c.config));
  Call out;
  ROOTSEAL_TRY_ASSIGN(out.answer, admin_call(socket, request, std::chrono::seconds(std::max(1, c.timeout_s))));
  auto data = out.answer->data();
  if (!data) return std::unexpected(data.error());
  out.data = *data;
  return out;
}

int failed(Console& con, const kms::Error& e) {
  con.err("rootseal: error: " + e.message + "\n");
  return 1;
}

void print_token(Console& con, const json::object& t) {
  const auto ttl = num(t, "ttl");
  con.out("accessor      " + str(t, "accessor") + "\n");
  con.out("display_name  " + str(t, "display_name") + "\n");
  con.out("policies      " + policies_text(t) + "\n");
  con.out("source        " + str(t, "source") + "\n");
  con.out("created       " + utc(num(t, "creation_time")) + "\n");
  con.out("ttl           " + (ttl == 0 ? std::string("none") : std::to_string(ttl) + "s") + "\n");
  con.out("expires       " + utc(num(t, "expire_time")) + "\n");
  con.out("renewable     " + str(t, "renewable") + "\n");
}

// The PIN: --pin-fd N, else the terminal with echo off, else standard input.
kms::Result<kms::SecureBytes> read_pin(int fd, std::string_view prompt) {
  kms::SecureBytes pin;
  if (fd >= 0) {
    ROOTSEAL_TRY_ASSIGN(pin, read_secret_fd(fd));
    ::close(fd);
  } else if (::isatty(STDIN_FILENO) == 1) {
    ROOTSEAL_TRY_ASSIGN(pin, prompt_secret_tty(prompt));
  } else {
    ROOTSEAL_TRY_ASSIGN(pin, read_secret_fd(STDIN_FILENO));
  }
  if (pin.size() > tpm::kMaxSealedSecret) return fail(Errc::invalid_argument, "the PIN is longer than 128 bytes");
  return pin;
}

int run_status(const AdminCommands& c, Console& con) {
  auto r = call(c, request_of(json::object{{"op", "status"}}));
  if (!r) return failed(con, r.error());
  const auto& d = *r->data;
  const bool sealed = d.at("sealed").is_bool() && d.at("sealed").as_bool();
  if (c.json_out) {
    write_json(STDOUT_FILENO, d);
  } else {
    con.out(std::string("sealed        ") + (sealed ? "true" : "false") + "\n");
    if (sealed) con.out("reason        " + str(d, "sealed_reason") + "\n");
    con.out("root          " + str(d, "type") + "\n");
    con.out(std::string(sealed ? "sealed since  " : "unsealed since ") + utc(num(d, "since_unix")) + "\n");
    con.out("unseals       " + str(d, "unseal_count") + "\n");
    if (!str(d, "root_key_check_value").empty()) con.out("root kcv      " + str(d, "root_key_check_value") + "\n");
    if (const auto* kk = d.if_contains("keyring_key"); kk != nullptr && kk->is_object()) {
      const auto& o = kk->as_object();
      std::string line = "keyring key   " + str(o, "id") + " (kcv " + str(o, "kcv") + ")";
      if (num(o, "pending_versions") > 0) line += ", " + str(o, "pending_versions") + " versions not yet under it";
      con.out(line + "\n");
    }
    if (const auto* s = d.if_contains("pin_sources"); s != nullptr && s->is_array()) {
      std::string list;
      for (const auto& e : s->as_array()) {
        if (e.is_string()) list += (list.empty() ? "" : ", ") + std::string(e.as_string());
      }
      con.out("pin sources   " + list + "\n");
    }
    if (num(d, "unseal_retry_after_ms") > 0) {
      con.out("next unseal   in " + std::to_string((num(d, "unseal_retry_after_ms") + 999) / 1000) + "s\n");
    }
    if (const auto* lr = d.if_contains("last_reload");
        lr != nullptr && lr->is_object() && num(lr->as_object(), "unix") > 0) {
      const auto& o = lr->as_object();
      const bool ok = o.at("ok").is_bool() && o.at("ok").as_bool();
      con.out("last reload   " + utc(num(o, "unix")) + (ok ? " applied" : " refused: " + str(o, "error")) + "\n");
    }
  }
  return sealed ? 2 : 0;
}

int run_unseal(AdminCommands& c, Console& con) {
  auto pin = read_pin(c.unseal_pin_fd, "HSM user PIN: ");
  c.unseal_pin_fd = -1;
  if (!pin) return failed(con, pin.error());
  // {"op":"unseal","pin":"<base64>"}, assembled in locked memory.
  const auto b64 = kms::base64_encode_secure(pin->span());
  pin->clear();
  constexpr std::string_view head = R"({"op":"unseal","pin":")";
  constexpr std::string_view tail = R"("})";
  kms::SecureBytes request(head.size() + b64.size() + tail.size());
  std::memcpy(request.data(), head.data(), head.size());
  std::memcpy(request.data() + head.size(), b64.data(), b64.size());
  std::memcpy(request.data() + head.size() + b64.size(), tail.data(), tail.size());
  auto r = call(c, request);
  if (!r) {
    con.err("rootseal: " + r.error().message + "\n");
    return 1;
  }
  if (c.json_out)
    write_json(STDOUT_FILENO, *r->data);
  else
    con.out("unsealed" +
            std::string(str(*r->data, "message") == "already unsealed" ? " (already; the PIN was not used)" : "") +
            "\n");
  return 0;
}

int run_token(AdminCommands& c, Console& con) {
  if (*c.token_create) {
    json::object req{{"op", "token.create"}, {"renewable", c.renewable}};
    json::array policies;
    for (const auto& p : c.policies) policies.emplace_back(p);
    req["policies"] = std::move(policies);
    if (!c.ttl.empty()) {
      auto ttl = parse_ttl(c.ttl);
      if (!ttl) return failed(con, ttl.error());
      req["ttl_s"] = *ttl;
    }
    if (!c.display_name.empty()) req["display_name"] = c.display_name;
    auto r = call(c, request_of(req));
    if (!r) return failed(con, r.error());
    const auto& d = *r->data;
    const auto* token = d.if_contains("token");
    if (token == nullptr || !token->is_string()) return failed(con, {Errc::internal, "no token in the answer"});
    if (c.json_out) {
      write_json(STDOUT_FILENO, d);
      return 0;
    }
    const auto t = token->as_string();
    con.out("token         ");
    con.secret_out(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(t.data()), t.size()));
    con.out("\n");
    print_token(con, d);
    con.err("The token is shown once and is not stored anywhere (rootseald keeps its SHA-256 only).\n");
    return 0;
  }
  if (*c.token_list) {
    auto r = call(c, request_of(json::object{{"op", "token.list"}}));
    if (!r) return failed(con, r.error());
    const auto* list = r->data->if_contains("tokens");
    if (c.json_out) {
      write_json(STDOUT_FILENO, *r->data);
      return 0;
    }
    con.out("ACCESSOR                  SOURCE    DISPLAY NAME      POLICIES            EXPIRES\n");
    if (list != nullptr && list->is_array()) {
      for (const auto& e : list->as_array()) {
        if (!e.is_object()) continue;
        const auto& t = e.as_object();
        auto pad = [](std::string s, std::size_t n) {
          if (s.size() < n) s.append(n - s.size(), ' ');
          return s + " ";
        };
        con.out(pad(str(t, "accessor"), 25) + pad(str(t, "source"), 9) + pad(str(t, "display_name"), 17) +
                pad(policies_text(t), 19) + utc(num(t, "expire_time")) + "\n");
      }
    }
    return 0;
  }
  const bool revoke = c.token_revoke->parsed();
  auto r =
      call(c, request_of(json::object{{"op", revoke ? "token.revoke" : "token.lookup"}, {"accessor", c.accessor}}));
  if (!r) return failed(con, r.error());
  if (c.json_out) {
    write_json(STDOUT_FILENO, *r->data);
    return 0;
  }
  if (revoke) {
    con.out("revoked " + str(*r->data, "accessor") + " (" + str(*r->data, "display_name") + ")\n");
    return 0;
  }
  print_token(con, *r->data);
  return 0;
}

// Reads the TPM auth value file as rootseald does (trailing newlines
// dropped), refusing a file that group or others can read.
kms::Result<std::optional<kms::SecureBytes>> read_auth_value(const std::filesystem::path& path) {
  if (path.empty()) return std::optional<kms::SecureBytes>();
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return fail(Errc::invalid_argument, "TPM auth value file " + path.string() + ": missing");
  if ((st.st_mode & 0077) != 0) {
    return fail(Errc::invalid_argument, "TPM auth value file " + path.string() + ": readable by group or others");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(Errc::invalid_argument, "TPM auth value file " + path.string() + ": cannot open");
  auto value = read_secret_fd(fd);
  ::close(fd);
  if (!value)
    return fail(Errc::invalid_argument, "TPM auth value file " + path.string() + ": " + value.error().message);
  return std::optional<kms::SecureBytes>(std::move(*value));
}

int run_seal_pin(AdminCommands& c, Console& con) {
  const std::string config_path = c.config.empty() ? "/etc/rootseal/rootseald.yaml" : c.config;
  auto cfg = daemon::load_config(config_path);
  if (!cfg) return failed(con, cfg.error());
  tpm::SealPolicy policy;
  policy.pcrs = cfg->tpm.pcrs;
  if (!c.pcrs.empty()) {
    auto p = parse_pcr_list(c.pcrs);
    if (!p) return failed(con, p.error());
    policy.pcrs = *p;
  }
  policy.primary_handle = cfg->tpm.persistent_handle;
  policy.primary_alg = cfg->tpm.primary_rsa ? tpm::PrimaryAlg::rsa2048 : tpm::PrimaryAlg::ecc_p256;
  auto auth = read_auth_value(cfg->tpm.auth_value_file);
  if (!auth) return failed(con, auth.error());
  if (auto& value = *auth; value.has_value()) policy.auth_value = std::move(*value);
  const std::filesystem::path out = c.out_file.empty() ? cfg->pin.tpm_sealed_file : std::filesystem::path(c.out_file);

  auto pin = read_pin(c.seal_pin_fd, "HSM user PIN to seal to the TPM: ");
  c.seal_pin_fd = -1;
  if (!pin) return failed(con, pin.error());
  // Before any thread exists (the CLI is single-threaded): setenv is safe here.
  ::setenv("TSS2_LOG", "all+none", /*overwrite=*/0);  // NOLINT(concurrency-mt-unsafe)
  // Sealed, unsealed once and compared, then renamed over the old file.
  if (auto r = tpm::seal_secret_to_file(cfg->tpm.tcti, policy, *pin, out); !r) return failed(con, r.error());
  pin->clear();
  // Run as root for a daemon running as its own user: hand the file to the
  // owner of its folder (the state folder belongs to the service user).
  struct stat dir{};
  if (::geteuid() == 0 && ::stat(out.parent_path().c_str(), &dir) == 0 && dir.st_uid != 0) {
    if (::chown(out.c_str(), dir.st_uid, dir.st_gid) != 0) {
      return failed(con, {Errc::storage_failure, "cannot hand " + out.string() + " to the owner of its folder"});
    }
  }
  con.out("sealed the HSM PIN to " + out.string() + " (tcti " + cfg->tpm.tcti + ", sha256 PCRs " +
          pcr_text(policy.pcrs) + (policy.auth_value ? ", auth value" : "") + ")\n");
  if (std::find(cfg->pin.sources.begin(), cfg->pin.sources.end(), daemon::PinSourceKind::tpm) ==
      cfg->pin.sources.end()) {
    con.err("rootseal: note: pin.sources of " + config_path + " does not list tpm; rootseald will not read it\n");
  }
  return 0;
}

int run_reseal(const AdminCommands& c, Console& con) {
  json::object req{{"op", "tpm.reseal"}};
  if (!c.target.empty()) req["target"] = c.target;
  if (!c.pcrs.empty()) {
    auto p = parse_pcr_list(c.pcrs);
    if (!p) return failed(con, p.error());
    json::array a;
    for (const auto v : *p) a.emplace_back(v);
    req["pcrs"] = std::move(a);
  }
  auto r = call(c, request_of(req));
  if (!r) return failed(con, r.error());
  if (c.json_out) {
    write_json(STDOUT_FILENO, *r->data);
    return 0;
  }
  con.out("resealed the " + std::string(str(*r->data, "target") == "root" ? "root key" : "HSM PIN") + " to " +
          str(*r->data, "file") + " under the current values of sha256 PCRs " + str(*r->data, "pcrs") + "\n");
  return 0;
}

int run_kms_rotate(const AdminCommands& c, Console& con) {
  auto r = call(c, request_of(json::object{{"op", "kms.rotate"}}));
  if (!r) return failed(con, r.error());
  if (c.json_out) {
    write_json(STDOUT_FILENO, *r->data);
    return 0;
  }
  con.out("rotated " + str(*r->data, "key") + " to version " + str(*r->data, "version") + "; key_id " +
          str(*r->data, "key_id") +
          "\nkube-apiserver sees the new key_id at its next Status call; then rewrite the Secrets "
          "(docs/kms-plugin.md: key rotation)\n");
  return 0;
}

int run_keyring_rotate(const AdminCommands& c, Console& con) {
  auto r = call(c, request_of(json::object{{"op", "keyring.rotate-key"}}));
  if (!r) return failed(con, r.error());
  if (c.json_out) {
    write_json(STDOUT_FILENO, *r->data);
    return 0;
  }
  const auto& d = *r->data;
  con.out("rotated the keyring key: keyring key " + str(d, "id") + " (kcv " + str(d, "kcv") +
          ") now wraps every key version");
  if (num(d, "pending_versions") > 0) {
    con.out("; " + str(d, "pending_versions") + " versions not yet moved (" + str(d, "settle_error") +
            "): the next unseal or rotate-key moves them");
  }
  con.out("\n");
  return 0;
}

}  // namespace

std::unique_ptr<AdminCommands, void (*)(AdminCommands*)> add_admin_commands(CLI::App& app) {
  std::unique_ptr<AdminCommands, void (*)(AdminCommands*)> owned(new AdminCommands, [](AdminCommands* p) { delete p; });
  AdminCommands& c = *owned;

  c.status = app.add_subcommand("status", "seal status of the running rootseald (exit 2 when sealed)");
  add_socket_options(c.status, c);

  c.unseal = app.add_subcommand("unseal", "type the HSM PIN into rootseald (the typed PIN source)");
  add_socket_options(c.unseal, c);
  c.unseal->add_option("--pin-fd", c.unseal_pin_fd,
                       "read the PIN from this file descriptor (default: the terminal with echo off, or standard "
                       "input when it is not a terminal)");

  c.token = app.add_subcommand("token", "tokens of rootseald's HTTP API");
  c.token->require_subcommand(1);
  c.token_create = c.token->add_subcommand("create", "create a token; it is printed once");
  add_socket_options(c.token_create, c);
  c.token_create->add_option("--policy", c.policies, "a policy of the configuration (repeatable)")->required();
  c.token_create->add_option("--ttl", c.ttl, "time to live: 90s, 15m, 24h, 30d (default: no expiry)");
  c.token_create->add_flag("--renewable", c.renewable, "auth/token/renew-self extends it by its ttl");
  c.token_create->add_option("--display-name", c.display_name, "a name for logs and the audit log");
  c.token_list = c.token->add_subcommand("list", "accessors, policies and expiry of every live token");
  add_socket_options(c.token_list, c);
  c.token_lookup = c.token->add_subcommand("lookup", "one token, by accessor");
  add_socket_options(c.token_lookup, c);
  c.token_lookup->add_option("accessor", c.accessor, "the token's accessor")->required();
  c.token_revoke = c.token->add_subcommand("revoke", "revoke a created token, by accessor (effective at once)");
  add_socket_options(c.token_revoke, c);
  c.token_revoke->add_option("accessor", c.accessor, "the token's accessor")->required();

  c.tpm = app.add_subcommand("tpm", "TPM sealing (docs/tpm.md)");
  c.tpm->require_subcommand(1);
  c.seal_pin = c.tpm->add_subcommand("seal-pin",
                                     "seal the HSM user PIN to the TPM into pin.tpm_sealed_file "
                                     "(works on the TPM directly; rootseald need not run)");
  c.seal_pin->add_option("--config", c.config, "rootseald's configuration (tpm: and pin: sections)");
  c.seal_pin->add_option("--pin-fd", c.seal_pin_fd, "read the PIN from this file descriptor");
  c.seal_pin->add_option("--pcrs", c.pcrs, "sha256 PCRs instead of tpm.pcrs, e.g. 0,7 or none");
  c.seal_pin->add_option("--out", c.out_file, "write here instead of pin.tpm_sealed_file");
  c.reseal = c.tpm->add_subcommand("reseal",
                                   "re-seal what rootseald holds unsealed (root key or HSM PIN) under "
                                   "the current PCR values, over the admin socket");
  add_socket_options(c.reseal, c);
  c.reseal
      ->add_option("--target", c.target,
                   "root (the TPM-sealed root key) or pin (the TPM-sealed HSM PIN); "
                   "default: root with root_of_trust: tpm, else pin")
      ->check(CLI::IsMember({"root", "pin"}));
  c.reseal->add_option("--pcrs", c.pcrs, "sha256 PCRs instead of tpm.pcrs, e.g. 0,7 or none");

  c.kms = app.add_subcommand("kms", "the Kubernetes KMS v2 plugin (docs/kms-plugin.md)");
  c.kms->require_subcommand(1);
  c.kms_rotate = c.kms->add_subcommand("rotate",
                                       "rotate the plugin's key over the admin socket: a new key_id; "
                                       "existing seeds keep decrypting");
  add_socket_options(c.kms_rotate, c);

  c.keyring = app.add_subcommand("keyring", "the running rootseald's keyring (docs/hsm.md: the keyring key)");
  c.keyring->require_subcommand(1);
  c.keyring_rotate = c.keyring->add_subcommand(
      "rotate-key",
      "a new keyring key (one root operation), every key version rewrapped under it in software, the old one "
      "retired; ciphertexts are unchanged");
  add_socket_options(c.keyring_rotate, c);
  return owned;
}

std::optional<int> run_admin_commands(AdminCommands& c, Console& con) {
  if (*c.status) return run_status(c, con);
  if (*c.unseal) return run_unseal(c, con);
  if (*c.token) return run_token(c, con);
  if (*c.seal_pin) return run_seal_pin(c, con);
  if (*c.reseal) return run_reseal(c, con);
  if (*c.kms_rotate) return run_kms_rotate(c, con);
  if (*c.keyring_rotate) return run_keyring_rotate(c, con);
  return std::nullopt;
}

}  // namespace rootseal::cli
