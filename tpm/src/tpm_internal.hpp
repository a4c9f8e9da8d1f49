// rootseal::tpm (private) — the ESAPI context behind a Tpm, and RAII for
// ESYS_TR handles. Tests include this to reach the raw context (PCR extend,
// handle counts) over the same connection: swtpm serves one at a time.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <string>
#include <utility>

#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::tpm {

struct Tpm::Impl {
  TSS2_TCTI_CONTEXT* tcti_ctx = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  std::string tcti;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (esys != nullptr) Esys_Finalize(&esys);
    if (tcti_ctx != nullptr) Tss2_TctiLdr_Finalize(&tcti_ctx);
  }
};

namespace detail {

struct TpmAccess {
  static ESYS_CONTEXT* esys(Tpm& tpm) noexcept { return tpm.impl_->esys; }
};

// An ESYS_TR that is released on every path: transient objects and sessions
// are flushed from the TPM (Esys_FlushContext); persistent objects only have
// their ESAPI metadata closed (Esys_TR_Close), never evicted.
class EsysHandle {
 public:
  enum class Kind { flush, close };

  EsysHandle() noexcept = default;
  EsysHandle(ESYS_CONTEXT* ctx, ESYS_TR tr, Kind kind) noexcept : ctx_(ctx), tr_(tr), kind_(kind) {}
  EsysHandle(EsysHandle&& o) noexcept : ctx_(o.ctx_), tr_(std::exchange(o.tr_, ESYS_TR_NONE)), kind_(o.kind_) {}
  EsysHandle& operator=(EsysHandle&& o) noexcept {
    if (this != &o) {
      reset();
      ctx_ = o.ctx_;
      tr_ = std::exchange(o.tr_, ESYS_TR_NONE);
      kind_ = o.kind_;
    }
    return *this;
  }
  EsysHandle(const EsysHandle&) = delete;
  EsysHandle& operator=(const EsysHandle&) = delete;
  ~EsysHandle() { reset(); }

  [[nodiscard]] ESYS_TR get() const noexcept { return tr_; }
  [[nodiscard]] explicit operator bool() const noexcept { return tr_ != ESYS_TR_NONE; }

  void reset() noexcept {
    if (tr_ == ESYS_TR_NONE || ctx_ == nullptr) return;
    ESYS_TR tr = std::exchange(tr_, ESYS_TR_NONE);
    if (kind_ == Kind::flush) {
      // On success ESAPI also closes the ESYS_TR. If the TPM is gone the
      // flush fails: free the metadata anyway.
      if (Esys_FlushContext(ctx_, tr) != TSS2_RC_SUCCESS) Esys_TR_Close(ctx_, &tr);
    } else {
      Esys_TR_Close(ctx_, &tr);
    }
  }

 private:
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR tr_ = ESYS_TR_NONE;
  Kind kind_ = Kind::flush;
};

}  // namespace detail
}  // namespace rootseal::tpm
