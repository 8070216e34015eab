# A live udev, as on a real host: cowpunch finds /run/udev/control answered, turns libdm's
# udev sync on, and every create/resume/remove waits for udev through a cookie that the dm
# udev rules (95-dm-notify.rules: `dmsetup udevcomplete`) release.  Checks that nothing
# hangs, that udev saw each device (its dm properties), that no cookie (a SysV semaphore) is
# left behind after any command, and that the nodes come and go with the devices.
need_cowpunch create detach attach destroy
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
unset DM_DISABLE_UDEV

udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || fail "$udevd is missing from the initramfs (scripts/deps.sh vm installs udev)"
"$udevd" --daemon --resolve-names=never || fail "systemd-udevd did not start"
# stop_udevd: udevd daemonised into its own session, so the test bed's end-of-scenario kill
# does not reach it: stop it, wait until it no longer answers, and remove /run/udev, so that
# the scenarios after this one run without udev, as they expect.
stop_udevd() {
	udevadm control --exit >/dev/null 2>&1 || true
	_t=0
	while udevadm control --ping --timeout=1 >/dev/null 2>&1; do
		_t=$((_t + 1))
		[ "$_t" -lt 20 ] || break
		sleep 0.5
	done
	rm -rf /run/udev
}
trap stop_udevd EXIT
timeout 20 udevadm control --ping || fail "udevd does not answer on /run/udev/control"
log "systemd-udevd $(udevadm --version) answers"

# no_cookies WHEN: every udev cookie (semaphore) libdm took since the start has been
# released (cookies left by earlier scenarios' killed commands do not count).
cookies() { dmsetup udevcookies 2>/dev/null | tail -n +2 | awk '{print $1}' | sort; }
cookies >"$TMPWORK/cookies-before"
no_cookies() {
	_left=
	for _c in $(cookies); do
		grep -qxF "$_c" "$TMPWORK/cookies-before" || _left="$_left $_c"
	done
	[ -z "$_left" ] || fail "udev cookies left after $1: $_left"
	log "ok: no udev cookie left after $1"
}
# udev_saw NAME: udev processed the dm device NAME with the dm rules (DM_NAME in its database).
udev_saw() {
	timeout 30 udevadm settle || fail "udevadm settle timed out"
	_p=$(udevadm info --query=property --name="/dev/mapper/$1" 2>&1) || fail "udevadm info $1: $_p"
	echo "$_p" | grep -qx "DM_NAME=$1" || fail "udev's database lacks DM_NAME=$1: $_p"
	# The event carried libdm's cookie (the rules import its flags from it): synced with udev.
	echo "$_p" | grep -qx "DM_UDEV_PRIMARY_SOURCE_FLAG=1" ||
		fail "$1: udev's event had no libdm cookie (udev sync off?): $_p"
	# The node is udev's symlink (55-dm.rules), not one libdm made itself.
	[ -L "/dev/mapper/$1" ] || fail "/dev/mapper/$1 is not udev's symlink: libdm made it"
	log "ok: udev knows $1 and made its node, synced by a cookie"
}

rc=0
dev=$(timeout 60 cowpunch create u1 --base "$base" --size 8M) || rc=$?
assert_eq 0 "$rc" "cowpunch create with udev running"
[ -b "$dev" ] || fail "$dev is not a block device"
udev_saw base-u1
udev_saw overlay-u1
no_cookies create
# The disk works through the node udev made.
dd if=/dev/urandom of="$WORK/data" bs=4096 count=16 2>/dev/null
dd if="$WORK/data" of="$dev" bs=4096 seek=100 conv=fsync 2>/dev/null || fail "write to $dev"

assert_rc 0 timeout 60 cowpunch detach u1
timeout 30 udevadm settle || fail "udevadm settle timed out"
[ ! -e /dev/mapper/overlay-u1 ] || fail "/dev/mapper/overlay-u1 outlived detach"
no_cookies detach

rc=0
dev=$(timeout 60 cowpunch attach u1) || rc=$?
assert_eq 0 "$rc" "cowpunch attach with udev running"
udev_saw overlay-u1
no_cookies attach
dd if="$dev" of="$WORK/back" bs=4096 skip=100 count=16 2>/dev/null || fail "read back from $dev"
cmp -s "$WORK/data" "$WORK/back" || fail "data written before detach reads back different"
log "ok: data intact across detach/attach"

assert_rc 0 timeout 60 cowpunch destroy u1
timeout 30 udevadm settle || fail "udevadm settle timed out"
[ ! -e /dev/mapper/overlay-u1 ] || fail "/dev/mapper/overlay-u1 outlived destroy"
[ ! -e /dev/mapper/base-u1 ] || fail "/dev/mapper/base-u1 outlived destroy"
[ -z "$(dmsetup ls 2>/dev/null | grep -- '-u1')" ] || fail "dm devices left: $(dmsetup ls)"
no_cookies destroy
stop_udevd
trap - EXIT
udevadm control --ping --timeout=1 >/dev/null 2>&1 && fail "systemd-udevd still answers after --exit"
log "all checks passed"
