# kill -9 of cowpunch before every ioctl of an attach and of a detach, deterministically (14
# kills after timed delays, which land where they land): strace delivers SIGKILL on entering
# the Nth ioctl (-e inject=ioctl:signal=KILL:when=N), so the process dies right before it,
# for every N up to the number of ioctls a good run makes (dm, loop and terminal ioctls
# alike).  After each kill a plain attach (or detach) must finish the job, the VM must read
# its data, and a detach must leave no dm or loop device behind.
need_cowpunch create attach detach
export COWPUNCH_STATE_DIR=$WORK/state
make_vm_with_data vm1
# count_ioctls CMD...: the ioctls a good run of CMD makes.
count_ioctls() {
	strace -f -qq -e trace=ioctl -o "$TMPWORK/trace" "$@" >/dev/null || fail "$* failed under strace"
	wc -l <"$TMPWORK/trace"
}
# killed N CMD...: runs CMD, killed on entering its Nth ioctl; fails if it was not killed.
killed() {
	_n=$1
	shift
	_rc=0
	strace -f -qq -o /dev/null -e trace=ioctl -e inject=ioctl:signal=KILL:when="$_n" \
		"$@" >/dev/null 2>&1 || _rc=$?
	[ "$_rc" -ne 0 ] || fail "'$*' was not killed before its ioctl $_n"
}

n_attach=$(count_ioctls cowpunch attach vm1)
n_detach=$(count_ioctls cowpunch detach vm1)
log "a good attach makes $n_attach ioctls, a good detach $n_detach"
[ "$n_attach" -ge 5 ] && [ "$n_detach" -ge 3 ] || fail "too few ioctls seen: strace did not trace"
assert_no_devices "a good detach"

i=1
while [ "$i" -le "$n_attach" ]; do
	killed "$i" cowpunch attach vm1
	dev=$(cowpunch attach vm1) || fail "attach after a kill before ioctl $i of attach"
	[ "$(sha256 "$dev")" = "$want" ] || fail "data differ after a kill before ioctl $i of attach"
	cowpunch detach vm1 || fail "detach after a kill before ioctl $i of attach"
	assert_no_devices "kill before ioctl $i of attach"
	i=$((i + 1))
done
log "ok: attach killed before each of its $n_attach ioctls, then attach, data, detach: clean"

i=1
while [ "$i" -le "$n_detach" ]; do
	cowpunch attach vm1 >/dev/null || fail "attach before detach kill $i"
	killed "$i" cowpunch detach vm1
	cowpunch detach vm1 || fail "detach after a kill before ioctl $i of detach"
	assert_no_devices "kill before ioctl $i of detach"
	i=$((i + 1))
done
dev=$(cowpunch attach vm1) || fail "attach after the detach kills"
[ "$(sha256 "$dev")" = "$want" ] || fail "data differ after the detach kills"
cowpunch detach vm1 || fail "detach"
log "ok: detach killed before each of its $n_detach ioctls, then detach: clean, data intact"
log "all checks passed"
