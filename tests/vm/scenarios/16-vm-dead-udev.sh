# A dead udev must never hang cowpunch: /run/udev/control exists but nobody serves it (udevd
# crashed, or a container with a stale /run).  libdm alone would sync with "udev" and wait
# for it forever; cowpunch asks the socket, finds no one, and lets libdm make the nodes.
need_cowpunch create detach attach destroy
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
unset DM_DISABLE_UDEV
mkdir -p /run/udev
: >/run/udev/control
# The hazard, shown with dmsetup (libdm's own udev detection): it waits for udev.
rc=0
timeout 5 dmsetup create hang-probe --table "0 8 zero" >/dev/null 2>&1 || rc=$?
log "dmsetup create with a dead /run/udev/control: exit $rc (143 = killed after 5 s)"
dmsetup remove hang-probe --noudevsync >/dev/null 2>&1 || true
# The killed dmsetup left its udev cookie (a SysV semaphore) behind: release it, so that
# later scenarios start clean.
dmsetup udevcomplete_all -y >/dev/null 2>&1 || true
rc=0
dev=$(timeout 60 cowpunch create u1 --base "$base" --size 8M) || rc=$?
assert_eq 0 "$rc" "cowpunch create with a dead /run/udev/control"
[ -b "$dev" ] || fail "$dev was not made"
assert_rc 0 timeout 60 cowpunch detach u1
dev=$(timeout 60 cowpunch attach u1) || fail "attach with a dead udev"
[ -b "$dev" ] || fail "$dev was not made on attach"
assert_rc 0 timeout 60 cowpunch destroy u1
[ ! -e /dev/mapper/overlay-u1 ] || fail "the node outlived destroy"
rm -f /run/udev/control
log "all checks passed"
