# Shared helpers for tests/cli/test-*.sh (sourced, not run).  After sourcing: $dir is a fresh
# temporary directory removed at exit (add more clean-up to the `cleanup_hooks` array).
# fail MSG counts a failure; expect_rc RC CMD... runs CMD with stdout in $dir/out and stderr in
# $dir/err; require TOOL... fails when a tool is missing; jq_is FILTER VALUE checks the JSON in $dir/out; finish NAME exits 0 or 1.
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

finish() {
	if [ "$fails" -ne 0 ]; then
		echo "$1: $fails failure(s)"
		exit 1
	fi
	echo "$1: ok"
	exit 0
}
