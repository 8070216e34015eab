# 20 VMs on one base image share ONE read-only base loop (reference-counted by the kernel:
# the loop lives while some base-ID holds it).  Each overlay reads the base, writes its own
# data; detaching 19 keeps the loop, detaching the last one frees it.
need_cowpunch create attach detach destroy list
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
base_sha=$(sha256 "$base")
i=1
while [ $i -le 20 ]; do
	cowpunch create "vm$i" --base "$base" --size 8M >/dev/null
	i=$((i + 1))
done
loops=$(losetup -j "$base" -O NAME -n)
log "base loops: $loops"
assert_eq 1 "$(echo "$loops" | wc -l)" "one loop serves the base of 20 VMs"
assert_eq 20 "$(ls /sys/block/${loops#/dev/}/holders | wc -l)" "20 base-ID tables hold it"
assert_eq 20 "$(dmsetup ls | grep -c '^overlay-vm')" "20 overlays"
i=1
while [ $i -le 20 ]; do
	dev=/dev/mapper/overlay-vm$i
	assert_eq "$base_sha" "$(dd if="$dev" bs=1M count=4 status=none | sha256sum | cut -d' ' -f1)" \
		"vm$i reads the base"
	printf 'vm%s' "$i" | dd of="$dev" bs=4096 seek=1500 conv=notrunc,fsync status=none
	i=$((i + 1))
done
i=1
while [ $i -le 19 ]; do
	cowpunch detach "vm$i"
	i=$((i + 1))
done
assert_eq "$loops" "$(losetup -j "$base" -O NAME -n)" "the base loop stays while vm20 uses it"
cowpunch detach vm20
assert_eq "" "$(losetup -j "$base" -O NAME -n)" "the base loop is gone with the last VM"
cowpunch attach vm7 >/dev/null
cowpunch attach vm13 >/dev/null
assert_eq "vm7" "$(dd if=/dev/mapper/overlay-vm7 bs=4096 skip=1500 count=1 status=none | tr -d '\0')" \
	"vm7 kept its own write"
assert_eq "vm13" "$(dd if=/dev/mapper/overlay-vm13 bs=4096 skip=1500 count=1 status=none | tr -d '\0')" \
	"vm13 kept its own write"
assert_eq 1 "$(losetup -j "$base" -O NAME -n | wc -l)" "one base loop again for two VMs"
cowpunch list --json >"$OUT/list.json"
assert_eq 20 "$(/usr/bin/jq length "$OUT/list.json")" "list shows 20 VMs"
assert_eq 2 "$(/usr/bin/jq '[.[] | select(.attached)] | length' "$OUT/list.json")" "2 attached"
i=1
while [ $i -le 20 ]; do
	cowpunch destroy "vm$i"
	i=$((i + 1))
done
assert_eq "" "$(dmsetup ls | grep -v 'No devices found' || true)" "no dm device left"
assert_eq "" "$(losetup -a)" "no loop device left"
assert_eq "$base_sha" "$(sha256 "$base")" "the base image is unchanged"
log "all checks passed"
