#!/usr/bin/env bash
# Checks of the packaging that need no package build (the package itself is
# built by `make deb` and tested by `make test-deb`):
#   1. every Build-Depends of debian/control is installed by scripts/install-deps,
#      and debian/changelog's version is the CMake project version;
#   2. the man pages render without a groff warning;
#   3. the default configuration (packaging/rootseald.yaml, the conffile) is
#      accepted by the rootseald built in this tree (run as an unprivileged
#      user where possible, against a scratch state folder and a free port),
#      and the same file with a misspelt key is refused;
#   4. `cmake --install` (into a DESTDIR) lays out what the package ships.
# Usage: check-packaging.sh SOURCE_DIR BUILD_DIR ROOTSEALD_BINARY [ROOTSEAL_CLI_BINARY]
set -uo pipefail

src=${1:?source dir}
build=${2:?build dir}
rootseald=${3:?rootseald binary}
cli=${4:-}

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "ok   - $*"; }
fail() { failures=$((failures + 1)); echo "FAIL - $*"; }

tmp=$(mktemp -d)
daemon_pid=
cleanup() {
  [[ -n "$daemon_pid" ]] && kill -KILL "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. build dependencies and version --------------------------------------
installed=$(sed -n '/^PACKAGES=(/,/^)/p' "$src/scripts/install-deps" | sed -e '1d;$d' -e 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
build_deps=$(sed -n '/^Build-Depends:/,/^[A-Z][A-Za-z-]*:/p' "$src/debian/control" | sed '$d' |
  sed -e 's/^Build-Depends://' -e 's/#.*//' | tr ',' '\n' | sed -e 's/([^)]*)//g' -e 's/\[[^]]*\]//g' -e 's/<[^>]*>//g' |
  tr -d ' \t' | sed '/^$/d')
[[ -n "$build_deps" ]] || fail "no Build-Depends found in debian/control"
for dep in $build_deps; do
  case "$dep" in
    debhelper-compat | dh-sequence-*) dep=debhelper ;;  # both provided by debhelper
  esac
  if grep -qx -- "$dep" <<<"$installed"; then pass "build dependency $dep is in scripts/install-deps"
  else fail "build dependency $dep (debian/control) is not installed by scripts/install-deps"; fi
done
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version 2>/dev/null)
cmake_version=$(sed -n 's/^project(rootseal VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n "$cmake_version" && "${deb_version%%-*}" == "$cmake_version" ]] \
  && pass "debian/changelog version $deb_version matches CMake's $cmake_version" \
  || fail "debian/changelog version '$deb_version' does not match CMake's project version '$cmake_version'"

# --- 2. man pages ------------------------------------------------------------
for page in "$src"/packaging/man/rootseald.8 "$src"/packaging/man/rootseal.1; do
  warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
  rendered=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
  if [[ -z "$warnings" ]] && ((rendered > 20)); then pass "man page $(basename "$page") renders ($rendered lines), no warning"
  else fail "man page $(basename "$page"): ${warnings:-renders only $rendered lines}"; fi
done
# rootseald(8) documents every option rootseald --help lists.
for opt in $("$rootseald" --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u); do
  grep -q -- "$(sed 's/-/\\\\-/g' <<<"$opt")" "$src/packaging/man/rootseald.8" \
    && pass "rootseald.8 documents $opt" || fail "rootseald.8 does not document $opt (from rootseald --help)"
done

# rootseal(1) names every `rootseal ceremony` subcommand.
if [[ -n "$cli" ]]; then
  subs=$("$cli" ceremony --help 2>/dev/null | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF { print $1 }')
  [[ -n "$subs" ]] || fail "rootseal ceremony --help lists no subcommand"
  for sub in $subs; do
    grep -q "^\.B ceremony $(sed 's/-/\\\\-/g' <<<"$sub")\( \|\$\)" "$src/packaging/man/rootseal.1" \
      && pass "rootseal.1 documents ceremony $sub" || fail "rootseal.1 does not document 'ceremony $sub' (from rootseal ceremony --help)"
  done
fi

# --- 3. the default configuration --------------------------------------------
run_dir="$tmp/run"
mkdir -p "$run_dir/state" "$run_dir/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$run_dir/tokens" >"$run_dir/softhsm2.conf"
# The packaged file with only the two host-specific values changed.
sed -e 's#^  address: 127\.0\.0\.1:8200$#  address: 127.0.0.1:0#' \
    -e "s#^state_dir: /var/lib/rootseal\$#state_dir: $run_dir/state#" \
    "$src/packaging/rootseald.yaml" >"$run_dir/rootseald.yaml"
if [[ $(grep -c -e '^  address: 127.0.0.1:0$' -e "^state_dir: $run_dir/state\$" "$run_dir/rootseald.yaml") != 2 ]]; then
  fail "packaging/rootseald.yaml no longer has 'address: 127.0.0.1:8200' and 'state_dir: /var/lib/rootseal'"
fi
as_user=()
if (($(id -u) == 0)) && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  # rootseald is meant to run unprivileged (as _rootseal); run it as nobody here.
  chown -R nobody: "$run_dir"
  chmod 0755 "$tmp"
  as_user=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
fi
start_daemon() {  # start_daemon CONFIG LOG
  SOFTHSM2_CONF="$run_dir/softhsm2.conf" "${as_user[@]}" "$rootseald" --config "$1" >"$2" 2>&1 &
  daemon_pid=$!
}
start_daemon "$run_dir/rootseald.yaml" "$tmp/daemon.log"
listening=
for _ in $(seq 1 100); do
  if grep -q 'msg="listening"' "$tmp/daemon.log"; then listening=1; break; fi
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -n "$listening" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
  pass "rootseald starts with the packaged configuration: $(grep -o 'msg="listening".*' "$tmp/daemon.log" | head -1)"
  # It must stop within the unit's TimeoutStopSec=, or systemd would SIGKILL it.
  stop_limit=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$src/systemd/rootseald.service")
  kill -TERM "$daemon_pid"
  started=$SECONDS
  while kill -0 "$daemon_pid" 2>/dev/null && ((SECONDS - started < ${stop_limit:-45})); do sleep 0.1; done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    fail "rootseald did not stop within TimeoutStopSec=${stop_limit:-45}s of SIGTERM"
    kill -KILL "$daemon_pid"; wait "$daemon_pid" 2>/dev/null
  elif wait "$daemon_pid"; then
    pass "rootseald stops with status 0 on SIGTERM, in $((SECONDS - started))s (TimeoutStopSec=${stop_limit:-45}s)"
  else
    fail "rootseald exited $? on SIGTERM"
  fi
else
  fail "rootseald did not start with the packaged configuration:"; sed 's/^/    /' "$tmp/daemon.log"
  kill -KILL "$daemon_pid" 2>/dev/null
  wait "$daemon_pid" 2>/dev/null
fi
daemon_pid=
# Negative control: the same file with a misspelt option is refused, naming it.
sed 's/^  address:/  adress:/' "$run_dir/rootseald.yaml" >"$run_dir/bad.yaml"
chmod a+r "$run_dir/bad.yaml"
start_daemon "$run_dir/bad.yaml" "$tmp/bad.log"
status=0
timeout 10 tail --pid="$daemon_pid" -f /dev/null 2>/dev/null || kill -KILL "$daemon_pid" 2>/dev/null
wait "$daemon_pid" || status=$?
daemon_pid=
if ((status != 0)) && grep -q 'adress' "$tmp/bad.log"; then pass "a misspelt option is refused (exit $status): $(head -1 "$tmp/bad.log")"
else fail "a configuration with 'listen.adress' was not refused (exit $status)"; fi

# --- 4. cmake --install layout ------------------------------------------------
dest="$tmp/dest"
if DESTDIR="$dest" cmake --install "$build" >"$tmp/install.log" 2>&1; then
  prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
  unitdir=$(sed -n 's/^ROOTSEAL_SYSTEMD_UNIT_DIR:PATH=//p' "$build/CMakeCache.txt")
  sysusersdir=$(sed -n 's/^ROOTSEAL_SYSUSERS_DIR:PATH=//p' "$build/CMakeCache.txt")
  tmpfilesdir=$(sed -n 's/^ROOTSEAL_TMPFILES_DIR:PATH=//p' "$build/CMakeCache.txt")
  sysconfdir=$prefix/etc; [[ "$prefix" == /usr ]] && sysconfdir=/etc
  want=("$prefix/bin/rootseald" "$unitdir/rootseald.service" "$sysusersdir/rootseal.conf"
        "$tmpfilesdir/rootseal.conf" "$sysconfdir/rootseal/rootseald.yaml"
        "$prefix/share/man/man8/rootseald.8" "$prefix/share/bash-completion/completions/rootseald"
        "$prefix/share/doc/rootseal/configuration.md" "$prefix/share/doc/rootseal/operations.md"
        "$prefix/share/doc/rootseal/packaging.md"
        "$prefix/share/doc/rootseal/examples/rootseald-usb-hsm.conf.example"
        "$prefix/share/doc/rootseal/examples/rootseald-tpm.conf.example")
  # The CLI (and its man page) once cli/ defines the `rootseal` executable.
  if grep -q 'add_executable(rootseal ' "$src/cli/CMakeLists.txt"; then
    want+=("$prefix/bin/rootseal" "$prefix/share/man/man1/rootseal.1" "$prefix/share/bash-completion/completions/rootseal")
  fi
  for f in "${want[@]}"; do
    [[ -f "$dest$f" ]] && pass "cmake --install: $f" || fail "cmake --install did not install $f"
  done
  [[ -x "$dest$prefix/bin/rootseald" ]] || fail "rootseald is not executable after install"
  cmp -s "$dest$unitdir/rootseald.service" "$src/systemd/rootseald.service" \
    || fail "the installed unit differs from systemd/rootseald.service"
  outside=$(cd "$dest" && find . -type f | sed 's#^\.##' | grep -v -e "^$prefix/" -e "^$unitdir/" -e "^$sysconfdir/" \
    -e "^$sysusersdir/" -e "^$tmpfilesdir/" || true)
  [[ -z "$outside" ]] && pass "nothing installed outside the prefix and systemd's folders" \
    || fail "installed outside the expected folders: $outside"
else
  fail "cmake --install failed:"; sed 's/^/    /' "$tmp/install.log"
fi

echo "$passes passed, $failures failed"
((failures == 0))
