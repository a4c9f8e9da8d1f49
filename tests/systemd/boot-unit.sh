#!/usr/bin/env bash
# Runs rootseald under its real unit and real systemd (252, as PID 1 of a
# systemd-nspawn container) and checks what `systemd-analyze` cannot: that the
# sandbox lets the daemon work. The container's root is a copy-on-write
# overlay of this host's / (upper layer on a tmpfs, private mount namespace),
# so the host is never changed; it has no network but its own loopback.
#
# Laid out as the package lays it out (unit, sysusers.d, tmpfiles.d, default
# config), plus the documented drop-ins rootseald-softhsm.conf.example and
# rootseald-credential.conf.example: a SoftHSM2 token owned by _rootseal, the
# PIN as a host-key-encrypted credential. Then, inside:
#   systemctl start (returns after READY=1), unsealed through the credential,
#   the sandbox in /proc/PID/status (uid, NoNewPrivs, seccomp, no
#   capabilities, locked memory), watchdog pings (WatchdogSec=2s drop-in),
#   systemctl reload (same PID, still active), systemctl stop (clean exit),
#   and no system call killed by the filter.
# Usage: boot-unit.sh SOURCE_DIR ROOTSEALD_BINARY    (root; systemd-nspawn)
set -uo pipefail

src=${1:?source dir}
rootseald=$(readlink -f "${2:?rootseald binary}")

if (($(id -u) != 0)); then echo "SKIP - needs root (mount namespace, overlay, nspawn)"; exit 77; fi
command -v systemd-nspawn >/dev/null || { echo "FAIL - systemd-nspawn not found (scripts/install-deps installs systemd-container)"; exit 1; }
if [[ "${ROOTSEAL_BOOT_NS:-}" != 1 ]]; then
  ROOTSEAL_BOOT_NS=1 exec unshare --mount --propagation private -- bash "$0" "$src" "$rootseald"
fi

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "ok   - $*"; }
fail() { failures=$((failures + 1)); echo "FAIL - $*"; }

t=$(mktemp -d /tmp/rootseal-boot.XXXXXX)
trap 'umount -R "$t" 2>/dev/null || umount -R -l "$t" 2>/dev/null; rm -rf "$t"' EXIT
mount -t tmpfs -o mode=0700 rootseal-boot "$t"
mkdir -p "$t/upper" "$t/work" "$t/root"
R=$t/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$R"
mountpoint -q "$R" || { echo "FAIL - overlay not mounted"; exit 1; }

# --- lay out the package's files, as its postinst would leave them ----------
install -m 0755 "$rootseald" "$R/usr/bin/rootseald"
install -D -m 0644 "$src/systemd/rootseald.service" "$R/lib/systemd/system/rootseald.service"
install -D -m 0644 "$src/systemd/rootseal.sysusers" "$R/usr/lib/sysusers.d/rootseal.conf"
install -D -m 0644 "$src/systemd/rootseal.tmpfiles" "$R/usr/lib/tmpfiles.d/rootseal.conf"
install -D -m 0644 "$src/packaging/rootseald.yaml" "$R/etc/rootseal/rootseald.yaml"
dropins=$R/etc/systemd/system/rootseald.service.d
install -D -m 0644 "$src/systemd/rootseald-softhsm.conf.example" "$dropins/softhsm.conf"
install -D -m 0644 "$src/systemd/rootseald-credential.conf.example" "$dropins/credential.conf"
# Watchdog pings every second, so that the test sees several.
printf '[Service]\nWatchdogSec=2s\n' >"$dropins/zz-test-watchdog.conf"

# A token of our own (a label no other test uses) and a root key generated in it.
label=rs-boot-$$
sed -i -e "s/^  token_label: rootseal\$/  token_label: $label/" -e 's/^  generate_key: false$/  generate_key: true/' \
  "$R/etc/rootseal/rootseald.yaml"
grep -q "token_label: $label" "$R/etc/rootseal/rootseald.yaml" && grep -q 'generate_key: true' "$R/etc/rootseal/rootseald.yaml" \
  || { echo "FAIL - packaging/rootseald.yaml changed shape (token_label, generate_key)"; exit 1; }

mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for node in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9"; do
  read -r name major minor <<<"$node"; mknod -m 0666 "$R/dev/$name" c "$major" "$minor"
done
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
prep=$t/prep.log
{
  in_root systemd-sysusers rootseal.conf &&
  in_root systemd-tmpfiles --create rootseal.conf &&
  in_root setpriv --reuid=_rootseal --regid=_rootseal --groups=softhsm -- \
    softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$pin$pin" &&
  in_root systemd-creds setup &&
  in_root install -d -m 0700 /etc/credstore.encrypted &&
  printf %s "$pin" | in_root systemd-creds encrypt --name=hsm-pin --with-key=host - /etc/credstore.encrypted/hsm-pin
} >"$prep" 2>&1 || { echo "FAIL - preparing the root:"; sed 's/^/    /' "$prep"; exit 1; }
umount "$R/proc" "$R/dev"
pass "root prepared: _rootseal, folders, SoftHSM2 token '$label', encrypted hsm-pin credential"

# --- what runs inside ----------------------------------------------------------
cat >"$R/var/tmp/rs-check.sh" <<'CHECK'
#!/bin/bash
# Runs inside the container as a oneshot service; writes key=value lines.
out=/var/tmp/rs-result
exec >"$out.tmp" 2>&1
say() { echo "$1=$2"; }
show() { systemctl show -p "$1" --value rootseald.service; }
SECONDS=0
systemctl start rootseald.service; say start_rc $?
say start_seconds $SECONDS
say active "$(systemctl is-active rootseald.service)"
say status_text "$(show StatusText)"
say watchdog_usec "$(show WatchdogUSec)"
pid=$(show MainPID)
say main_pid "$pid"
code=000
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:8200/v1/sys/health)
  [[ "$code" == 200 ]] && break
  sleep 0.2
done
say health "$code"
say seal_status "$(curl -s --max-time 2 http://127.0.0.1:8200/v1/sys/seal-status | tr -d '\n')"
say uid "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)"
say expected_uid "$(id -u _rootseal)"
say nonewprivs "$(awk '/^NoNewPrivs:/ {print $2}' /proc/$pid/status)"
say seccomp "$(awk '/^Seccomp:/ {print $2}' /proc/$pid/status)"
say capeff "$(awk '/^CapEff:/ {print $2}' /proc/$pid/status)"
say capbnd "$(awk '/^CapBnd:/ {print $2}' /proc/$pid/status)"
say vmlck_kb "$(awk '/^VmLck:/ {print $2}' /proc/$pid/status)"
say memlock_limit "$(awk '/^Max locked memory/ {print $4}' /proc/$pid/limits)"
say pid1_memlock "$(awk '/^Max locked memory/ {print $4" "$5}' /proc/1/limits)"
say state_mode "$(stat -c '%a %U' /var/lib/rootseal)"
say db_mode "$(stat -c '%a %U' /var/lib/rootseal/rootseal.db 2>/dev/null)"
w1=$(show WatchdogTimestampMonotonic); sleep 2.5; w2=$(show WatchdogTimestampMonotonic)
say watchdog_pinged "$([[ -n "$w1" && "$w2" != "$w1" && "$w2" != 0 ]] && echo yes || echo "no ($w1 -> $w2)")"
systemctl reload rootseald.service; say reload_rc $?
sleep 1
say active_after_reload "$(systemctl is-active rootseald.service)"
say pid_after_reload "$(show MainPID)"
say health_after_reload "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:8200/v1/sys/health)"
SECONDS=0
systemctl stop rootseald.service; say stop_rc $?
say stop_seconds $SECONDS
say result "$(show Result)"
say exec_main_status "$(show ExecMainStatus)"
say n_restarts "$(show NRestarts)"
journalctl -u rootseald.service -o short-monotonic --no-pager >/var/tmp/rs-journal 2>&1
say killed_by_filter "$(grep -c -e 'status=31/SYS' -e 'Bad system call' /var/tmp/rs-journal)"
mv "$out.tmp" "$out"
systemctl poweroff --no-block
CHECK
cat >"$R/etc/systemd/system/rs-check.service" <<'UNIT'
[Unit]
Description=rootseal boot test
[Service]
Type=oneshot
ExecStart=/bin/bash /var/tmp/rs-check.sh
TimeoutStartSec=240
UNIT
cat >"$R/etc/systemd/system/rs-test.target" <<'UNIT'
[Unit]
Description=rootseal boot test
Wants=rs-check.service
AllowIsolate=yes
UNIT

# --- boot ---------------------------------------------------------------------
# nspawn's own seccomp filter allows mlock only to a container holding
# CAP_IPC_LOCK (PID 1's bounding set; rootseald itself still has no capability).
# PID 1 inherits this shell's RLIMIT_MEMLOCK, the ceiling for LimitMEMLOCK=.
SECONDS=0
timeout 280 systemd-nspawn --quiet --directory="$R" --register=no --keep-unit --link-journal=no \
  --private-network --capability=CAP_IPC_LOCK \
  --boot -- systemd.unit=rs-test.target >"$t/boot.log" 2>&1
nspawn_rc=$?
echo "# container ran for ${SECONDS}s (systemd-nspawn exit $nspawn_rc)"
if [[ ! -f "$R/var/tmp/rs-result" ]]; then
  fail "no result from inside the container"
  tail -40 "$t/boot.log" | sed 's/^/    /'
  [[ -f "$R/var/tmp/rs-result.tmp" ]] && sed 's/^/    partial: /' "$R/var/tmp/rs-result.tmp"
  echo "$passes passed, $failures failed"
  exit 1
fi
declare -A r
while IFS='=' read -r k v; do [[ -n "$k" ]] && r[$k]=$v; done <"$R/var/tmp/rs-result"
expect() {  # expect KEY WANT DESCRIPTION
  if [[ "${r[$1]-}" == "$2" ]]; then pass "$3 ($1=$2)"; else fail "$3: $1 is '${r[$1]-}', want '$2'"; fi
}
expect start_rc 0 "systemctl start returned (READY=1 received)"
expect active active "the service is active"
[[ -n "${r[status_text]-}" ]] && pass "STATUS= sent: '${r[status_text]}'" || fail "no STATUS= text"
expect watchdog_usec 2s "WatchdogSec= applied"
expect health 200 "unsealed through the SoftHSM2 drop-in and the encrypted PIN credential (/v1/sys/health)"
expect uid "${r[expected_uid]-x}" "runs as _rootseal"
expect nonewprivs 1 "NoNewPrivileges"
expect seccomp 2 "a seccomp filter is applied"
expect capeff 0000000000000000 "no effective capability"
expect capbnd 0000000000000000 "empty capability bounding set"
[[ "${r[vmlck_kb]-0}" -gt 0 ]] 2>/dev/null && pass "key memory is locked (VmLck ${r[vmlck_kb]} kB)" \
  || fail "no locked memory (VmLck '${r[vmlck_kb]-}')"
# LimitMEMLOCK=64M, or PID 1's own hard limit when that is lower (systemd
# then applies the closest value; root without CAP_SYS_RESOURCE, as in some
# VMs, cannot raise it).
read -r _ pid1_hard <<<"${r[pid1_memlock]-0 0}"
want_memlock=67108864
[[ "$pid1_hard" =~ ^[0-9]+$ ]] && ((pid1_hard < want_memlock)) && want_memlock=$pid1_hard
expect memlock_limit "$want_memlock" "LimitMEMLOCK=64M applied (PID 1's hard limit: $pid1_hard)"
expect state_mode "700 _rootseal" "/var/lib/rootseal"
expect db_mode "600 _rootseal" "/var/lib/rootseal/rootseal.db"
expect watchdog_pinged yes "watchdog pings arrive (WatchdogTimestamp moves)"
expect reload_rc 0 "systemctl reload"
expect active_after_reload active "active after reload"
expect pid_after_reload "${r[main_pid]-x}" "reload kept the process"
expect health_after_reload 200 "still unsealed after reload"
expect stop_rc 0 "systemctl stop"
expect result success "stopped cleanly (Result=success)"
expect exec_main_status 0 "exit status 0"
expect n_restarts 0 "never restarted (no watchdog kill, no crash)"
expect killed_by_filter 0 "no process killed by the system call filter"
echo "# PID 1 RLIMIT_MEMLOCK: ${r[pid1_memlock]-?}"
echo "# start ${r[start_seconds]-?}s, stop ${r[stop_seconds]-?}s; seal-status: ${r[seal_status]-}"
if ((failures > 0)); then
  echo "# journal of rootseald.service:"
  sed 's/^/    /' "$R/var/tmp/rs-journal" 2>/dev/null | tail -40
fi
echo "$passes passed, $failures failed"
((failures == 0))
