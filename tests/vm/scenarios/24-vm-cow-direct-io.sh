# The COW loop's direct I/O (create --cow-direct-io auto|on|off): on the ext4 data disk auto
# and on give a loop doing direct I/O, off a buffered one; on tmpfs, where Linux 6.1 has no
# O_DIRECT, auto falls back to buffered and on is refused with nothing left behind (6.12's
# tmpfs takes it).  Each time: the mode the kernel reports (/sys/block/loopN/loop/dio) is the one
# in the record and in status, and the disk's sha256 after detach and attach is the one before,
# with guest writes both direct and buffered-without-flush.  An older record (no direct I/O
# field) attaches as auto; an edited record's mode is honoured at the next attach.
need_cowpunch create attach detach destroy status
base=$WORK/base.img
make_base_image "$base" 4

# loop_dio ID: the kernel's dio flag (0 or 1) of the loop serving VM ID's COW file.
loop_dio() {
	_l=$(losetup -j "$COWPUNCH_STATE_DIR/$1/cow" -O NAME -n | head -1)
	[ -n "$_l" ] || fail "no loop serves $COWPUNCH_STATE_DIR/$1/cow"
	cat "/sys/block/${_l#/dev/}/loop/dio"
}
# bool DIO: true for 1, false for 0 (the JSON spelling of the flag).
bool() { if [ "$1" = 1 ]; then echo true; else echo false; fi; }
# assert_mode ID WANT_DIO: the kernel, the record and status agree on WANT_DIO (0 or 1).
assert_mode() {
	assert_eq "$2" "$(loop_dio "$1")" "$1: the COW loop's dio (sysfs)"
	assert_eq "$(bool "$2")" "$(json_get "$COWPUNCH_STATE_DIR/$1/vm.json" .cow_direct_io_active)" \
		"$1: cow_direct_io_active in the record"
	cowpunch status --json "$1" >"$TMPWORK/status.json" || fail "status $1"
	assert_eq "$(bool "$2")" "$(json_get "$TMPWORK/status.json" .cow_direct_io_active)" \
		"$1: cow_direct_io_active in status"
}
# round_trip ID DEV WANT_DIO: guest writes (direct, and buffered never flushed), detach, attach:
# same sha256, same mode.
round_trip() {
	write_chunk "$2" 40 65536
	dd if=/dev/urandom of="$2" bs=4096 count=200 seek=1500 conv=notrunc status=none ||
		fail "$1: buffered write"
	_want=$(sha256 "$2")
	cowpunch detach "$1" || fail "detach $1"
	_dev=$(cowpunch attach "$1") || fail "attach $1"
	assert_eq "$_want" "$(sha256 "$_dev")" "$1: sha256 of the disk after detach and attach"
	assert_mode "$1" "$3"
}
# vm DIR ID MODE WANT_DIO: create ID with its state in DIR and --cow-direct-io MODE, check.
vm() {
	export COWPUNCH_STATE_DIR=$1/state
	cowpunch create "$2" --base "$base" --size 16M --cow-direct-io "$3" --json \
		>"$TMPWORK/create.json" || fail "create $2 --cow-direct-io $3"
	assert_eq "$(bool "$4")" "$(json_get "$TMPWORK/create.json" .cow_direct_io_active)" \
		"$2: cow_direct_io_active from create"
	assert_eq "$3" "$(json_get "$COWPUNCH_STATE_DIR/$2/vm.json" .options.cow_direct_io)" \
		"$2: the mode asked, in the record"
	assert_mode "$2" "$4"
	round_trip "$2" "$(json_get "$TMPWORK/create.json" .device)" "$4"
}

vm "$WORK" e-auto auto 1
vm "$WORK" e-on on 1
vm "$WORK" e-off off 0
log "ok: ext4: auto and on do direct I/O, off does not; data intact both ways"

# The record's mode is honoured by attach: off -> auto, and a record from before the field.
export COWPUNCH_STATE_DIR=$WORK/state
cowpunch detach e-off || fail "detach e-off"
rec=$COWPUNCH_STATE_DIR/e-off/vm.json
# Edited with sed: jq 1.6 reads numbers as doubles and would round the base's mtime_ns.
sed 's/"cow_direct_io": "off"/"cow_direct_io": "auto"/' "$rec" >"$TMPWORK/rec" && cp "$TMPWORK/rec" "$rec"
dev=$(cowpunch attach e-off) || fail "attach e-off as auto"
assert_mode e-off 1
round_trip e-off "$dev" 1
cowpunch detach e-off || fail "detach e-off"
sed -e '/"cow_direct_io": /d' -e '/"cow_direct_io_active": /d' -e 's/"discard": false,/"discard": false/' \
	"$rec" >"$TMPWORK/rec" && cp "$TMPWORK/rec" "$rec"
grep -q cow_direct_io "$rec" && fail "the direct I/O fields are still in $rec"
cowpunch status --json e-off >"$TMPWORK/status.json" || fail "status of an older record"
assert_eq auto "$(json_get "$TMPWORK/status.json" .cow_direct_io)" "older record: mode"
assert_eq null "$(json_get "$TMPWORK/status.json" .cow_direct_io_active)" "older record: active"
dev=$(cowpunch attach e-off) || fail "attach an older record"
assert_mode e-off 1
for id in e-auto e-on e-off; do cowpunch destroy "$id" || fail "destroy $id"; done
assert_no_devices "the ext4 VMs"

# tmpfs: O_DIRECT only from Linux 6.6.
mnt=$TMPWORK/tmpfs
mkdir -p "$mnt"
mount -t tmpfs -o size=64m tmpfs "$mnt" || fail "mount tmpfs"
if dd if=/dev/zero of="$mnt/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	tdio=1
else
	tdio=0
fi
rm -f "$mnt/probe"
case $KERNEL in
6.1.*) assert_eq 0 "$tdio" "O_DIRECT on tmpfs under $KERNEL" ;;
*) log "tmpfs O_DIRECT under $KERNEL: $tdio" ;;
esac
vm "$mnt" t-auto auto "$tdio"
vm "$mnt" t-off off 0
if [ "$tdio" = 0 ]; then
	assert_rc 1 cowpunch create t-on --base "$base" --size 16M --cow-direct-io on
	[ ! -e "$COWPUNCH_STATE_DIR/t-on" ] || fail "the refused create left $(ls "$COWPUNCH_STATE_DIR/t-on")"
else
	vm "$mnt" t-on on 1
	cowpunch destroy t-on || fail "destroy t-on"
fi
for id in t-auto t-off; do cowpunch destroy "$id" || fail "destroy $id"; done
assert_no_devices "the tmpfs VMs"
umount "$mnt"
finish
