// rotate-root against SoftHSM2: 1,000 wrapped keys moved to a new root in one
// transaction; the old key retired only afterwards; an interruption at every
// step leaves a store that opens with the old or the new root, and --resume
// finishes the job. (Interruptions here are exceptions thrown at the crash
// points; tests/integration/test_ceremony_crash.py SIGKILLs the real binary.)
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ceremony.hpp"
#include "cli_test_util.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/hsm/token_admin.hpp"
#include "key_copy.hpp"
#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/keyring.hpp"
#include "softhsm.hpp"
#include "transcript.hpp"
#include "util.hpp"

using namespace rootseal;
namespace fs = std::filesystem;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct RotateFixture {
  test::SoftHsm hsm{"A"};
  test::TempDir dir{"rootseal-rotate"};
  std::vector<test::KeyPair> keys;
  fs::path transcript = dir.path() / "transcript";
  fs::path store_path = dir.path() / "rootseal.db";
  cli::Outcome first;
  std::map<std::string, std::string> samples;  // key name -> ciphertext of "sample <name>"

  // legacy: the store as releases before the keyring key wrote it (every
  // version wrapped by the root directly); else through a Keyring (the
  // versions under a keyring key, which the root wraps).
  explicit RotateFixture(std::size_t nkeys, hsm::RootMechanism initial = hsm::RootMechanism::automatic,
                         bool legacy = false) {
    keys.push_back(test::make_key_pair(dir.path(), "alice", "x25519"));
    keys.push_back(test::make_key_pair(dir.path(), "bob", "p256"));
    keys.push_back(test::make_key_pair(dir.path(), "carol", "rsa2048"));
    cli::InitOptions io;
    io.token = token();
    io.custodians = {{"alice", keys[0].pub}, {"bob", keys[1].pub}, {"carol", keys[2].pub}};
    io.threshold = 2;
    io.out_dir = dir.path() / "shares-1";
    io.transcript_dir = transcript;
    io.mechanism = initial;
    test::RecordingConsole con;
    auto r = cli::ceremony_init(io, con);
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r);
    first = *r;
    // The state store: nkeys keys wrapped by the root, a sample under every 50th.
    auto store = kms::open_sqlite_store(store_path);
    REQUIRE(store);
    auto root = root_at("rootseal-root");
    if (legacy) {
      write_legacy(**store, *root, nkeys);
      return;
    }
    kms::Keyring ring(**store, *root);
    REQUIRE(ring.unseal());
    for (std::size_t i = 0; i < nkeys; ++i) {
      const std::string name = "k" + std::to_string(i);
      REQUIRE(ring.create(name, {}));
      if (i % 50 == 0) {
        auto ct = ring.encrypt(name, bytes("sample " + name), {});
        REQUIRE(ct);
        samples[name] = ct->ciphertext;
      }
    }
  }

  void write_legacy(kms::StateStore& store, kms::RootOfTrust& root, std::size_t nkeys) {
    REQUIRE(root.probe());
    auto kcv = root.key_check_value();
    REQUIRE(kcv);
    for (std::size_t i = 0; i < nkeys; ++i) {
      kms::KeyRecord rec;
      rec.name = "k" + std::to_string(i);
      rec.created_unix = 1000;
      auto kek = kms::SecureBytes::random(32);
      auto wrapped = root.wrap(kek);
      REQUIRE(wrapped);
      rec.versions.push_back({1, 1000, *wrapped, *kcv});
      REQUIRE(store.create_key(rec));
      if (i % 50 == 0) {
        auto aead = kms::make_aead(kms::KeyType::aes256_gcm96, kek);
        REQUIRE(aead);
        auto body = (*aead)->seal(bytes("sample " + rec.name), {});
        REQUIRE(body);
        samples[rec.name] = kms::format_ciphertext(1, *body);
      }
    }
  }

  cli::TokenTarget token() const {
    cli::TokenTarget t;
    t.module = test::kSoftHsmModule;
    t.token_label = "A";
    t.pin = [] { return kms::Result<kms::SecureBytes>(kms::SecureBytes::copy_of(std::string_view("1234"))); };
    return t;
  }

  cli::RotateOptions rotate_options(const std::string& out) const {
    cli::RotateOptions o;
    o.token = token();
    o.store = store_path;
    o.custodians = {{"alice", keys[0].pub}, {"bob", keys[1].pub}, {"carol", keys[2].pub}};
    o.threshold = 2;
    o.out_dir = dir.path() / out;
    o.transcript_dir = transcript;
    return o;
  }

  std::unique_ptr<hsm::Pkcs11Root> root_at(const std::string& label) const {
    hsm::Pkcs11Config c = hsm.config(false);
    c.key_label = label;
    return hsm::Pkcs11Root::create(c, hsm.pin_source());
  }

  // Unseals the store with the key labelled `label` and checks every sample.
  // `mechanism`: the root mechanism rootseald (auto) must find there.
  kms::Result<std::string> opens_with(const std::string& label, const std::string& mechanism = {}) const {
    auto store = kms::open_sqlite_store(store_path);
    REQUIRE(store);
    auto root = root_at(label);
    kms::Keyring ring(**store, *root);
    ROOTSEAL_TRY(ring.unseal());
    if (!mechanism.empty()) CHECK(root->root_mechanism() == mechanism);
    for (const auto& [name, ct] : samples) {
      auto pt = ring.decrypt(name, ct, {});
      REQUIRE(pt);
      REQUIRE(std::string(reinterpret_cast<const char*>(pt->data()), pt->size()) == "sample " + name);
    }
    return root->key_check_value();
  }

  std::vector<hsm::KeyObject> token_keys() const {
    auto admin = hsm::TokenAdmin::open(test::kSoftHsmModule, "A", kms::SecureBytes::copy_of(std::string_view("1234")));
    REQUIRE(admin);
    auto k = (*admin)->find_keys("");
    REQUIRE(k);
    return *k;
  }
};

const char* g_crash_at = nullptr;

struct Crash : std::runtime_error {
  Crash() : std::runtime_error("simulated crash") {}
};

void crash_observer(std::string_view point) {
  if (g_crash_at != nullptr && point == g_crash_at) throw Crash();
}

// Rotation interrupted at `point`; then the store must open with the old or
// the new root, and --resume (or a fresh rotation) must end with the new root
// (or the old one, if the interruption came before the rotation was recorded)
// under the daemon's label. `from` / `to`: the root mechanisms (automatic:
// KWP on SoftHSM2).
void interrupted_rotation(const char* point, hsm::RootMechanism from = hsm::RootMechanism::automatic,
                          hsm::RootMechanism to = hsm::RootMechanism::automatic) {
  RotateFixture fx(120, from);
  const std::string old_kcv = fx.first.kcv;
  const bool old_cbc = from == hsm::RootMechanism::aes_cbc_pad_hmac;
  const bool new_cbc = to == hsm::RootMechanism::aes_cbc_pad_hmac || (old_cbc && to == hsm::RootMechanism::automatic);
  g_crash_at = point;
  cli::set_stage_observer(&crash_observer);
  test::RecordingConsole con;
  bool crashed = false;
  try {
    auto ro = fx.rotate_options("shares-2");
    ro.mechanism = to;
    (void)cli::ceremony_rotate_root(ro, con);
  } catch (const Crash&) {
    crashed = true;
  }
  cli::set_stage_observer(nullptr);
  REQUIRE(crashed);

  // Never neither: some key of the token opens the store, and it is the old
  // or the new root (the new one's kcv is in the transcript, if recorded).
  std::vector<std::string> opened;
  std::string opened_kcv;
  for (const auto& k : fx.token_keys()) {
    auto r = fx.opens_with(k.label);
    if (r) {
      opened.push_back(k.label);
      opened_kcv = *r;
    }
  }
  INFO("crash at " << point);
  REQUIRE_FALSE(opened.empty());
  auto entries = cli::Transcript(fx.transcript).load();
  REQUIRE(entries);
  std::string new_kcv;
  for (const auto& e : *entries) {
    if (e.str("kind") == "rotate-root") new_kcv = e.body.at("root_key").as_object().at("kcv").as_string().c_str();
  }
  CHECK((opened_kcv == old_kcv || (!new_kcv.empty() && opened_kcv == new_kcv)));

  // Resume.
  auto ro = fx.rotate_options("shares-3");
  ro.resume = true;
  auto r = cli::ceremony_rotate_root(ro, con);
  INFO(con.out_text() << con.err_text());
  REQUIRE(r);
  if (new_kcv.empty()) {
    // Not recorded yet: the old root stays; a fresh rotation now succeeds.
    auto kcv = fx.opens_with("rootseal-root", old_cbc ? "aes-cbc-pad-hmac" : "aes-kwp");
    REQUIRE(kcv);
    CHECK(*kcv == old_kcv);
    auto ro2 = fx.rotate_options("shares-4");
    ro2.mechanism = to;
    auto again = cli::ceremony_rotate_root(ro2, con);
    INFO(con.err_text());
    REQUIRE(again);
    new_kcv = again->kcv;
  }
  auto kcv = fx.opens_with("rootseal-root", new_cbc ? "aes-cbc-pad-hmac" : "aes-kwp");
  INFO((kcv ? std::string() : kcv.error().message));
  REQUIRE(kcv);
  CHECK(*kcv == new_kcv);
  // The old key: kept under its retired label (with its HMAC key), nothing
  // else left behind.
  std::map<std::string, std::string> labels;
  for (const auto& k : fx.token_keys()) labels[k.label] = k.kcv;
  const std::string retired = cli::retired_label("rootseal-root", old_kcv);
  CHECK(labels.size() == std::size_t{2} + (old_cbc ? 1U : 0U) + (new_cbc ? 1U : 0U));
  CHECK(labels["rootseal-root"] == new_kcv);
  CHECK(labels[retired] == old_kcv);
  CHECK(labels.contains("rootseal-root-hmac") == new_cbc);
  CHECK(labels.contains(hsm::hmac_label(retired)) == old_cbc);
  CHECK_FALSE(labels.contains("rootseal-root.next"));
  CHECK_FALSE(labels.contains("rootseal-root.next-hmac"));
  CHECK(cli::ceremony_audit({fx.transcript, ""}, con));
}

}  // namespace

TEST_CASE("rotate-root moves 1,000 wrapped keys to a new root, retires the old one, and the new shares restore it") {
  RotateFixture fx(1000, hsm::RootMechanism::automatic, /*legacy=*/true);  // every version under the root
  const std::string old_kcv = fx.first.kcv;
  test::RecordingConsole con;
  auto r = cli::ceremony_rotate_root(fx.rotate_options("shares-2"), con);
  INFO(con.out_text() << con.err_text() << (r ? std::string() : r.error().message));
  REQUIRE(r);
  CHECK(r->rewrapped == 1000);
  CHECK(r->kcv != old_kcv);
  CHECK(r->share_files.size() == 3);

  // Every key opens under the new root, under the daemon's label ...
  auto kcv = fx.opens_with("rootseal-root");
  REQUIRE(kcv);
  CHECK(*kcv == r->kcv);
  // ... and no longer under the old one, which is kept under its retired label.
  const std::string retired = cli::retired_label("rootseal-root", old_kcv);
  auto old = fx.opens_with(retired);
  REQUIRE_FALSE(old);
  CHECK(old.error().code == kms::Errc::sealed);
  auto keys = fx.token_keys();
  REQUIRE(keys.size() == 2);
  for (const auto& k : keys) CHECK(k.is_valid_root_key());

  // The transcript: init, rotate-root (prepared), rotate-root-complete.
  auto entries = cli::Transcript(fx.transcript).load();
  REQUIRE(entries);
  REQUIRE(entries->size() == 3);
  CHECK((*entries)[1].str("kind") == "rotate-root");
  CHECK((*entries)[2].str("kind") == "rotate-root-complete");
  CHECK((*entries)[2].body.at("rewrapped_in_this_run").to_number<int>() == 1000);

  // The new shares restore the new root onto another token, which opens the store.
  fx.hsm.add_token("B");
  kms::SecureBytes typed;
  {
    std::vector<kms::SecureBytes> parts;
    for (std::size_t i : std::initializer_list<std::size_t>{0, 2}) {
      test::RecordingConsole c;
      REQUIRE(cli::share_decrypt({r->share_files[i], fx.keys[i].priv}, c));
      parts.push_back(c.take_secret());
    }
    typed = kms::SecureBytes(parts[0].size() + parts[1].size());
    std::memcpy(typed.data(), parts[0].data(), parts[0].size());
    std::memcpy(typed.data() + parts[0].size(), parts[1].data(), parts[1].size());
  }
  cli::BufferLineSource lines(std::move(typed));
  cli::RestoreOptions ro;
  ro.token = fx.token();
  ro.token.token_label = "B";
  ro.transcript_dir = fx.transcript;
  ro.typed = &lines;
  auto restored = cli::ceremony_restore(ro, con);
  INFO((restored ? std::string() : restored.error().message));
  REQUIRE(restored);
  CHECK(restored->kcv == r->kcv);
  cli::VerifyOptions vo;
  vo.token = fx.token();
  vo.token.token_label = "B";
  vo.transcript_dir = fx.transcript;
  vo.store = fx.store_path;
  auto v = cli::ceremony_verify(vo, con);
  INFO((v ? std::string() : v.error().message));
  REQUIRE(v);
}

TEST_CASE("rotate-root --retire destroy leaves only the new root, --no-backup rotation warns") {
  RotateFixture fx(10);
  test::RecordingConsole con;
  auto o = fx.rotate_options("unused");
  o.custodians.clear();
  o.threshold = 0;
  o.no_backup = true;
  o.retire = cli::Retire::destroy;
  auto r = cli::ceremony_rotate_root(o, con);
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r);
  CHECK(con.err_text().find("can never be") != std::string::npos);
  auto keys = fx.token_keys();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].label == "rootseal-root");
  CHECK(keys[0].kcv == r->kcv);
  CHECK(fx.opens_with("rootseal-root"));
}

TEST_CASE("rotate-root refuses a store wrapped by another root, and a second rotation while one is pending") {
  RotateFixture fx(5);
  test::RecordingConsole con;
  // A version wrapped by some other root.
  {
    auto store = kms::open_sqlite_store(fx.store_path);
    REQUIRE(store);
    auto other = kms::SoftwareRoot::create(kms::SecureBytes::random(32));
    REQUIRE(other);
    kms::Keyring ring(**store, **other);
    REQUIRE_FALSE(ring.unseal());  // the store is A's
    kms::KeyRecord rec;
    rec.name = "foreign";
    auto kek = kms::SecureBytes::random(32);
    auto w = (*other)->wrap(kek);
    REQUIRE(w);
    auto kcv = (*other)->key_check_value();
    REQUIRE(kcv);
    rec.versions.push_back({1, 0, *w, *kcv});
    REQUIRE((*store)->create_key(rec));
  }
  auto r = cli::ceremony_rotate_root(fx.rotate_options("shares-2"), con);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("refusing to rotate") != std::string::npos);
  CHECK(fx.token_keys().size() == 1);  // nothing created
}

TEST_CASE("rotate-root is refused while rootseald (or another offline command) holds the store's state folder") {
  RotateFixture fx(3);
  test::RecordingConsole con;
  {
    // What a running rootseald holds (daemon::StateDirLock): an flock on
    // <state_dir>/rootseald.lock naming it.
    const auto lock_path = fx.store_path.parent_path() / "rootseald.lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    const std::string holder = "pid 4242 rootseald\n";
    REQUIRE(::pwrite(fd, holder.data(), holder.size(), 0) == static_cast<ssize_t>(holder.size()));
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    auto r = cli::ceremony_rotate_root(fx.rotate_options("shares-2"), con);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::conflict);
    CHECK(r.error().message.find("pid 4242 rootseald") != std::string::npos);  // names the holder
    CHECK(fx.token_keys().size() == 1);                                        // nothing created in the token
  }
  // Released (rootseald stopped): the rotation runs.
  auto r = cli::ceremony_rotate_root(fx.rotate_options("shares-3"), con);
  REQUIRE(r);
  CHECK(fx.opens_with("rootseal-root"));
}

#define ROTATE_CRASH_CASE(point)                                                                                  \
  TEST_CASE("rotate-root interrupted at " point ": the store opens with the old or new root, --resume ends it") { \
    interrupted_rotation(point);                                                                                  \
  }

ROTATE_CRASH_CASE("root-key-held")
ROTATE_CRASH_CASE("shares-split")
ROTATE_CRASH_CASE("shares-written")
ROTATE_CRASH_CASE("new-key-imported")
ROTATE_CRASH_CASE("rotation-recorded")
ROTATE_CRASH_CASE("rewrap-before-commit")
ROTATE_CRASH_CASE("rewrap-committed")
ROTATE_CRASH_CASE("old-key-copied")
ROTATE_CRASH_CASE("old-key-retired")
ROTATE_CRASH_CASE("new-key-copied")
ROTATE_CRASH_CASE("new-key-promoted")

// Cross-mechanism rotations (a KWP root to an encrypt-then-MAC one and back),
// interrupted at every step, the HMAC key's own steps included.
#define CROSS_CRASH_CASE(point)                                                                                       \
  TEST_CASE("rotate-root aes-kwp -> aes-cbc-pad-hmac interrupted at " point ": old or new opens, --resume ends it") { \
    interrupted_rotation(point, hsm::RootMechanism::automatic, hsm::RootMechanism::aes_cbc_pad_hmac);                 \
  }                                                                                                                   \
  TEST_CASE("rotate-root aes-cbc-pad-hmac -> aes-kwp interrupted at " point ": old or new opens, --resume ends it") { \
    interrupted_rotation(point, hsm::RootMechanism::aes_cbc_pad_hmac, hsm::RootMechanism::aes_kwp);                   \
  }

CROSS_CRASH_CASE("root-key-held")
CROSS_CRASH_CASE("shares-written")
CROSS_CRASH_CASE("new-key-imported")
CROSS_CRASH_CASE("rotation-recorded")
CROSS_CRASH_CASE("rewrap-before-commit")
CROSS_CRASH_CASE("rewrap-committed")
CROSS_CRASH_CASE("old-key-copied")
CROSS_CRASH_CASE("old-key-retired")
CROSS_CRASH_CASE("new-key-copied")
CROSS_CRASH_CASE("new-key-promoted")

// Points only one direction passes.
TEST_CASE("rotate-root aes-kwp -> aes-cbc-pad-hmac interrupted between the HMAC key's import and the AES key's") {
  interrupted_rotation("hmac-key-imported", hsm::RootMechanism::automatic, hsm::RootMechanism::aes_cbc_pad_hmac);
}
TEST_CASE("rotate-root aes-kwp -> aes-cbc-pad-hmac interrupted after the new HMAC key was copied") {
  interrupted_rotation("new-hmac-copied", hsm::RootMechanism::automatic, hsm::RootMechanism::aes_cbc_pad_hmac);
}
TEST_CASE("rotate-root aes-kwp -> aes-cbc-pad-hmac interrupted after the temporary HMAC key was removed") {
  interrupted_rotation("new-hmac-promoted", hsm::RootMechanism::automatic, hsm::RootMechanism::aes_cbc_pad_hmac);
}
TEST_CASE("rotate-root aes-cbc-pad-hmac -> aes-kwp interrupted after the old HMAC key was copied") {
  interrupted_rotation("old-hmac-copied", hsm::RootMechanism::aes_cbc_pad_hmac, hsm::RootMechanism::aes_kwp);
}
TEST_CASE("rotate-root aes-cbc-pad-hmac -> aes-kwp interrupted after the old HMAC key was retired") {
  interrupted_rotation("old-hmac-retired", hsm::RootMechanism::aes_cbc_pad_hmac, hsm::RootMechanism::aes_kwp);
}
TEST_CASE("rotate-root with a keyring key rewraps that one blob, whatever the number of versions") {
  RotateFixture fx(1000);
  auto before = kms::open_sqlite_store(fx.store_path);
  REQUIRE(before);
  auto records_before = (*before)->load_all();
  auto kks_before = (*before)->keyring_keys();
  REQUIRE(records_before);
  REQUIRE(kks_before);
  REQUIRE(kks_before->size() == 1);
  CHECK(kks_before->front().root_kcv == fx.first.kcv);
  test::RecordingConsole con;
  auto r = cli::ceremony_rotate_root(fx.rotate_options("shares-2"), con);
  INFO(con.out_text() << con.err_text() << (r ? std::string() : r.error().message));
  REQUIRE(r);
  CHECK(r->rewrapped == 1);  // the keyring key
  auto after = kms::open_sqlite_store(fx.store_path);
  REQUIRE(after);
  auto kks = (*after)->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  CHECK(kks->front().root_kcv == r->kcv);
  CHECK(kks->front().kcv == kks_before->front().kcv);  // the same keyring key, wrapped anew
  CHECK(kks->front().wrapped != kks_before->front().wrapped);
  // Not one version touched.
  auto records = (*after)->load_all();
  REQUIRE(records);
  REQUIRE(records->size() == records_before->size());
  for (std::size_t i = 0; i < records->size(); ++i) {
    CHECK(cli::key_difference((*records_before)[i], (*records)[i]).empty());
  }
  auto kcv = fx.opens_with("rootseal-root");
  REQUIRE(kcv);
  CHECK(*kcv == r->kcv);
}

TEST_CASE(
    "rotate-root aes-cbc-pad-hmac -> aes-cbc-pad-hmac (auto keeps the mechanism) interrupted at old-hmac-retired") {
  interrupted_rotation("old-hmac-retired", hsm::RootMechanism::aes_cbc_pad_hmac, hsm::RootMechanism::automatic);
}

TEST_CASE("rotate-root from aes-kwp to aes-cbc-pad-hmac and back: every key opens, the new shares restore both keys") {
  RotateFixture fx(300);
  const std::string kwp_kcv = fx.first.kcv;
  test::RecordingConsole con;
  auto o = fx.rotate_options("shares-2");
  o.mechanism = hsm::RootMechanism::aes_cbc_pad_hmac;
  auto r = cli::ceremony_rotate_root(o, con);
  INFO(con.out_text() << con.err_text() << (r ? std::string() : r.error().message));
  REQUIRE(r);
  CHECK(r->rewrapped == 1);  // the keyring key
  CHECK(r->mechanism == "aes-cbc-pad-hmac");
  REQUIRE(r->hmac_check.size() == 6);
  auto kcv = fx.opens_with("rootseal-root", "aes-cbc-pad-hmac");
  REQUIRE(kcv);
  CHECK(*kcv == r->kcv);
  // The keyring key, the one blob the root wraps, now carries the
  // CBC-PAD+HMAC header; the versions under it are as they were.
  {
    auto store = kms::open_sqlite_store(fx.store_path);
    REQUIRE(store);
    auto kks = (*store)->keyring_keys();
    REQUIRE(kks);
    REQUIRE(kks->size() == 1);
    CHECK(kks->front().wrapped.front() == 0x03);
    CHECK(kks->front().root_kcv == r->kcv);
    auto all = (*store)->load_all();
    REQUIRE(all);
    std::size_t n = 0;
    for (const auto& k : *all) {
      for (const auto& v : k.versions) {
        CHECK(v.root_kcv == kms::keyring_key_tag(kks->front().id, kks->front().kcv));
        ++n;
      }
    }
    CHECK(n == 300);
  }
  // verify: the transcript's current root is the new one, both keys checked.
  cli::VerifyOptions vo;
  vo.token = fx.token();
  vo.transcript_dir = fx.transcript;
  vo.store = fx.store_path;
  auto v = cli::ceremony_verify(vo, con);
  INFO((v ? std::string() : v.error().message));
  REQUIRE(v);
  CHECK(v->hmac_check == r->hmac_check);

  // ... and back to KWP (auto would keep aes-cbc-pad-hmac).
  auto back_opts = fx.rotate_options("shares-3");
  back_opts.mechanism = hsm::RootMechanism::aes_kwp;
  auto back = cli::ceremony_rotate_root(back_opts, con);
  INFO((back ? std::string() : back.error().message));
  REQUIRE(back);
  CHECK(back->mechanism == "aes-kwp");
  auto kcv2 = fx.opens_with("rootseal-root", "aes-kwp");
  REQUIRE(kcv2);
  CHECK(*kcv2 == back->kcv);
  std::map<std::string, std::string> labels;
  for (const auto& k : fx.token_keys()) labels[k.label] = k.kcv;
  const std::string retired_cbc = cli::retired_label("rootseal-root", r->kcv);
  CHECK(labels.size() == 4);
  CHECK(labels["rootseal-root"] == back->kcv);
  CHECK(labels[cli::retired_label("rootseal-root", kwp_kcv)] == kwp_kcv);
  CHECK(labels[retired_cbc] == r->kcv);
  CHECK(labels[hsm::hmac_label(retired_cbc)] == r->hmac_check);
  CHECK_FALSE(labels.contains("rootseal-root-hmac"));

  // The cbc rotation's shares restore both of its keys on B (archival).
  fx.hsm.add_token("B");
  cli::RestoreOptions ro;
  ro.token = fx.token();
  ro.token.token_label = "B";
  ro.transcript_dir = fx.transcript;
  ro.files = {{r->share_files[0], fx.keys[0].priv}, {r->share_files[2], fx.keys[2].priv}};
  auto restored = cli::ceremony_restore(ro, con);
  INFO((restored ? std::string() : restored.error().message));
  REQUIRE(restored);
  CHECK(restored->mechanism == "aes-cbc-pad-hmac");
  CHECK(restored->hmac_check == r->hmac_check);
}
