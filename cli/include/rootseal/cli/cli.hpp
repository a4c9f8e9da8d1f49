// rootseal::cli — the `rootseal` command-line tool: the offline key ceremony
// (`rootseal ceremony init | share decrypt | restore | verify | rotate-root |
// audit`, docs/ceremony.md) and the local admin of a running rootseald over
// its admin socket (`rootseal status | unseal | token ... | tpm reseal`, and
// `rootseal tpm seal-pin` on the TPM directly; docs/admin.md).
#pragma once

namespace rootseal::cli {

// Makes the process unfit to leak secrets through a crash: not dumpable
// (PR_SET_DUMPABLE 0: no core dump, no ptrace by the same user) and no core
// files (RLIMIT_CORE 0). Returns false if either could not be set.
bool harden_process() noexcept;

// Runs the tool (hardens the process first). Returns the exit status:
// 0 success, 1 the ceremony step or admin command failed or was refused,
// 2 usage error (and, for `rootseal status`, sealed).
int run(int argc, char** argv);

}  // namespace rootseal::cli
