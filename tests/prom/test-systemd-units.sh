#!/usr/bin/env bash
# contrib/systemd: `systemd-analyze verify` accepts the units with nothing to
# say (an unknown key or a bad value is only a warning there, so any output
# fails), with ExecStart pointed at the built binary, and they run what the
# README promises: `cowpunch agent`, --once for the timer's service.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing: scripts/deps.sh test installs systemd"
[ -x "$build/cowpunch" ] || fail "$build/cowpunch is missing: run make first"
work=$(mktemp -d "${TMPDIR:-/tmp}/cowpunch-units.XXXXXX")
trap 'rm -rf "$work"' EXIT

units=(cowpunch-agent.service cowpunch-reclaim.service cowpunch-reclaim.timer)
for u in "${units[@]}"; do
	[ -f "$root/contrib/systemd/$u" ] || fail "contrib/systemd/$u is missing"
	sed "s|/usr/sbin/cowpunch|$build/cowpunch|" "$root/contrib/systemd/$u" >"$work/$u"
done
out=$(cd "$work" && systemd-analyze verify --man=no "${units[@]}" 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify has remarks: $out"

grep -q '^ExecStart=/usr/sbin/cowpunch agent ' "$root/contrib/systemd/cowpunch-agent.service" ||
	fail "cowpunch-agent.service does not run /usr/sbin/cowpunch agent"
grep -q '^ExecStart=/usr/sbin/cowpunch agent --once ' "$root/contrib/systemd/cowpunch-reclaim.service" ||
	fail "cowpunch-reclaim.service does not run /usr/sbin/cowpunch agent --once"
grep -q '^Type=oneshot' "$root/contrib/systemd/cowpunch-reclaim.service" ||
	fail "cowpunch-reclaim.service is not Type=oneshot"
# Hardening that would cut the agent off from loop and device-mapper must not creep in.
for bad in PrivateDevices=yes PrivateDevices=true DeviceAllow= ProtectClock=yes PrivateIPC=yes; do
	! grep -q "^$bad" "$root"/contrib/systemd/*.service ||
		fail "contrib/systemd sets $bad, which blocks /dev/loop* or /dev/mapper/control"
done
echo "ok: ${units[*]} verify clean"
