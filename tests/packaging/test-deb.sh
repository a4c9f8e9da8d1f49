#!/usr/bin/env bash
# Installs, upgrades, removes and purges the `rootseal` package in a throwaway
# root, never on this host: a copy-on-write overlay of this Debian 12 system
# (lower: /, upper: a tmpfs under /tmp) in a private mount namespace, entered
# with chroot. dpkg there works on the overlay's copy of its database, so the
# package's dependencies are checked against this system's packages; nothing
# runs systemd there (/run is empty, policy-rc.d denies starts), so no
# service starts. Everything vanishes when the script exits. No network.
#
#   tests/packaging/test-deb.sh [DEB_DIR]     (default build/deb; `make test-deb`)
#
# Needs root (mount, chroot) and the package from `make deb` in DEB_DIR.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
deb_dir=$(cd "${1:-$top/build/deb}" 2>/dev/null && pwd) || { echo "test-deb: no folder ${1:-build/deb}: run make deb" >&2; exit 1; }

if (($(id -u) != 0)); then
  echo "test-deb: needs root (mount namespace, overlay, chroot)" >&2
  exit 1
fi
if [[ "${ROOTSEAL_TEST_DEB_NS:-}" != 1 ]]; then
  # Private mount namespace: every mount below disappears with this process.
  ROOTSEAL_TEST_DEB_NS=1 exec unshare --mount --propagation private -- bash "$0" "$deb_dir"
fi

shopt -s nullglob
debs=("$deb_dir"/rootseal_*.deb)
((${#debs[@]} == 1)) || { echo "test-deb: want one rootseal_*.deb in $deb_dir, found ${#debs[@]}: run make deb" >&2; exit 1; }
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "ok   - $*"; }
fail() { failures=$((failures + 1)); echo "FAIL - $*"; }
check() {  # check DESCRIPTION COMMAND...   (the command runs on the host side)
  local what=$1; shift
  if "$@" >/dev/null; then pass "$what"; else fail "$what"; fi
}

# --- the throwaway root ------------------------------------------------------
t=$(mktemp -d /tmp/rootseal-test-deb.XXXXXX)
trap 'umount -R "$t" 2>/dev/null || umount -R -l "$t" 2>/dev/null; rm -rf "$t"' EXIT
mount -t tmpfs -o mode=0700 rootseal-test-deb "$t"
mkdir -p "$t/upper" "$t/work" "$t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
R=$t/root
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for node in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9"; do
  read -r name type major minor <<<"$node"
  mknod -m 0666 "$R/dev/$name" "$type" "$major" "$minor"
done
ln -s /proc/self/fd "$R/dev/fd"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
mkdir -p "$R/tmp/debs"

in_root() {  # in_root COMMAND...: run in the throwaway root
  chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
dpkg_in_root() {  # dpkg_in_root LOG ARGS...
  local log=$1; shift
  in_root dpkg --force-confdef --force-confold "$@" >"$log" 2>&1
}

echo "# throwaway root: overlay of / at $R; package $(basename "$deb")"
if in_root dpkg-query -W -f='${Status}' rootseal 2>/dev/null | grep -q installed; then
  echo "test-deb: rootseal is installed on this host already; the test needs a host without it" >&2
  exit 1
fi
[[ -e "$R/etc/rootseal" || -e "$R/var/lib/rootseal" ]] && { echo "test-deb: /etc/rootseal or /var/lib/rootseal exists on this host" >&2; exit 1; }

# --- the packages: v1 from make deb, two later versions repacked from it ------
repack() {  # repack NEW_VERSION CHANGE_CONFFILE(yes/no) OUT
  local dir="$t/repack.$1"
  dpkg-deb -R "$deb" "$dir"
  sed -i "s/^Version: .*/Version: $1/" "$dir/DEBIAN/control"
  if [[ "$2" == yes ]]; then
    printf '\n# A new option documented in version %s.\n' "$1" >>"$dir/etc/rootseal/rootseald.yaml"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | grep -v '^etc/' | sort | xargs md5sum) >"$dir/DEBIAN/md5sums"
  fi
  dpkg-deb --root-owner-group -b "$dir" "$3" >/dev/null
}
v2="$version+test1"; v3="$version+test2"
cp "$deb" "$R/tmp/debs/v1.deb"
repack "$v2" no "$R/tmp/debs/v2.deb"
repack "$v3" yes "$R/tmp/debs/v3.deb"
dpkg --compare-versions "$v3" gt "$v2" && dpkg --compare-versions "$v2" gt "$version" || { echo "bad test versions" >&2; exit 1; }

status_of() { in_root dpkg-query -W -f='${Status} ${Version}' rootseal 2>/dev/null; }
mode_owner() { in_root stat -c '%a %U:%G' "$1" 2>/dev/null; }

# --- 1. install ---------------------------------------------------------------
if dpkg_in_root "$t/install.log" -i /tmp/debs/v1.deb; then pass "dpkg -i rootseal $version"
else fail "dpkg -i rootseal $version:"; sed 's/^/    /' "$t/install.log"; fi
check "status: install ok installed $version" test "$(status_of)" = "install ok installed $version"
user=$(in_root getent passwd _rootseal)
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
check "postinst created the system user _rootseal ($user)" \
  test -n "$user" -a "${uid:-0}" -gt 0 -a "${uid:-1000}" -lt 1000 -a "$shell" = /usr/sbin/nologin
check "postinst created the group _rootseal" in_root getent group _rootseal
check "/var/lib/rootseal is 700 _rootseal:_rootseal" test "$(mode_owner /var/lib/rootseal)" = "700 _rootseal:_rootseal"
check "/var/log/rootseal is 750 _rootseal:_rootseal" test "$(mode_owner /var/log/rootseal)" = "750 _rootseal:_rootseal"
check "/etc/rootseal/rootseald.yaml is 644 root:root" test "$(mode_owner /etc/rootseal/rootseald.yaml)" = "644 root:root"
conffiles=$(in_root dpkg-query -W -f='${Conffiles}' rootseal)
check "/etc/rootseal/rootseald.yaml is a conffile" grep -q '^ /etc/rootseal/rootseald.yaml ' <<<"$conffiles"
for f in /usr/bin/rootseald /lib/systemd/system/rootseald.service /usr/lib/sysusers.d/rootseal.conf \
         /usr/lib/tmpfiles.d/rootseal.conf /usr/share/man/man8/rootseald.8.gz \
         /usr/share/doc/rootseal/copyright /usr/share/doc/rootseal/examples/rootseald-usb-hsm.conf.example; do
  check "installed $f" test -f "$R$f"
done
contents=$(dpkg-deb -c "$deb")
if grep -q ' \./usr/bin/rootseal$' <<<"$contents"; then
  check "installed /usr/bin/rootseal" test -x "$R/usr/bin/rootseal"
  check "installed /usr/share/man/man1/rootseal.1.gz" test -f "$R/usr/share/man/man1/rootseal.1.gz"
else
  echo "# the package has no /usr/bin/rootseal (the CLI target did not exist when it was built)"
fi
check "rootseald --version runs in the root and says $version" \
  bash -c "[[ \$(chroot '$R' /usr/bin/rootseald --version 2>&1) == *'${version%%+*}'* ]]"
check "systemd-analyze verify of the installed unit is clean" \
  bash -c "[[ -z \$(chroot '$R' systemd-analyze verify --man=no /lib/systemd/system/rootseald.service 2>&1) ]]"
check "the unit is installed disabled (no multi-user.target.wants link)" \
  test ! -e "$R/etc/systemd/system/multi-user.target.wants/rootseald.service"
check "postinst registered the unit with deb-systemd-helper (restart on upgrade once enabled)" \
  test -f "$R/var/lib/systemd/deb-systemd-helper-enabled/rootseald.service.dsh-also"
started_in_root() {
  local pid
  for pid in $(pgrep -x rootseald); do [[ "$(readlink "/proc/$pid/root")" == "$R" ]] && return 0; done
  return 1
}
if started_in_root; then fail "a rootseald process runs in the throwaway root"; else pass "no rootseald process was started"; fi

# What an operator does after installing: edit the configuration, run it
# (state and audit log appear), keep a PIN file.
in_root sed -i 's/^  level: info$/  level: debug/' /etc/rootseal/rootseald.yaml
printf '# local change\n' >>"$R/etc/rootseal/rootseald.yaml"
local_sum=$(md5sum <"$R/etc/rootseal/rootseald.yaml")
in_root install -o _rootseal -g _rootseal -m 0600 /dev/null /var/lib/rootseal/rootseal.db
echo state >"$R/var/lib/rootseal/rootseal.db"
in_root install -o _rootseal -g _rootseal -m 0600 /dev/null /var/log/rootseal/audit.log
in_root install -o _rootseal -g _rootseal -m 0400 /dev/null /etc/rootseal/hsm-pin
in_root systemctl enable rootseald.service >"$t/enable.log" 2>&1
check "systemctl enable (offline) links the unit" test -L "$R/etc/systemd/system/multi-user.target.wants/rootseald.service"

# --- 2. upgrade, packaged conffile unchanged ------------------------------------
if dpkg_in_root "$t/upgrade1.log" -i /tmp/debs/v2.deb; then pass "upgrade to $v2"
else fail "upgrade to $v2:"; sed 's/^/    /' "$t/upgrade1.log"; fi
check "status: install ok installed $v2" test "$(status_of)" = "install ok installed $v2"
check "upgrade kept the modified conffile" test "$(md5sum <"$R/etc/rootseal/rootseald.yaml")" = "$local_sum"
check "upgrade did not prompt or write .dpkg-dist (packaged conffile unchanged)" \
  bash -c "! ls '$R'/etc/rootseal/*.dpkg-* >/dev/null 2>&1 && ! grep -q 'Configuration file' '$t/upgrade1.log'"
check "upgrade kept the state and the audit log" test -s "$R/var/lib/rootseal/rootseal.db" -a -f "$R/var/log/rootseal/audit.log"
check "upgrade kept the user's uid" test "$(in_root getent passwd _rootseal | cut -d: -f3)" = "$uid"
check "upgrade kept the unit enabled" test -L "$R/etc/systemd/system/multi-user.target.wants/rootseald.service"

# --- 3. upgrade, packaged conffile changed (dpkg's conffile prompt) ------------
if dpkg_in_root "$t/upgrade2.log" -i /tmp/debs/v3.deb; then pass "upgrade to $v3 (changed conffile; --force-confold)"
else fail "upgrade to $v3:"; sed 's/^/    /' "$t/upgrade2.log"; fi
check "status: install ok installed $v3" test "$(status_of)" = "install ok installed $v3"
check "the operator's version of the conffile is kept" test "$(md5sum <"$R/etc/rootseal/rootseald.yaml")" = "$local_sum"
check "the new packaged version is left beside it as rootseald.yaml.dpkg-dist" \
  grep -q "documented in version $v3" "$R/etc/rootseal/rootseald.yaml.dpkg-dist"
check "the state survived both upgrades" test "$(cat "$R/var/lib/rootseal/rootseal.db")" = state

# --- 4. remove ------------------------------------------------------------------
if dpkg_in_root "$t/remove.log" -r rootseal; then pass "dpkg -r rootseal"
else fail "dpkg -r rootseal:"; sed 's/^/    /' "$t/remove.log"; fi
check "status: deinstall ok config-files" bash -c "[[ \"\$(chroot '$R' dpkg-query -W -f='\${Status}' rootseal)\" == 'deinstall ok config-files' ]]"
check "remove deleted /usr/bin/rootseald and the unit" test ! -e "$R/usr/bin/rootseald" -a ! -e "$R/lib/systemd/system/rootseald.service"
check "remove kept the conffile" test "$(md5sum <"$R/etc/rootseal/rootseald.yaml")" = "$local_sum"
check "remove kept the state and the audit log" test -s "$R/var/lib/rootseal/rootseal.db" -a -f "$R/var/log/rootseal/audit.log"

# --- 5. purge ---------------------------------------------------------------------
if dpkg_in_root "$t/purge.log" -P rootseal; then pass "dpkg -P rootseal"
else fail "dpkg -P rootseal:"; sed 's/^/    /' "$t/purge.log"; fi
check "status: not installed" bash -c "! chroot '$R' dpkg-query -W -f='\${Status}' rootseal 2>/dev/null | grep -q 'ok'"
check "purge removed the conffile and its .dpkg-dist" test ! -e "$R/etc/rootseal/rootseald.yaml" -a ! -e "$R/etc/rootseal/rootseald.yaml.dpkg-dist"
check "purge removed /var/lib/rootseal" test ! -e "$R/var/lib/rootseal"
check "purge removed /var/log/rootseal" test ! -e "$R/var/log/rootseal"
check "purge removed the enablement link" test ! -e "$R/etc/systemd/system/multi-user.target.wants/rootseald.service"
check "purge left the operator's /etc/rootseal/hsm-pin alone" test -f "$R/etc/rootseal/hsm-pin"
check "purge kept the system user _rootseal (Debian practice)" test "$(in_root getent passwd _rootseal | cut -d: -f3)" = "$uid"

# --- 6. reinstall; purge with the state folder moved behind a symbolic link ----
rm -f "$R/etc/rootseal/hsm-pin"
if dpkg_in_root "$t/reinstall.log" -i /tmp/debs/v1.deb; then pass "reinstall after purge"
else fail "reinstall after purge:"; sed 's/^/    /' "$t/reinstall.log"; fi
check "reinstall reused the user's uid" test "$(in_root getent passwd _rootseal | cut -d: -f3)" = "$uid"
check "reinstall recreated /var/lib/rootseal 700" test "$(mode_owner /var/lib/rootseal)" = "700 _rootseal:_rootseal"
mkdir -p "$R/srv/rootseal-state"
echo keep >"$R/srv/rootseal-state/rootseal.db"
rm -rf "$R/var/lib/rootseal"
ln -s /srv/rootseal-state "$R/var/lib/rootseal"
if dpkg_in_root "$t/purge2.log" -P rootseal; then pass "dpkg -P with /var/lib/rootseal a symbolic link"
else fail "dpkg -P with a symbolic link:"; sed 's/^/    /' "$t/purge2.log"; fi
check "purge removed the link, not what it points to" \
  test ! -L "$R/var/lib/rootseal" -a "$(cat "$R/srv/rootseal-state/rootseal.db" 2>/dev/null)" = keep

echo "$passes passed, $failures failed"
((failures == 0))
