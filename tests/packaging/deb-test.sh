#!/usr/bin/env bash
# `make deb` + `make test-deb` as one ctest test (packaging_deb): builds the
# package from the work tree into OUT_DIR (lintian: no error), then installs,
# upgrades, removes and purges it in a throwaway overlay root. Nothing on the
# host changes: the build writes only under OUT_DIR, the install runs in a
# private mount namespace. Needs root (exit 77, skipped, otherwise).
#   tests/packaging/deb-test.sh OUT_DIR
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?output folder}
if (($(id -u) != 0)); then echo "SKIP - test-deb needs root (mount namespace, overlay, chroot)"; exit 77; fi
started=$SECONDS
JOBS=${JOBS:-$(nproc)} bash "$top/packaging/build-deb.sh" "$out"
built=$SECONDS
bash "$top/tests/packaging/test-deb.sh" "$out"
echo "packaging_deb: package built in $((built - started))s, install/upgrade/purge tested in $((SECONDS - built))s"
