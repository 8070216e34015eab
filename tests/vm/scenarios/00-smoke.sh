# Smoke test: the guest has the modules and tools, a linear map over a loop device reads back
# what was written, and the snapshot target is at least 1.16 (discard_zeroes_cow exists).
random_file "$WORK/img" 4
want=$(sha256 "$WORK/img")
loop=$(loop_attach "$WORK/img" ro)
echo "0 $(dev_sectors "$loop") linear $loop 0" | dmsetup create smoke
assert_eq "$want" "$(sha256 /dev/mapper/smoke)" "sha256 of the linear map"
dmsetup remove smoke
losetup -d "$loop"
ver=$(dmsetup targets | awk '$1 == "snapshot" { print $2 }')
log "snapshot target $ver, kernel $KERNEL"
major=${ver#v}
minor=${major#*.}
minor=${minor%%.*}
major=${major%%.*}
[ "$major" -gt 1 ] || [ "$minor" -ge 16 ] || fail "snapshot target $ver < 1.16"
cowpunch --version
