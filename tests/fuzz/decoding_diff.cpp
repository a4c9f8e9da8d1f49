// decoding_diff: rootseal's decodingStrategy (sync::apply_decoding) against
// the reference, ESO's Decode on Go's encoding/base64 (decoding_ref/main.go).
//
//   decoding_diff <decoding_ref binary> <generated cases>
//
// Cases: every string of up to four characters over an alphabet of the
// characters that matter (both base64 alphabets' specials, '=', line ends, a
// space, a letter whose low bits are set or clear, one invalid byte), ESO's
// guide values, and a fixed-seed generated set: random bytes encoded with
// either alphabet, padded or not, then altered (a character inserted,
// removed or replaced, a line end or '=' added). Each case goes through
// Base64, Base64URL and Auto on both sides; the outcome (refused, or the
// exact bytes) must be the same. Differences are printed as hex (test data).
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "reference_process.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/sync/provider.hpp"

using namespace rootseal;

namespace {

std::string hex(std::string_view s) {
  return kms::hex_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

// One strategy's outcome in the reference's notation.
std::string outcome(sync::DecodingStrategy strategy, std::string_view in) {
  auto r = sync::apply_decoding(
      strategy, kms::SecureBytes::copy_of({reinterpret_cast<const std::uint8_t*>(in.data()), in.size()}));
  if (!r) return "E";
  if (r->empty()) return "-";
  return kms::hex_encode(r->span());
}

void all_short(std::vector<std::string>& out) {
  static constexpr std::string_view kAlphabet = "AQg+/-_=\n\r !";
  std::vector<std::string> level{""};
  out.emplace_back();
  for (int len = 1; len <= 4; ++len) {
    std::vector<std::string> next;
    for (const auto& s : level) {
      for (char c : kAlphabet) next.push_back(s + c);
    }
    out.insert(out.end(), next.begin(), next.end());
    level = std::move(next);
  }
}

std::string encoded(std::mt19937& rng, bool url, bool pad) {
  std::uniform_int_distribution<int> len(0, 40);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(len(rng)));
  for (auto& b : raw) b = static_cast<std::uint8_t>(byte(rng));
  std::string s = kms::base64_encode(raw);
  if (url) {
    for (auto& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  if (!pad) {
    while (!s.empty() && s.back() == '=') s.pop_back();
  }
  return s;
}

void generated(std::vector<std::string>& out, int n) {
  std::mt19937 rng(20261206);
  static constexpr std::string_view kNoise = "=\n\r -_+/A!";
  for (int i = 0; i < n; ++i) {
    std::string s = encoded(rng, rng() % 2 == 0, rng() % 3 != 0);
    const int edits = static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
      const char c = kNoise[rng() % kNoise.size()];
      switch (rng() % 3) {
        case 0:
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 1:
          if (at < s.size()) s.erase(at, 1);
          break;
        default:
          if (at < s.size()) s[at] = c;
          break;
      }
    }
    out.push_back(std::move(s));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: decoding_diff <decoding_ref binary> <generated cases>\n";
    return 2;
  }
  const std::string ref = argv[1];
  std::vector<std::string> cases;
  all_short(cases);
  for (const char* guide : {"Gustavo", "Fring", "aGFwcHkgc3RyZWV0", "R3VzdGF2bw==", "RnJpbmc="})
    cases.emplace_back(guide);
  generated(cases, std::stoi(argv[2]));

  std::vector<std::string> requests;
  requests.reserve(cases.size());
  for (const auto& c : cases) requests.push_back(hex(c));
  const auto reference = fuzz::run_reference(ref, requests);
  if (!reference) return 2;
  const std::vector<std::string>& answers = *reference;
  std::size_t failures = 0;
  std::size_t decoded = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string mine = outcome(sync::DecodingStrategy::base64, cases[i]) + " " +
                             outcome(sync::DecodingStrategy::base64url, cases[i]) + " " +
                             outcome(sync::DecodingStrategy::auto_detect, cases[i]);
    if (mine != answers[i]) {
      if (++failures <= 20) {
        std::cerr << "decoding_diff: input " << hex(cases[i]) << ": rootseal " << mine << ", Go " << answers[i] << "\n";
      }
    }
    if (answers[i].front() != 'E') ++decoded;
  }
  std::cout << "decoding_diff: " << cases.size() << " cases (" << decoded << " valid standard base64), " << failures
            << " differences\n";
  return failures == 0 ? 0 : 1;
}
