#!/usr/bin/env bash
# Builds the Debian package `rootseal` (binary only) from the work tree, in a
# copy under OUT_DIR so that the checkout stays clean, then runs lintian on it.
#   packaging/build-deb.sh [OUT_DIR]      (default build/deb; `make deb` calls it)
# Results: OUT_DIR/rootseal_<version>_<arch>.deb (+ -dbgsym, .buildinfo,
# .changes) and OUT_DIR/lintian.txt. Fails on any lintian error.
set -euo pipefail

cd "$(dirname "$0")/.."
top=$PWD
out=${1:-build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jobs=${JOBS:-$(nproc)}

version=$(dpkg-parsechangelog -S Version)
src="$out/rootseal-$version"
rm -rf "$src" "$out"/rootseal_*.deb "$out"/rootseal-dbgsym_*.deb "$out"/rootseal_*.buildinfo "$out"/rootseal_*.changes
mkdir -p "$src"

# The files of the work tree (tracked and new, not ignored), as they are now.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$top" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done |
    tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
else
  tar -C "$top" --exclude=./.git --exclude='./build' --exclude='./build-*' -cf - . | tar -C "$src" -xf -
fi

echo "build-deb: building rootseal $version in $src" >&2
(
  cd "$src"
  ROOTSEAL_DEB_CCACHE=${ROOTSEAL_DEB_CCACHE:-1} dpkg-buildpackage -b --no-sign -j"$jobs"
)

deb=$(ls "$out"/rootseal_"$version"_*.deb)
changes=$(ls "$out"/rootseal_"$version"_*.changes)
echo "build-deb: $deb" >&2

# lintian: no error allowed; warnings and info are listed in lintian.txt and
# explained in docs/packaging.md.
lintian --info --display-info --pedantic --fail-on error "$changes" >"$out/lintian.txt" 2>&1 || {
  cat "$out/lintian.txt" >&2
  echo "build-deb: lintian reported errors" >&2
  exit 1
}
echo "build-deb: lintian: $(grep -c '^E:' "$out/lintian.txt" || true) errors," \
     "$(grep -c '^W:' "$out/lintian.txt" || true) warnings," \
     "$(grep -c '^I:' "$out/lintian.txt" || true) info, $(grep -c '^P:' "$out/lintian.txt" || true) pedantic" \
     "(full list: $out/lintian.txt)" >&2
