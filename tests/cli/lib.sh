# Shared helpers for tests/cli/test-*.sh (sourced, not run).  After sourcing: $dir is a fresh
# temporary directory removed at exit (add more clean-up to the `cleanup_hooks` array).
# fail MSG counts a failure; expect_rc RC CMD... runs CMD with stdout in $dir/out and stderr in
# $dir/err; require TOOL... fails when a tool is missing; jq_is FILTER VALUE checks the JSON in $dir/out; finish NAME exits 0 or 1.
# state FILE: its sha256 and st_blocks; loop_refused FILE CMD...: CMD refuses FILE while a loop
# device is backed by it.
: "${COWPUNCH:?}" "${BUILD_DIR:?}"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cowpunch-cli.XXXXXX")
cleanup_hooks=()
cli_cleanup() {
	local h
	for h in "${cleanup_hooks[@]}"; do eval "$h"; done
	rm -rf "$dir"
}
trap cli_cleanup EXIT
fails=0
loopdev=
cleanup_hooks+=('[ -n "$loopdev" ] && losetup -d "$loopdev"')

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# require TOOL...: every tool must be there (scripts/deps.sh installs them; make builds the
# test tools).  A missing one fails the test: a skip would hide a broken set-up in CI.
require() {
	local t
	for t in "$@"; do
		[ -x "$t" ] || command -v "$t" >/dev/null || {
			echo "FAIL: $t is missing (run 'make' and scripts/deps.sh test)"
			exit 1
		}
	done
}

expect_rc() {
	local want=$1
	shift
	"$@" >"$dir/out" 2>"$dir/err"
	local rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want; stderr: $(cat "$dir/err")"
}

jq_is() {
	local got
	got=$(jq -r "$1" "$dir/out" 2>/dev/null)
	[ "$got" = "$2" ] || fail "$1 = '$got', want '$2' (output: $(tr -d '\n' <"$dir/out"))"
}

state() { # FILE: bytes and allocation
	echo "$(sha256sum <"$1") $(stat -c %b "$1")"
}

# loop_refused FILE CMD...: with FILE backing a read-only loop device, CMD... exits 4 naming the
# device and FILE stays as it was; the device is detached after.  Returns 1, saying why, when no
# loop device can be had here (not root, no loop support), 0 otherwise.
loop_refused() {
	local f=$1 s
	shift
	if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/loop-control ] || ! command -v losetup >/dev/null; then
		echo "note: not root or no loop devices: attached case not run"
		return 1
	fi
	if ! loopdev=$(losetup --find --show --read-only "$f" 2>"$dir/err"); then
		echo "note: losetup failed ($(cat "$dir/err")): attached case not run"
		loopdev=
		return 1
	fi
	s=$(state "$f")
	expect_rc 4 "$@"
	grep -q "$loopdev" "$dir/err" || fail "attached: stderr does not name $loopdev"
	[ "$(state "$f")" = "$s" ] || fail "attached: $f changed"
	losetup -d "$loopdev" && loopdev=
	return 0
}

finish() {
	if [ "$fails" -ne 0 ]; then
		echo "$1: $fails failure(s)"
		exit 1
	fi
	echo "$1: ok"
	exit 0
}
