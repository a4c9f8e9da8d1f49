// rootseal::sync — the error-flow macros sync uses (ROOTSEAL_LET, ROOTSEAL_CO_LET,
// ROOTSEAL_CO_TRY) are defined once, next to ROOTSEAL_TRY, in
// rootseal/kms/error.hpp; this header stays so the sync sources that include it
// need no change.
#pragma once

#include "rootseal/kms/error.hpp"
