#!/usr/bin/env bash
# Checks systemd/rootseald.service and its companions, offline (systemd need
# not be PID 1; it is not in containers or CI):
#   1. the unit states what issue 8 asks for (notify, watchdog, user, folders,
#      sandbox directives) and runs /usr/bin/rootseald with the packaged config;
#   2. `systemd-analyze verify` is clean, with ExecStart= pointing at the
#      rootseald built in this tree (verify checks that the binary exists);
#   3. `systemd-analyze security --offline=yes` scores the unit at most
#      MAX_EXPOSURE (1.5), alone and with each documented drop-in, and a copy
#      stripped of the sandbox scores above it (the check can fail);
#   4. the sysusers.d and tmpfiles.d files create _rootseal and the folders
#      with the unit's modes in a scratch root.
# Usage: check-unit.sh SOURCE_DIR ROOTSEALD_BINARY
set -uo pipefail

src=${1:?source dir}
rootseald=$(readlink -f "${2:?rootseald binary}")
MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}
unit_src="$src/systemd/rootseald.service"

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "ok   - $*"; }
fail() { failures=$((failures + 1)); echo "FAIL - $*"; }

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL - $tool not found (scripts/install-deps installs systemd)"
    exit 1
  fi
done
[[ -x "$rootseald" ]] || { echo "FAIL - $rootseald is not an executable"; exit 1; }
echo "# $(systemd-analyze --version | head -1); PID 1 is $(cat /proc/1/comm 2>/dev/null || echo '?')"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. what the unit must say -------------------------------------------
# The value of the last assignment of KEY in [Service] (systemd's rule for
# single-valued settings), or "<unset>".
setting() {
  awk -v key="$1" '
    /^\[/ { section = $0; next }
    section == "[Service]" && index($0, key "=") == 1 { value = substr($0, length(key) + 2); found = 1 }
    END { if (found) print value; else print "<unset>" }' "$unit_src"
}
expect() {
  local key=$1 want=$2 got
  got=$(setting "$key")
  if [[ "$got" == "$want" ]]; then pass "$key=$want"; else fail "$key: want '$want', unit has '$got'"; fi
}
expect ExecStart "/usr/bin/rootseald --config /etc/rootseal/rootseald.yaml"
expect Type notify
expect NotifyAccess main
expect Restart on-failure
expect User _rootseal
expect Group _rootseal
expect StateDirectory rootseal
expect StateDirectoryMode 0700
expect RuntimeDirectory rootseal
expect ConfigurationDirectory rootseal
expect LogsDirectory rootseal
expect UMask 0077
expect CapabilityBoundingSet ""
expect AmbientCapabilities ""
for key in NoNewPrivileges ProtectHome PrivateTmp PrivateDevices ProtectKernelTunables ProtectKernelModules \
           ProtectKernelLogs ProtectClock ProtectControlGroups ProtectHostname RestrictNamespaces \
           RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute; do
  expect "$key" yes
done
expect ProtectSystem strict
expect ProtectProc invisible
expect ProcSubset pid
expect RestrictAddressFamilies "AF_UNIX AF_INET AF_INET6"
expect SystemCallArchitectures native
expect KeyringMode private
watchdog=$(setting WatchdogSec)
if [[ "$watchdog" =~ ^[0-9]+s$ ]] && ((${watchdog%s} >= 10)); then pass "WatchdogSec=$watchdog"
else fail "WatchdogSec: want a value of at least 10s, unit has '$watchdog'"; fi
memlock=$(setting LimitMEMLOCK)
if [[ "$memlock" =~ ^([0-9]+)M$ ]] && ((BASH_REMATCH[1] >= 16)); then pass "LimitMEMLOCK=$memlock"
else fail "LimitMEMLOCK: want at least 16M (locked key memory + request arenas), unit has '$memlock'"; fi
# The syscall filter: an allow-list of @system-service, minus @privileged and
# @resources, and nothing that removes @memlock (mlock for SecureBytes).
filters=$(awk '/^SystemCallFilter=/ { sub(/^SystemCallFilter=/, ""); print }' "$unit_src" | tr '\n' ' ')
[[ "$filters" == "@system-service ~@privileged @resources " ]] \
  && pass "SystemCallFilter=@system-service, ~@privileged @resources" \
  || fail "SystemCallFilter: want '@system-service' then '~@privileged @resources', unit has '$filters'"
# The calls rootseald needs for its locked memory and self-hardening must stay
# allowed: mlock/munlock (SecureBytes), madvise (MADV_DONTDUMP), prctl
# (PR_SET_DUMPABLE), prlimit64 (glibc's setrlimit, RLIMIT_CORE=0).
expand() {  # expand @GROUP...: every system call in the groups, nested groups expanded
  local item
  for item in "$@"; do
    if [[ "$item" == @* ]]; then
      expand $(systemd-analyze syscall-filter "$item" 2>/dev/null | sed -n '2,$p' | grep -v '^ *#' | tr -d ' ')
    else
      echo "$item"
    fi
  done
}
allowed=$(expand @system-service | sort -u)
denied=$(expand @privileged @resources | sort -u)
for call in mlock munlock madvise prctl prlimit64 mmap; do
  if grep -qx -- "$call" <<<"$allowed" && ! grep -qx -- "$call" <<<"$denied"; then pass "syscall $call allowed"
  else fail "syscall $call is not in @system-service minus @privileged @resources"; fi
done
for call in setuid capset setpriority; do
  if grep -qx -- "$call" <<<"$denied"; then pass "syscall $call denied"
  else fail "syscall $call is not denied by ~@privileged @resources"; fi
done
grep -q '^#LoadCredentialEncrypted=hsm-pin:/etc/credstore.encrypted/hsm-pin$' "$unit_src" \
  && grep -q 'systemd-creds encrypt --name=hsm-pin' "$unit_src" \
  && pass "LoadCredentialEncrypted=hsm-pin documented with its systemd-creds command" \
  || fail "the unit does not document LoadCredentialEncrypted=hsm-pin:/etc/credstore.encrypted/hsm-pin"

# --- 2. systemd-analyze verify ---------------------------------------------
mkdir -p "$tmp/unit"
unit="$tmp/unit/rootseald.service"
sed "s#^ExecStart=/usr/bin/rootseald #ExecStart=$rootseald #" "$unit_src" >"$unit"
if ! grep -q "^ExecStart=$rootseald --config /etc/rootseal/rootseald.yaml$" "$unit"; then
  fail "could not point ExecStart= at $rootseald"
fi

verify() {  # verify UNIT LABEL: no output at all and exit 0
  local out rc
  out=$(systemd-analyze verify --man=no "$1" 2>&1); rc=$?
  if ((rc == 0)) && [[ -z "$out" ]]; then pass "systemd-analyze verify ($2)"
  else fail "systemd-analyze verify ($2): exit $rc"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}
verify "$unit" "unit"

# --- 3. systemd-analyze security --offline=yes -----------------------------
# exposure UNIT: prints the overall exposure (e.g. 1.1), or nothing.
exposure() {
  systemd-analyze security --offline=yes "$1" 2>/dev/null |
    sed -n 's/^→ Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p'
}
# threshold in tenths, as systemd-analyze expects it (1.5 -> 15)
threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 + 0.5 }')
score_ok() {  # score_ok UNIT LABEL
  local score
  score=$(exposure "$1")
  if [[ -z "$score" ]]; then fail "security ($2): no 'Overall exposure level' line"; return; fi
  echo "# exposure ($2): $score"
  if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    pass "security ($2): exposure $score <= $MAX_EXPOSURE"
  else
    fail "security ($2): exposure $score > $MAX_EXPOSURE"
    systemd-analyze security --offline=yes "$1" 2>/dev/null | grep '✗' | sed 's/^/    /'
  fi
  if systemd-analyze security --offline=yes --threshold="$threshold" "$1" >/dev/null 2>&1; then
    pass "security ($2): --threshold=$threshold accepted"
  else
    fail "security ($2): --threshold=$threshold rejected the unit"
  fi
}
score_ok "$unit" "unit"

# Each documented drop-in, alone, as an administrator would install it.
for example in "$src"/systemd/rootseald-*.conf.example; do
  name=$(basename "$example" .conf.example); name=${name#rootseald-}
  rm -rf "$tmp/unit/rootseald.service.d"
  mkdir -p "$tmp/unit/rootseald.service.d"
  cp "$example" "$tmp/unit/rootseald.service.d/$name.conf"
  verify "$unit" "with $name.conf"
  score_ok "$unit" "with $name.conf"
done
rm -rf "$tmp/unit/rootseald.service.d"

# Negative control: without its sandbox the same unit must fail the check,
# so a systemd-analyze that scores everything 0 cannot pass this test.
bare="$tmp/bare/rootseald.service"
mkdir -p "$tmp/bare"
awk '/^\[/ || /^(Description|Type|ExecStart|User|Group|WantedBy)=/' "$unit" >"$bare"
bare_score=$(exposure "$bare")
if [[ -n "$bare_score" ]] && awk -v s="$bare_score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }' &&
   ! systemd-analyze security --offline=yes --threshold="$threshold" "$bare" >/dev/null 2>&1; then
  pass "negative control: the unit without its sandbox scores $bare_score and fails the threshold"
else
  fail "negative control: the unsandboxed unit scored '${bare_score:-none}' or passed --threshold=$threshold"
fi

# --- 4. sysusers.d and tmpfiles.d in a scratch root ------------------------
root="$tmp/root"
mkdir -p "$root/etc"
: >"$root/etc/passwd"; : >"$root/etc/group"
if systemd-sysusers --root="$root" "$src/systemd/rootseal.sysusers" >"$tmp/sysusers.log" 2>&1; then
  entry=$(grep '^_rootseal:' "$root/etc/passwd")
  IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
  if [[ -n "$entry" && "$uid" -gt 0 && "$uid" -lt 1000 && "$home" == /var/lib/rootseal && "$shell" == */nologin ]] &&
     grep -q "^_rootseal:x:$gid:" "$root/etc/group"; then
    pass "sysusers: system user _rootseal ($entry)"
  else
    fail "sysusers: unexpected account '$entry'"
  fi
else
  fail "systemd-sysusers failed: $(cat "$tmp/sysusers.log")"
fi
if systemd-tmpfiles --root="$root" --create "$src/systemd/rootseal.tmpfiles" >"$tmp/tmpfiles.log" 2>&1; then
  for want in "/var/lib/rootseal 700 $uid" "/var/log/rootseal 750 $uid"; do
    read -r path mode owner <<<"$want"
    got=$(stat -c '%a %u' "$root$path" 2>/dev/null)
    [[ "$got" == "$mode $owner" ]] && pass "tmpfiles: $path $mode _rootseal" \
      || fail "tmpfiles: $path is '${got:-missing}', want '$mode $owner'"
  done
else
  fail "systemd-tmpfiles failed: $(cat "$tmp/tmpfiles.log")"
fi
# The unit and the tmpfiles.d file agree on the modes.
[[ "$(setting LogsDirectoryMode)" == 0750 ]] && pass "LogsDirectoryMode=0750 matches tmpfiles.d" \
  || fail "LogsDirectoryMode '$(setting LogsDirectoryMode)' does not match tmpfiles.d (0750)"

echo "$passes passed, $failures failed"
((failures == 0))
