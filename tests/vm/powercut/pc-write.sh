# Power-cut writer (tests/vm/powercut.sh boots it and kills QEMU; not a scenario of run.sh).
# The VM plays a Firecracker host with two host disks, found by their serials: pc-none (QEMU
# cache=none) and pc-writeback (cache=writeback), each an ext4 file system holding base.img.  On each it creates a VM disk
# (pcn, pcw: cowpunch create, state directory on that disk), then writes through both overlays
# at once with pcload, which prints "PCLOAD TAG ack OP" after each flush.  The host kills QEMU
# when the ack it waits for appears; nothing here shuts down cleanly.
# vmtest-tools: @build/tests/tools/pcload
need_cowpunch create
seed=$(cat "$IN/seed")
for m in none:pcn writeback:pcw; do
	tag=${m%%:*} id=${m#*:}
	disk=$(disk_by_serial "pc-$tag") || fail "no disk with serial pc-$tag"
	mkdir -p "/pc/$tag"
	mount -t ext4 "$disk" "/pc/$tag" || fail "mount $disk"
	COWPUNCH_STATE_DIR=/pc/$tag/state cowpunch create "$id" --base "/pc/$tag/base.img" \
		--size 16M >/dev/null || fail "create $id on $disk"
done
echo "PCLOAD ready"
pcload write /dev/mapper/overlay-pcn "$seed" none &
a=$!
pcload write /dev/mapper/overlay-pcw "$seed" writeback &
b=$!
wait "$a" || fail "pcload none"
wait "$b" || fail "pcload writeback"
echo "PCLOAD idle"
# The host kills QEMU; should it not, this never ends and the host's watch times out.
sleep 100000
