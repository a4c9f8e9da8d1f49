#include "hsm_commands.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rootseal/hsm/token_admin.hpp"
#include "rootseal/hsm/token_probe.hpp"
#include "token_args.hpp"

namespace rootseal::cli {

struct HsmCommands {
  CLI::App* probe = nullptr;
  TokenArgs tok;  // --pin-fd optional: without it, nothing needs a login
  bool json = false;
};

namespace {

std::string hex(std::uint64_t v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string joined(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string padded(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string status_of(const hsm::RootMechanismVerdict& v) {
  if (v.usable()) return "usable";
  if (v.offered) return "offered by the token; not supported by this build of rootseal (issue 19)";
  return std::string("not offered (lacks ") + v.missing + ")" +
         (v.in_this_build ? "" : "; not supported by this build either");
}

boost::json::object to_json(const hsm::TokenProbe& p) {
  boost::json::object token{{"label", p.label},
                            {"manufacturer", p.manufacturer},
                            {"model", p.model},
                            {"serial", p.serial},
                            {"hardware_version", p.hardware_version},
                            {"firmware_version", p.firmware_version},
                            {"flags", hex(p.flags)},
                            {"flag_names", boost::json::value_from(p.flag_names)}};
  boost::json::array mechs;
  for (const auto& m : p.mechanisms) {
    mechs.push_back(boost::json::object{{"type", hex(m.type)},
                                        {"name", m.name},
                                        {"min_key_size", m.min_key_size},
                                        {"max_key_size", m.max_key_size},
                                        {"flags", hex(m.flags)},
                                        {"flag_names", boost::json::value_from(m.flag_names)}});
  }
  boost::json::array roots;
  boost::json::array usable;
  for (const auto& v : p.roots) {
    roots.push_back(boost::json::object{{"mechanism", v.name},
                                        {"needs", v.needs},
                                        {"offered_by_token", v.offered},
                                        {"supported_by_this_build", v.in_this_build},
                                        {"usable", v.usable()},
                                        {"missing", v.missing}});
    if (v.usable()) usable.push_back(boost::json::string(v.name));
  }
  return boost::json::object{{"module", p.module.string()},         {"slot", p.slot},
                             {"token", std::move(token)},           {"mechanisms", std::move(mechs)},
                             {"root_mechanisms", std::move(roots)}, {"usable_root_mechanisms", std::move(usable)}};
}

// The root key objects found with the user's login (--pin-fd): never a value.
boost::json::object keys_json(const std::string& label, const std::vector<hsm::KeyObject>& keys) {
  boost::json::array objects;
  for (const auto& k : keys) {
    objects.push_back(boost::json::object{{"kcv", k.kcv},
                                          {"id", k.id},
                                          {"aes", k.aes},
                                          {"value_len", k.value_len},
                                          {"token", k.token},
                                          {"private", k.is_private},
                                          {"sensitive", k.sensitive},
                                          {"extractable", k.extractable},
                                          {"wrap", k.wrap},
                                          {"unwrap", k.unwrap},
                                          {"encrypt", k.encrypt},
                                          {"decrypt", k.decrypt},
                                          {"valid_root_key", k.is_valid_root_key()}});
  }
  return boost::json::object{{"label", label}, {"objects", std::move(objects)}};
}

std::string keys_text(const std::string& label, const std::vector<hsm::KeyObject>& keys) {
  std::string out =
      "root key objects labelled '" + label + "' (logged in as the user): " + std::to_string(keys.size()) + "\n";
  for (const auto& k : keys) {
    std::vector<std::string> attrs;
    attrs.push_back(k.aes ? "AES-" + std::to_string(k.value_len * 8) : "not AES");
    for (const auto& [on, name] :
         {std::pair{k.token, "token"}, std::pair{k.is_private, "private"}, std::pair{k.sensitive, "sensitive"},
          std::pair{!k.extractable, "not extractable"}, std::pair{k.wrap, "wrap"}, std::pair{k.unwrap, "unwrap"},
          std::pair{k.encrypt, "encrypt"}, std::pair{k.decrypt, "decrypt"}}) {
      if (on) attrs.emplace_back(name);
    }
    out += "  check value " + (k.kcv.empty() ? std::string("(none)") : k.kcv) + ": " + joined(attrs) + "; " +
           (k.is_valid_root_key() ? "a valid root key" : "NOT a valid root key") + "\n";
  }
  return out;
}

std::string to_text(const hsm::TokenProbe& p) {
  std::string out = "PKCS#11 token '" + p.label + "' in " + p.module.string() + " (slot " + hex(p.slot) + ")\n";
  out += "  manufacturer:     " + p.manufacturer + "\n";
  out += "  model:            " + p.model + "\n";
  out += "  serial:           " + p.serial + "\n";
  out += "  hardware version: " + p.hardware_version + "\n";
  out += "  firmware version: " + p.firmware_version + "\n";
  out += "  flags:            " + hex(p.flags) + " (" + joined(p.flag_names) + ")\n";
  out += "mechanisms (" + std::to_string(p.mechanisms.size()) +
         "; key sizes as the token reports them: bytes for AES, bits for RSA, either for others):\n";
  for (const auto& m : p.mechanisms) {
    out += "  " + padded(m.name, 30) + " " + padded(hex(m.type), 10) + " key size " +
           padded(std::to_string(m.min_key_size) + ".." + std::to_string(m.max_key_size), 12) + " " +
           (m.flag_names.empty() ? std::string("(no flags)") : joined(m.flag_names)) + "\n";
  }
  out += "root mechanisms (pkcs11.mechanism, in the order auto prefers them):\n";
  std::vector<std::string> usable;
  for (const auto& v : p.roots) {
    out += "  " + padded(v.name, 17) + " " + status_of(v) + "\n";
    out += "  " + padded("", 17) + " needs " + v.needs + "\n";
    if (v.usable()) usable.push_back(v.name);
  }
  if (usable.empty()) {
    out += "rootseal cannot hold its root key in this token (this build supports aes-kwp and aes-gcm)\n";
  } else {
    out += "rootseal can hold its root key in this token with: " + joined(usable) + "\n";
  }
  return out;
}

}  // namespace

std::unique_ptr<HsmCommands, void (*)(HsmCommands*)> add_hsm_commands(CLI::App& app) {
  std::unique_ptr<HsmCommands, void (*)(HsmCommands*)> c(new HsmCommands, [](HsmCommands* p) { delete p; });
  CLI::App* hsm = app.add_subcommand("hsm", "inspect a PKCS#11 token (offline)");
  hsm->require_subcommand(1);
  c->probe = hsm->add_subcommand(
      "probe",
      "print a token's information and mechanisms, and which root mechanisms rootseal can use on it "
      "(no PIN needed)");
  c->probe->add_option("--module", c->tok.module, "the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)")
      ->required();
  c->probe->add_option("--token", c->tok.token, "the token's label")->required();
  c->probe->add_option("--pin-fd", c->tok.pin_fd,
                       "also log in with the user PIN read from this file descriptor and list the root key "
                       "objects (by --key-label); without it no PIN is needed");
  c->probe->add_option("--key-label", c->tok.key_label, "label of the root key objects to look for (with --pin-fd)")
      ->capture_default_str();
  c->probe->add_flag("--json", c->json, "print JSON instead of text");
  return c;
}

std::optional<int> run_hsm_commands(HsmCommands& c, Console& con) {
  if (c.probe == nullptr || !*c.probe) return std::nullopt;
  auto fail = [&](const kms::Error& e) {
    con.err("rootseal: hsm probe: " + e.message + "\n");
    return 1;
  };
  // With --pin-fd, log in first and keep the session while probing: both use
  // the process's one instance of the module. (Initializing a module again
  // after C_Finalize crashes opencryptoki 3.8's software token.)
  std::unique_ptr<hsm::TokenAdmin> admin;
  if (c.tok.pin_fd >= 0) {
    auto pin = token_target(c.tok).pin();
    if (!pin) return fail(pin.error());
    auto opened = hsm::TokenAdmin::open(c.tok.module, c.tok.token, *pin, /*inspect_only=*/true);
    pin->clear();
    if (!opened) return fail(opened.error());
    admin = std::move(*opened);
  }
  auto p = hsm::probe_token(c.tok.module, c.tok.token);
  if (!p) return fail(p.error());
  boost::json::object doc = c.json ? to_json(*p) : boost::json::object{};
  std::string text = c.json ? std::string() : to_text(*p);
  if (admin) {
    auto keys = admin->find_keys(c.tok.key_label);
    if (!keys) return fail(keys.error());
    if (c.json) {
      doc["root_keys"] = keys_json(c.tok.key_label, *keys);
    } else {
      text += keys_text(c.tok.key_label, *keys);
    }
  }
  con.out(c.json ? boost::json::serialize(doc) + "\n" : text);
  return 0;
}

}  // namespace rootseal::cli
