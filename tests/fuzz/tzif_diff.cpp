// tzif_diff: rootseal's zone file reader and zone lookups (the date
// functions' port of Go's LoadLocationFromTZData, Location.lookup and tzset,
// sync/src/template/date_funcs.cpp) against Go's own time package
// (tzif_ref/main.go, Debian's Go 1.19).
//
//   tzif_diff <tzif_ref binary> <case folder> <zoneinfo folder>
//
// Cases: every file of the case folder (the fuzz_tzif corpus: real zone
// files, crafted ones and damaged variants) and every file under the
// zoneinfo folder (/usr/share/zoneinfo: some 900 zones, with posix/ and
// right/ (leap seconds), and its files that are not TZif: zone.tab,
// tzdata.zi, leapseconds...). Instants, all within the years 1 to 9999 (the
// range the date functions accept): a fixed list from year 1 to 9999; each
// transition rootseal read within that range, and the second before it;
// then from the last transition (or from 1900 for a zone without any) a
// walk along the periods rootseal's lookup gives, the footer's POSIX TZ
// rule past the table: each period's end and the second before it. Each
// answer is the zone name, the offset, the DST flag and Go's Format of the
// time in the zone with every zone element ("MST -07:00:00 Z0700 Z07").
// Rules:
//   1. both read the file: every answer is identical;
//   2. Go refuses it: rootseal refuses it too;
//   3. rootseal refuses, Go reads it: only when its transition times do
//      not ascend strictly (rootseal's one refusal beyond Go's, RFC 8536
//      section 3.2), which this test checks with its own reading of the
//      transition times (ascending() below); such cases are counted.
// Go's Location also caches, when it is loaded, the period of the present
// (from the footer's rule when the present lies past the table), and a
// later lookup inside that period takes it without the table: that differs
// from the table's answer only for a file whose last transition falls
// before the present within the present year, which no file here has
// (the zoneinfo files' tables run to 2037 or are empty); rootseal has no
// such cache.
// At least 400 files must be read by both sides (the test cannot pass by
// refusing), and the zoneinfo folder must hold at least 300 files.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reference_process.hpp"
#include "rootseal/kms/encoding.hpp"
#include "template/date_funcs.hpp"

namespace fs = std::filesystem;
using namespace rootseal;
using sync::tmpl::date::TzifForTests;

namespace {

constexpr std::int64_t kMinSec = -62135596800;  // 0001-01-01T00:00:00Z
constexpr std::int64_t kMaxSec = 253402300799;  // 9999-12-31T23:59:59Z
constexpr std::string_view kLayout = "2006-01-02T15:04:05 Mon 002 MST -07:00:00 Z0700 Z07";

std::string hex_or_dash(std::string_view s) {
  if (s.empty()) return "-";
  return kms::hex_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

std::string unhex(std::string_view h) {
  if (h == "-") return {};
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint32_t be32(std::string_view d, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(d[at + k]);
  return v;
}

// Whether the transition times of TZif data ascend strictly, read here
// without rootseal's reader: the header's counts, the version 1 block
// skipped for version 2 and 3 data, then the times. nullopt: too short.
std::optional<bool> ascending(std::string_view d) {
  if (d.size() < 44) return std::nullopt;
  std::size_t at = 20;
  std::size_t size = 4;
  if (d[4] != '\0') {
    const std::uint64_t skip = std::uint64_t{be32(d, 32)} * 5 + std::uint64_t{be32(d, 36)} * 6 + be32(d, 40) +
                               std::uint64_t{be32(d, 28)} * 8 + be32(d, 24) + be32(d, 20);
    at = 44 + skip + 20;
    size = 8;
  }
  if (d.size() < at + 24) return std::nullopt;
  const std::uint64_t count = be32(d, at + 12);
  at += 24;
  if (d.size() < at + count * size) return std::nullopt;
  std::int64_t last = 0;
  for (std::uint64_t k = 0; k < count; ++k) {
    const std::size_t p = at + k * size;
    const std::int64_t w = size == 8 ? static_cast<std::int64_t>((std::uint64_t{be32(d, p)} << 32) | be32(d, p + 4))
                                     : static_cast<std::int32_t>(be32(d, p));
    if (k > 0 && w <= last) return false;
    last = w;
  }
  return true;
}

// The instants asked of a file (rootseal's zone, when it reads the file,
// gives the transitions and the footer's periods).
std::vector<std::int64_t> instants(const std::optional<TzifForTests>& z) {
  std::vector<std::int64_t> out = {kMinSec,    kMinSec + 86399, -50000000000, -2208988800, -1000000000, -1,
                                   0,          1000000000,      1700000000,   2000000000,  2147483647,  2147483648,
                                   4000000000, 10000000000,     100000000000, kMaxSec};
  if (!z) return out;
  const auto tx = z->transitions();
  for (const std::int64_t t : tx) {
    if (t > kMinSec && t <= kMaxSec) {
      out.push_back(t - 1);
      out.push_back(t);
    }
  }
  std::int64_t sec = std::clamp<std::int64_t>(tx.back(), -2208988800, kMaxSec);
  for (int step = 0; step < 80 && sec < kMaxSec; ++step) {
    const auto p = z->at(sec);
    std::int64_t next = p.end > sec ? p.end : sec + 30 * 86400;
    next = std::min(next, kMaxSec);
    out.push_back(next - 1);
    out.push_back(next);
    sec = next;
  }
  return out;
}

std::string join(const std::vector<std::int64_t>& v) {
  std::string s;
  for (const auto x : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(x);
  }
  return s;
}

// rootseal's answers in the reference's notation.
std::string answers(const TzifForTests& z, const std::vector<std::int64_t>& at) {
  std::string line;
  for (const auto sec : at) {
    const auto a = z.at(sec);
    const auto f = z.format(sec, kLayout);
    if (!line.empty()) line += ' ';
    line += hex_or_dash(a.abbr) + "," + std::to_string(a.offset) + "," + (a.dst ? "1" : "0") + "," +
            (f ? hex_or_dash(*f) : std::string("format-refused"));
  }
  return line;
}

// The first answer that differs, decoded for the report (test data only).
std::string first_difference(std::string_view mine, std::string_view theirs, const std::vector<std::int64_t>& at) {
  std::size_t i = 0;
  while (!mine.empty() || !theirs.empty()) {
    const auto a = mine.substr(0, mine.find(' '));
    const auto b = theirs.substr(0, theirs.find(' '));
    if (a != b) {
      auto show = [](std::string_view x) {
        std::string s;
        std::size_t k = 0;
        for (std::size_t c = x.find(','); !x.empty(); c = x.find(','), ++k) {
          const auto part = x.substr(0, c);
          s += (k == 0 || k == 3) ? "'" + unhex(part) + "'" : std::string(part);
          s += ' ';
          x = c == std::string_view::npos ? std::string_view() : x.substr(c + 1);
        }
        return s;
      };
      return "at " + (i < at.size() ? std::to_string(at[i]) : std::string("?")) + ": rootseal " + show(a) + "| Go " +
             show(b);
    }
    mine = mine.find(' ') == std::string_view::npos ? std::string_view() : mine.substr(mine.find(' ') + 1);
    theirs = theirs.find(' ') == std::string_view::npos ? std::string_view() : theirs.substr(theirs.find(' ') + 1);
    ++i;
  }
  return "(same)";
}

struct Case {
  std::string name;
  std::string data;
  std::optional<TzifForTests> zone;
  std::vector<std::int64_t> at;
};

void add_files(const fs::path& root, bool recursive, std::vector<Case>& cases) {
  std::vector<fs::path> paths;
  auto take = [&](const fs::directory_entry& e) {
    if (e.is_regular_file()) paths.push_back(e.path());
  };
  if (recursive) {
    for (const auto& e : fs::recursive_directory_iterator(root)) take(e);
  } else {
    for (const auto& e : fs::directory_iterator(root)) take(e);
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    auto data = read_file(p);
    if (!data) continue;
    Case c;
    c.name = p.string();
    c.data = std::move(*data);
    cases.push_back(std::move(c));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: tzif_diff <tzif_ref binary> <case folder> <zoneinfo folder>\n";
    return 2;
  }
  std::vector<Case> cases;
  add_files(argv[2], false, cases);
  const std::size_t corpus = cases.size();
  add_files(argv[3], true, cases);
  const std::size_t zoneinfo = cases.size() - corpus;
  if (corpus == 0 || zoneinfo < 300) {
    std::cerr << "tzif_diff: " << corpus << " corpus files and " << zoneinfo
              << " zoneinfo files: the cases are missing\n";
    return 1;
  }
  std::vector<std::string> requests;
  for (auto& c : cases) {
    c.zone = TzifForTests::read(c.data);
    c.at = instants(c.zone);
    requests.push_back(kms::hex_encode({reinterpret_cast<const std::uint8_t*>(c.data.data()), c.data.size()}) + " " +
                       join(c.at));
  }
  const auto ref = fuzz::run_reference(argv[1], requests);
  if (!ref) return 1;

  std::size_t both = 0, both_refuse = 0, unsorted = 0, compared = 0, failures = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string& theirs = (*ref)[i];
    std::string problem;
    if (theirs == "E") {
      if (c.zone) {
        problem = "Go refuses the file, rootseal reads it";
      } else {
        ++both_refuse;
      }
    } else if (!c.zone) {
      if (ascending(c.data) == std::optional<bool>(false)) {
        ++unsorted;
      } else {
        problem = "rootseal refuses the file, Go reads it";
      }
    } else {
      ++both;
      compared += c.at.size();
      const std::string mine = answers(*c.zone, c.at);
      if (mine != theirs) problem = first_difference(mine, theirs, c.at);
    }
    if (!problem.empty()) {
      if (++failures <= 20) std::cerr << "DIFF " << c.name << ": " << problem << "\n";
    }
  }
  std::cout << "tzif_diff: " << cases.size() << " files (" << corpus << " corpus, " << zoneinfo
            << " zoneinfo): " << both << " read by both (" << compared << " instants compared), " << both_refuse
            << " refused by both, " << unsorted << " refused by rootseal only (transitions not ascending); " << failures
            << " failures\n";
  if (both < 400) {
    std::cerr << "tzif_diff: only " << both << " files read by both sides\n";
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
