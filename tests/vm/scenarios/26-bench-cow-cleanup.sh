# vmtest-tools: /usr/bin/fio /usr/bin/env
# The COW-path benchmark's device part (bench/cow-path/guest.sh) leaves no device-mapper device,
# loop device or file behind: after a run that succeeds, after one whose fio job fails
# (BC_FAIL_AT), and after SIGINT in the middle of a run; and it refuses, touching nothing, when a
# device-mapper name with its prefix or its work or state directory exists already.  Tiny
# targets and 200 ms jobs, 4 KiB patterns only: the point is the devices, not the figures.
need_cowpunch create attach detach destroy reclaim
g=/vm/bench/cow-path/guest.sh
[ -f "$g" ] || fail "$g is missing from the initramfs"
export BC_SIZE_MB=8 BC_RAMP=0 BC_RUNTIME=200ms BC_PATTERNS=4k BC_CONFIGS=4k:on:full \
	BC_ENGINES=io_uring BC_QDS=1
w=$WORK/bench
o=$TMPWORK/out

# assert_clean WHEN: no dm device, no loop device, no work or state directory left.
assert_clean() {
	assert_no_devices "$1"
	[ ! -e "$w" ] || fail "$1: the work directory is left: $(ls -la "$w")"
	[ ! -e "$WORK/state" ] || fail "$1: the state directory is left"
	log "ok: no file left after $1"
}

# 1. Success (the overlay and dm-thin targets): every job's JSON is there, nothing else is.
assert_rc 0 env BC_TARGETS="overlay thin" sh "$g" --work "$w" --out "$o" --prefix cpb-t1-
# base, ov-read-base, ov-first, ov-overwrite, ov-read-cow, ov-reclaimed, 4 thin targets
assert_eq 10 "$(wc -l <"$o/index.tsv")" "jobs run"
assert_eq "0 10" "$(cd "$o" && /usr/bin/jq -s -r '"\(map(.jobs[0].error) | add) \(length)"' \
	$(cut -f9 "$o/index.tsv"))" "fio errors, JSON files"
assert_clean "a run that succeeded"

# 2. A failing job (the raw file, then dm-thin: the 4th, with the thin pool and a thin volume
# up): exit non-zero, clean.
rm -rf "$o"
rc=0
BC_TARGETS="raw thin" BC_FAIL_AT=4 sh "$g" --work "$w" --out "$o" --prefix cpb-t2- || rc=$?
[ "$rc" != 0 ] || fail "a run with a failing job exited 0"
assert_eq 3 "$(wc -l <"$o/index.tsv")" "jobs done before the failure"
assert_clean "a failed job (exit $rc)"

# 3. SIGINT once the overlay targets are up.  A background job of this non-interactive shell
# would ignore SIGINT (and sh cannot trap what it inherits ignored): env restores it.
rm -rf "$o"
BC_TARGETS=overlay /usr/bin/env --default-signal=INT sh "$g" --work "$w" --out "$o" --prefix cpb-t3- \
	>"$TMPWORK/int.log" 2>&1 &
pid=$!
i=0
until /usr/sbin/dmsetup ls | grep -q '^overlay-cpb-t3-'; do
	i=$((i + 1))
	[ $i -lt 600 ] || { cat "$TMPWORK/int.log"; fail "no overlay device appeared in 60 s"; }
	kill -0 "$pid" 2>/dev/null || { cat "$TMPWORK/int.log"; fail "the run ended before its overlay appeared"; }
	sleep 0.1
done
log "overlay up: $(/usr/sbin/dmsetup ls | tr '\n' ' '); sending SIGINT"
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
cat "$TMPWORK/int.log"
assert_eq 130 "$rc" "exit status after SIGINT"
assert_clean "SIGINT mid-run"

# 4. Refusals: a dm name with the prefix, an existing work or state directory.
echo "0 8 zero" | /usr/sbin/dmsetup create cpb-t4-other
assert_rc 2 sh "$g" --work "$w" --out "$o" --prefix cpb-t4-
/usr/sbin/dmsetup info cpb-t4-other >/dev/null || fail "the refusal removed a device it did not make"
[ ! -e "$w" ] || fail "the refusal made the work directory"
/usr/sbin/dmsetup remove cpb-t4-other
mkdir -p "$w/theirs"
assert_rc 2 sh "$g" --work "$w" --out "$o" --prefix cpb-t5-
[ -d "$w/theirs" ] || fail "the refusal touched an existing work directory"
rm -rf "$w"
mkdir -p "$WORK/state/theirs"
assert_rc 2 sh "$g" --work "$w" --out "$o" --prefix cpb-t6- --state-dir "$WORK/state"
[ -d "$WORK/state/theirs" ] || fail "the refusal touched an existing state directory"
rm -rf "$WORK/state"
assert_clean "the refusals"
finish
