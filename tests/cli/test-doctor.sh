#!/usr/bin/env bash
# cowpunch doctor where it runs without the test bed: --help, usage errors (exit 2), the JSON
# (one array of 9 checks, each with its fields), device-mapper reported as a failed check when
# the kernel has none (exit 1; where it has one, the check says its version), the file system
# checks on a real folder, nothing left behind but STATE/.doctor; a stale lock and a dead
# writer's temp record found, kept without --fix and removed with it; and create --discard
# refused (exit 1, nothing made) until doctor has found this kernel's discards safe.
set -u
: "${COWPUNCH:?}" "${BUILD_DIR:?}"
. "$(dirname "$0")/lib.sh"
require jq flock
st=$dir/state
dm_loaded() { grep -qw device-mapper /proc/devices; }

expect_rc 0 "$COWPUNCH" doctor --help
grep -q "^Usage: cowpunch doctor" "$dir/out" || fail "doctor --help has no usage line"
grep -q "^Exit status:" "$dir/out" || fail "doctor --help has no exit status"
expect_rc 2 "$COWPUNCH" doctor extra
expect_rc 2 "$COWPUNCH" doctor --bogus

# status_of CHECK: what the last --json run in $dir/out said of CHECK.
status_of() { jq -r --arg c "$1" '.[] | select(.check == $c) | .status' "$dir/out"; }

"$COWPUNCH" doctor --state-dir "$st" --json >"$dir/out" 2>"$dir/err"
rc=$?
[ "$(jq -s 'length' "$dir/out")" = 1 ] || fail "doctor --json printed not exactly one JSON value"
jq_is 'type' array
jq_is 'length' 9
jq_is '[.[].check] | join(",")' \
	"device-mapper,dm-targets,discard-selftest,io_uring,direct-io,punch-hole,leftover-devices,stale-locks,records"
jq_is '[.[] | select((.status | IN("ok", "warning", "fail")) and (.reason | length > 0) and
	(.action | type == "string") and (.items | type == "array"))] | length' 9
jq_is '[.[] | select(.status != "ok" and (.action | length) == 0)] | length' 0
if ! dm_loaded; then
	[ "$rc" = 1 ] || fail "doctor without device-mapper exited $rc, want 1"
	jq_is '.[0].status' fail
	jq -r '.[0].reason' "$dir/out" | grep -q "not loaded" || fail "device-mapper: $(jq -r '.[0].reason' "$dir/out")"
	jq_is '.[2].status' fail
	jq -r '.[2].reason' "$dir/out" | grep -q "create --discard is refused" ||
		fail "discard-selftest does not say create --discard is refused"
	"$COWPUNCH" doctor --state-dir "$st" >"$dir/text"
	[ $? = 1 ] || fail "doctor (text) without device-mapper: want exit 1"
	grep -q "^FAIL    device-mapper " "$dir/text" || fail "text output: $(head -3 "$dir/text")"
	grep -q "^doctor: .* 3 failed$" "$dir/text" || fail "text summary: $(tail -1 "$dir/text")"
else
	jq_is '.[0].status' ok
	jq -r '.[0].reason' "$dir/out" | grep -q "^driver [0-9]" || fail "device-mapper: no driver version"
fi
for c in punch-hole leftover-devices stale-locks records; do
	[ "$(status_of $c)" = ok ] || fail "check $c: $(status_of $c) ($(jq -r --arg c $c '.[] | select(.check == $c) | .reason' "$dir/out"))"
done
jq -r '.[] | select(.check == "punch-hole") | .reason' "$dir/out" | grep -q "dropped st_blocks" ||
	fail "punch-hole names no st_blocks drop"
# Nothing behind but STATE/.doctor (and, where the self-test ran, its result).
left=$(cd "$st" && find . -mindepth 1 | grep -v '^\./\.doctor$' | grep -v '^\./\.doctor/discard-.*\.json$')
[ -z "$left" ] || fail "doctor left in the state directory: $left"
if dm_loaded; then
	left=$(dmsetup ls 2>/dev/null | grep cowpunch-doctor)
	[ -z "$left" ] || fail "doctor left dm devices: $left"
fi

# A stale lock (a folder with only a lock nobody holds) and a dead writer's temp record beside
# a VM's record (whose files are there: the records check stays ok).
mkdir -p "$st/gone" "$st/vm1"
flock "$st/gone/lock" true
truncate -s 4M "$dir/base.img"
truncate -s 8429568 "$st/vm1/cow"
jq -n --arg base "$dir/base.img" --arg fp "$(printf '0%.0s' $(seq 64))" '{
	version: 1, id: "vm1",
	base: { path: $base, size: 4194304, dev: 1, ino: 2, mtime_ns: 0, sha256_sampled: $fp },
	virtual_size: 8388608, chunk_size: 4096, cow_size: 8429568, options: { discard: false },
	created: "2026-11-27T10:00:00Z", attached: null, detached: null, last_reclaim: null }' \
	>"$st/vm1/vm.json"
echo '{' >"$st/vm1/vm.json.tmp.999999999"
touch "$st/vm1/lock"
expect_rc "$rc" "$COWPUNCH" doctor --state-dir "$st" --json
jq_is '.[] | select(.check == "stale-locks") | .status' warning
jq_is '[.[] | select(.check == "stale-locks") | .items[] | "\(.kind) \(.fixable) \(.fixed)"] | join(",")' \
	"temp true false,lock true false"
[ -e "$st/gone/lock" ] && [ -e "$st/vm1/vm.json.tmp.999999999" ] || fail "doctor without --fix removed something"
expect_rc "$rc" "$COWPUNCH" doctor --state-dir "$st" --json --fix
jq_is '.[] | select(.check == "stale-locks") | .status' ok
jq_is '.[] | select(.check == "records") | .status' ok
jq_is '[.[] | select(.check == "stale-locks") | .items[] | .fixed] | all' true
[ ! -e "$st/gone" ] || fail "--fix left $st/gone"
[ ! -e "$st/vm1/vm.json.tmp.999999999" ] || fail "--fix left the temp record"
[ -e "$st/vm1/lock" ] && [ -e "$st/vm1/vm.json" ] && [ -e "$st/vm1/cow" ] ||
	fail "--fix removed a file of VM vm1, which has a record"

# create --discard: refused without a passing self-test for this kernel, nothing made.
if ! ls "$st/.doctor/discard-$(uname -r).json" >/dev/null 2>&1 ||
	[ "$(jq -r .result "$st/.doctor/discard-$(uname -r).json")" != safe ]; then
	expect_rc 1 "$COWPUNCH" create d1 --base "$dir/base.img" --size 8M --discard --state-dir "$st"
	grep -q "cowpunch doctor" "$dir/err" || fail "create --discard refusal: $(cat "$dir/err")"
	[ ! -e "$st/d1" ] || fail "a refused create --discard left $st/d1"
	if ! dm_loaded; then
		# --unsafe-discard passes the verdict by, then fails for want of device-mapper.
		expect_rc 1 "$COWPUNCH" create d1 --base "$dir/base.img" --size 8M --unsafe-discard \
			--state-dir "$st"
		grep -q "cowpunch doctor" "$dir/err" && fail "--unsafe-discard asked for the self-test"
		[ ! -e "$st/d1" ] || fail "a failed create --unsafe-discard left $st/d1"
	fi
fi
finish test-doctor
