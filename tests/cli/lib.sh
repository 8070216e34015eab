# Helpers for tests/cli/test-*.sh (source it after setting $dir, a scratch directory).
#   fail MSG            counts a failure (the test ends with: [ $fails -eq 0 ] || exit 1)
#   expect_rc RC CMD... runs CMD, stdout to $dir/out, stderr to $dir/err, checks its exit status
#   jq_is FILTER VALUE  the JSON in $dir/out has FILTER == VALUE
fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
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
	[ "$got" = "$2" ] || fail "$1 = '$got', want '$2'"
}
