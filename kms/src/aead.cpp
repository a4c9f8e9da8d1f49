// AES-GCM and ChaCha20-Poly1305 through OpenSSL EVP.
//
// The hot path (one seal per Transit encrypt) is tuned by measurement
// (bench/aead_bench.cpp, bench/aead-vs-openssl.sh; the figures are in
// docs/benchmarks.md, "The AEAD hot path"):
//  - each EVP_CIPHER is fetched once per process: a fetch walks the provider
//    tables under a lock;
//  - each Aead keeps a keyed template context and a small lock-free pool of
//    keyed copies. A call borrows one and only sets the nonce, so neither the
//    AES key schedule nor the GHASH table is recomputed per message;
//  - nonces come from OpenSSL's DRBG in per-thread batches (see NonceSource):
//    one RAND_bytes call costs more than sealing a small message;
//  - what is left is OpenSSL 3.0's own per-message parameter plumbing (see
//    start_message): OSSL_PARAM lookups by name for the IV length and the
//    tag; the public API offers no way around them.
#include "rootseal/kms/aead.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>

#include <array>
#include <atomic>
#include <climits>
#include <cstring>
#include <string>
#include <utility>

#include "ossl.hpp"

namespace rootseal::kms {
namespace {

using detail::CtxPtr;
using detail::ossl;

// EVP takes int lengths. Bounding every input so that input + nonce + tag
// still fits an int keeps all length arithmetic below exact; a Transit
// request is many orders of magnitude smaller.
constexpr std::size_t kMaxInput = static_cast<std::size_t>(INT_MAX) - Aead::kOverhead;

Result<CtxPtr> new_ctx() {
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return fail(Errc::crypto_failure, "OpenSSL EVP_CIPHER_CTX_new failed");
  return ctx;
}

const char* cipher_name(KeyType type) noexcept {
  switch (type) {
    case KeyType::aes128_gcm96:
      return "AES-128-GCM";
    case KeyType::aes256_gcm96:
      return "AES-256-GCM";
    case KeyType::chacha20_poly1305:
      return "ChaCha20-Poly1305";
  }
  return nullptr;
}

// Fetched once, kept for the life of the process (never freed: Aeads may be
// destroyed during static destruction). nullptr if the provider lacks it.
const EVP_CIPHER* cached_cipher(KeyType type) noexcept {
  static const std::array<EVP_CIPHER*, 3> ciphers = {
      EVP_CIPHER_fetch(nullptr, cipher_name(KeyType::aes128_gcm96), nullptr),
      EVP_CIPHER_fetch(nullptr, cipher_name(KeyType::aes256_gcm96), nullptr),
      EVP_CIPHER_fetch(nullptr, cipher_name(KeyType::chacha20_poly1305), nullptr),
  };
  switch (type) {
    case KeyType::aes128_gcm96:
      return ciphers[0];
    case KeyType::aes256_gcm96:
      return ciphers[1];
    case KeyType::chacha20_poly1305:
      return ciphers[2];
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Nonces. Random 96-bit nonces from OpenSSL's public DRBG (nonces are sent in
// the clear; the private DRBG is for keys). A RAND_bytes call has a fixed cost
// of ~1.5 us here (fork check, reseed check, a DRBG key update), so each
// thread draws kBatch nonces at once and hands them out one by one: amortized
// ~10 ns. Safety of the batch:
//  - it is thread-local: no lock, and no two threads can take the same bytes;
//  - each slot is handed out once (next_ only grows until a refill);
//  - a forked child inherits a copy of the parent's pending batch. Using it
//    would repeat the parent's nonces, so a pthread_atfork child handler bumps
//    a generation and a batch from an older generation is thrown away (OpenSSL
//    reseeds its own DRBG on fork for the same reason);
//  - if the handler cannot be registered, every nonce is drawn on its own.
std::atomic<std::uint64_t> g_fork_generation{1};

void on_fork_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

bool batching_allowed() noexcept {
  static const bool registered = ::pthread_atfork(nullptr, nullptr, on_fork_child) == 0;
  return registered;
}

class NonceSource {
 public:
  Result<void> next(std::uint8_t* out) {
    if (!batching_allowed()) return ossl(RAND_bytes(out, static_cast<int>(Aead::kNonceSize)), "RAND_bytes");
    const std::uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
    if (next_ == kBatch || generation_ != generation) {
      next_ = kBatch;  // stays exhausted if the refill fails
      ROOTSEAL_TRY(ossl(RAND_bytes(bytes_.data(), static_cast<int>(bytes_.size())), "RAND_bytes"));
      next_ = 0;
      generation_ = generation;
    }
    std::memcpy(out, bytes_.data() + next_ * Aead::kNonceSize, Aead::kNonceSize);
    ++next_;
    return {};
  }

 private:
  static constexpr std::size_t kBatch = 128;
  std::array<std::uint8_t, kBatch * Aead::kNonceSize> bytes_{};
  std::size_t next_ = kBatch;
  std::uint64_t generation_ = 0;
};

thread_local NonceSource t_nonces;

// ---------------------------------------------------------------------------
// One message through a keyed context. Each starts with a (re)init that only
// sets the nonce: that resets all per-message state of the GCM and
// ChaCha20-Poly1305 providers and keeps the key schedule (and GHASH table).
//
// What remains per message in OpenSSL 3.0 is mostly parameter plumbing: the
// init asks the provider for the IV length, and the tag travels as an
// OSSL_PARAM, each a get/set_ctx_params call that looks up its names with
// strcmp. The tag goes through EVP_CIPHER_CTX_get_params/set_params directly
// (EVP_CIPHER_CTX_ctrl builds the same parameter, with more overhead), and
// the libcrypto results of a message are checked once, at its end.

bool start_message(EVP_CIPHER_CTX* ctx, const std::uint8_t* nonce, int encrypt,
                   std::span<const std::uint8_t> aad) noexcept {
  if (EVP_CipherInit_ex2(ctx, nullptr, nullptr, nonce, encrypt, nullptr) != 1) return false;
  if (aad.empty()) return true;
  int outl = 0;
  return EVP_CipherUpdate(ctx, nullptr, &outl, aad.data(), static_cast<int>(aad.size())) == 1;
}

// Processes `in` into `out` (same length; both may be empty).
bool process(EVP_CIPHER_CTX* ctx, std::uint8_t* out, std::span<const std::uint8_t> in) noexcept {
  if (in.empty()) return true;
  int outl = 0;
  return EVP_CipherUpdate(ctx, out, &outl, in.data(), static_cast<int>(in.size())) == 1 &&
         static_cast<std::size_t>(outl) == in.size();
}

bool tag_param(EVP_CIPHER_CTX* ctx, std::uint8_t* tag, bool get) noexcept {
  std::array<OSSL_PARAM, 2> params = {
      OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, Aead::kTagSize),
      OSSL_PARAM_construct_end(),
  };
  return (get ? EVP_CIPHER_CTX_get_params(ctx, params.data()) : EVP_CIPHER_CTX_set_params(ctx, params.data())) == 1;
}

Result<void> seal_message(EVP_CIPHER_CTX* ctx, std::span<const std::uint8_t> plaintext,
                          std::span<const std::uint8_t> aad, std::span<std::uint8_t> out) {
  // out = nonce (already filled) || ciphertext || tag
  std::uint8_t* const body = out.data() + Aead::kNonceSize;
  int outl = 0;
  const bool ok = start_message(ctx, out.data(), 1, aad) && process(ctx, body, plaintext) &&
                  EVP_CipherFinal_ex(ctx, body + plaintext.size(), &outl) == 1 && outl == 0 &&
                  tag_param(ctx, body + plaintext.size(), true);
  return ossl(ok ? 1 : 0, "AEAD seal");
}

Result<void> open_message(EVP_CIPHER_CTX* ctx, std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> aad,
                          SecureBytes& out) {
  const auto ciphertext = sealed.subspan(Aead::kNonceSize, out.size());
  // EVP wants a mutable buffer for the expected tag; it copies it.
  std::array<std::uint8_t, Aead::kTagSize> tag{};
  std::memcpy(tag.data(), sealed.data() + sealed.size() - Aead::kTagSize, tag.size());
  const bool ok = start_message(ctx, sealed.data(), 0, aad) && tag_param(ctx, tag.data(), false) &&
                  process(ctx, out.data(), ciphertext);
  ROOTSEAL_TRY(ossl(ok ? 1 : 0, "AEAD open"));
  // The tag is checked here (in constant time, by OpenSSL). AEAD finals write
  // nothing; the scratch block only keeps EVP's output contract.
  std::array<std::uint8_t, 16> scratch{};
  int outl = 0;
  if (EVP_CipherFinal_ex(ctx, scratch.data(), &outl) != 1) {
    ERR_clear_error();
    return fail(Errc::decryption_failed,
                "message authentication failed: wrong key or associated data, or a damaged ciphertext");
  }
  if (outl != 0) return fail(Errc::internal, "AEAD final returned output");
  return {};
}

// ---------------------------------------------------------------------------

class EvpAead final : public Aead {
 public:
  explicit EvpAead(CtxPtr keyed) : template_(std::move(keyed)) {}
  ~EvpAead() override {
    for (auto& slot : pool_) EVP_CIPHER_CTX_free(slot.load(std::memory_order_acquire));
  }
  EvpAead(const EvpAead&) = delete;
  EvpAead& operator=(const EvpAead&) = delete;

  Result<std::vector<std::uint8_t>> seal(std::span<const std::uint8_t> plaintext,
                                         std::span<const std::uint8_t> aad) const override {
    ROOTSEAL_TRY(check_sizes(plaintext, aad));
    std::vector<std::uint8_t> out(plaintext.size() + kOverhead);
    ROOTSEAL_TRY(t_nonces.next(out.data()));
    ROOTSEAL_TRY(run([&](EVP_CIPHER_CTX* ctx) { return seal_message(ctx, plaintext, aad, out); }));
    return out;
  }

  Result<std::vector<std::uint8_t>> seal_with_nonce(std::span<const std::uint8_t> nonce,
                                                    std::span<const std::uint8_t> plaintext,
                                                    std::span<const std::uint8_t> aad) const override {
    if (nonce.size() != kNonceSize) return fail(Errc::invalid_argument, "nonce must be exactly 12 bytes");
    ROOTSEAL_TRY(check_sizes(plaintext, aad));
    std::vector<std::uint8_t> out(plaintext.size() + kOverhead);
    std::memcpy(out.data(), nonce.data(), kNonceSize);
    ROOTSEAL_TRY(run([&](EVP_CIPHER_CTX* ctx) { return seal_message(ctx, plaintext, aad, out); }));
    return out;
  }

  Result<SecureBytes> open(std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> aad) const override {
    if (sealed.size() < kOverhead) {
      return fail(Errc::malformed_ciphertext, "sealed message is shorter than nonce + tag (28 bytes)");
    }
    if (sealed.size() > kMaxInput + kOverhead || aad.size() > kMaxInput) {
      return fail(Errc::invalid_argument, "sealed message or associated data too large");
    }
    // Decrypted straight into locked memory; on a tag mismatch the unverified
    // plaintext is wiped when `out` goes out of scope.
    SecureBytes out(sealed.size() - kOverhead);
    ROOTSEAL_TRY(run([&](EVP_CIPHER_CTX* ctx) { return open_message(ctx, sealed, aad, out); }));
    return out;
  }

 private:
  // The pool only grows to the peak number of concurrent callers on this key
  // (one per I/O thread). Each context holds a copy of the key schedule in
  // OpenSSL's heap, so the cap keeps those copies few; callers beyond it
  // still work, their contexts are freed on return.
  static constexpr std::size_t kMaxPooled = 16;

  static Result<void> check_sizes(std::span<const std::uint8_t> plaintext, std::span<const std::uint8_t> aad) {
    if (plaintext.size() > kMaxInput || aad.size() > kMaxInput) {
      return fail(Errc::invalid_argument, "plaintext or associated data too large");
    }
    return {};
  }

  // Runs one message on a borrowed keyed context. Only a context that completed
  // its message goes back to the pool; after any failure (a tag mismatch
  // included) it is freed, so no odd state can carry over to the next caller.
  template <class F>
  Result<void> run(F&& message) const {
    CtxPtr ctx;
    ROOTSEAL_TRY_ASSIGN(ctx, acquire());
    ROOTSEAL_TRY(std::forward<F>(message)(ctx.get()));
    release(std::move(ctx));
    return {};
  }

  // The pool is a fixed array of slots, each empty or holding one idle
  // context; a context is taken with an atomic exchange and put back with a
  // compare-exchange, so a context is only ever held by one caller and no
  // lock is taken (I/O threads sealing under one key do not queue on a mutex).
  // Each thread starts its search at its own slot.
  static std::size_t home_slot() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t home = next.fetch_add(1, std::memory_order_relaxed) % kMaxPooled;
    return home;
  }

  Result<CtxPtr> acquire() const {
    const std::size_t home = home_slot();
    for (std::size_t i = 0; i < kMaxPooled; ++i) {
      auto& slot = pool_[(home + i) % kMaxPooled];
      if (slot.load(std::memory_order_relaxed) == nullptr) continue;
      if (EVP_CIPHER_CTX* ctx = slot.exchange(nullptr, std::memory_order_acquire)) return CtxPtr(ctx);
    }
    // The template is only ever read (EVP_CIPHER_CTX_copy takes it const), so
    // copies may be made concurrently.
    CtxPtr ctx;
    ROOTSEAL_TRY_ASSIGN(ctx, new_ctx());
    ROOTSEAL_TRY(ossl(EVP_CIPHER_CTX_copy(ctx.get(), template_.get()), "EVP_CIPHER_CTX_copy"));
    return ctx;
  }

  void release(CtxPtr ctx) const noexcept {
    const std::size_t home = home_slot();
    for (std::size_t i = 0; i < kMaxPooled; ++i) {
      auto& slot = pool_[(home + i) % kMaxPooled];
      EVP_CIPHER_CTX* empty = nullptr;
      if (slot.load(std::memory_order_relaxed) == nullptr &&
          slot.compare_exchange_strong(empty, ctx.get(), std::memory_order_release, std::memory_order_relaxed)) {
        [[maybe_unused]] EVP_CIPHER_CTX* pooled = ctx.release();  // the slot owns it now
        return;
      }
    }
    // All slots full: ctx is freed (and its key schedule cleansed) here.
  }

  CtxPtr template_;
  mutable std::array<std::atomic<EVP_CIPHER_CTX*>, kMaxPooled> pool_{};
};

}  // namespace

std::string_view to_string(KeyType type) noexcept {
  switch (type) {
    case KeyType::aes128_gcm96:
      return "aes128-gcm96";
    case KeyType::aes256_gcm96:
      return "aes256-gcm96";
    case KeyType::chacha20_poly1305:
      return "chacha20-poly1305";
  }
  return "unknown";
}

Result<KeyType> parse_key_type(std::string_view name) {
  for (KeyType type : {KeyType::aes128_gcm96, KeyType::aes256_gcm96, KeyType::chacha20_poly1305}) {
    if (name == to_string(type)) return type;
  }
  return fail(Errc::invalid_argument,
              "unsupported key type (supported: aes128-gcm96, aes256-gcm96, chacha20-poly1305)");
}

std::size_t key_size(KeyType type) noexcept {
  switch (type) {
    case KeyType::aes128_gcm96:
      return 16;
    case KeyType::aes256_gcm96:
    case KeyType::chacha20_poly1305:
      return 32;
  }
  return 0;
}

Result<std::unique_ptr<Aead>> make_aead(KeyType type, const SecureBytes& key) {
  const std::size_t expected = key_size(type);
  if (expected == 0) return fail(Errc::invalid_argument, "unknown key type");
  if (key.size() != expected) {
    return fail(Errc::invalid_argument,
                std::string(to_string(type)) + " needs a key of exactly " + std::to_string(expected) + " bytes");
  }
  const EVP_CIPHER* cipher = cached_cipher(type);
  if (cipher == nullptr) {
    ERR_clear_error();
    return fail(Errc::crypto_failure, std::string("OpenSSL provider does not offer ") + cipher_name(type));
  }
  CtxPtr keyed;
  ROOTSEAL_TRY_ASSIGN(keyed, new_ctx());
  // Keyed once here; messages only set their nonce (see the file comment).
  ROOTSEAL_TRY(ossl(EVP_CipherInit_ex2(keyed.get(), cipher, key.data(), nullptr, 1, nullptr), "EVP_CipherInit_ex2"));
  return std::make_unique<EvpAead>(std::move(keyed));
}

}  // namespace rootseal::kms
