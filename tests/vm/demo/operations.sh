# Captures the lifecycle with real output for docs/operations.md (run by hand:
#   tests/vm/run.sh --kernel 6.12 tests/vm/demo/operations.sh
# then build/vm/6.12/out/operations/transcript.txt).  Paths are shortened to /var/lib/cowpunch
# and /srv/images in the transcript.
export COWPUNCH_STATE_DIR=$WORK/state
mkdir -p "$WORK/images"
base=$WORK/images/debian.ext4
make_base_image "$base" 16 ext4
t=$OUT/transcript.txt
: >"$t"
run() {
	echo "# $*" >>"$t"
	_rc=0
	"$@" >>"$t" 2>&1 || _rc=$?
	[ $_rc -eq 0 ] || echo "(exit status $_rc)" >>"$t"
	echo >>"$t"
}
run cowpunch create vm1 --base "$base" --size 64M
run cowpunch create vm2 --base "$base" --size 64M --json
run cowpunch list
mkdir -p "$TMPWORK/m"
/usr/sbin/resize2fs /dev/mapper/overlay-vm1 >/dev/null 2>&1
mount -t ext4 /dev/mapper/overlay-vm1 "$TMPWORK/m"
dd if=/dev/urandom of="$TMPWORK/m/data" bs=1M count=6 status=none
dd if=/dev/zero of="$TMPWORK/m/zeros" bs=1M count=4 status=none
sync
run cowpunch status vm1
run cowpunch detach vm1 # refused: the guest (here: a mount) has the disk open
rm "$TMPWORK/m/zeros" # deleted, but its zeros stay in the COW
umount "$TMPWORK/m"
run cowpunch reclaim vm1
run cowpunch detach vm1
run cowpunch reclaim vm1
run cowpunch status vm1
run cowpunch status vm1 --json
run cowpunch attach vm1
run cowpunch detach vm1
touch "$base" # the base image changes (here only its mtime)
run cowpunch attach vm1
run cowpunch create "bad/id" --base "$base" --size 64M
mv "$COWPUNCH_STATE_DIR/vm1/vm.json" "$TMPWORK/vm1.json" # the record is lost
run cowpunch create vm1 --base "$base" --size 64M
mv "$TMPWORK/vm1.json" "$COWPUNCH_STATE_DIR/vm1/vm.json"
run cowpunch destroy vm2
run cowpunch list --json
sed -i -e "s|$WORK/state|/var/lib/cowpunch|g" -e "s|$WORK/images|/srv/images|g" "$t"
cat "$t"
