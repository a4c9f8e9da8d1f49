#include "hsm_commands.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <string>

#include "rootseal/hsm/token_probe.hpp"

namespace rootseal::cli {

struct HsmCommands {
  CLI::App* probe = nullptr;
  std::string module;
  std::string token;
  bool json = false;
};

namespace {

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
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
  return std::string("not offered (lacks ") + v.missing + ")" + (v.in_this_build ? "" : "; not supported by this build either");
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
  return boost::json::object{{"module", p.module.string()}, {"slot", p.slot},   {"token", std::move(token)},
                             {"mechanisms", std::move(mechs)}, {"root_mechanisms", std::move(roots)},
                             {"usable_root_mechanisms", std::move(usable)}};
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
      "probe", "print a token's information and mechanisms, and which root mechanisms rootseal can use on it "
               "(no PIN needed)");
  c->probe->add_option("--module", c->module, "the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)")
      ->required();
  c->probe->add_option("--token", c->token, "the token's label")->required();
  c->probe->add_flag("--json", c->json, "print JSON instead of text");
  return c;
}

std::optional<int> run_hsm_commands(HsmCommands& c, Console& con) {
  if (c.probe == nullptr || !*c.probe) return std::nullopt;
  auto p = hsm::probe_token(c.module, c.token);
  if (!p) {
    con.err("rootseal: hsm probe: " + p.error().message + "\n");
    return 1;
  }
  con.out(c.json ? boost::json::serialize(to_json(*p)) + "\n" : to_text(*p));
  return 0;
}

}  // namespace rootseal::cli
