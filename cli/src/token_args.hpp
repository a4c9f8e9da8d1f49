// rootseal::cli — private: the PKCS#11 token options every command that
// talks to the HSM takes (--module, --token, --key-label, --pin-fd).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "ceremony.hpp"

namespace rootseal::cli {

struct TokenArgs {
  std::string module;
  std::string token;
  std::string key_label = "rootseal-root";
  int pin_fd = -1;
};

// required=false: the command checks --module and --token itself (it has
// another root to offer).
void add_token_options(CLI::App* cmd, TokenArgs& t, bool required = true);
// The target; its PIN is read once (from --pin-fd, else typed on the terminal).
TokenTarget token_target(const TokenArgs& a);

}  // namespace rootseal::cli
