#!/usr/bin/env bash
# The runner itself (tests/cli/run.sh, also what make pkgtest runs): its report appends to a
# log file it is redirected to, serially and with CLI_JOBS=2, and a failing script fails the run.
# A runner that reopened its standard output would truncate the log: `make test >> log` or
# `.ci/run > log` would lose every step before the last clitest.  VALGRIND=0: the inner runner
# must not reset the valgrind logs of a `make valgrind` this test runs under.
set -u
. "$(dirname "$0")/lib.sh"
runner=$(cd "$(dirname "$0")" && pwd)/run.sh
mkdir -p "$dir/ok" "$dir/bad"
for d in ok bad; do
	printf '#!/usr/bin/env bash\necho "first script of %s"\n' "$d" >"$dir/$d/test-a.sh"
	printf '#!/usr/bin/env bash\necho "second script of %s"\n' "$d" >"$dir/$d/test-b.sh"
done
printf 'echo "second script fails"\nexit 3\n' >>"$dir/bad/test-b.sh"
for jobs in 1 2; do
	echo "line written before the runner" >"$dir/log"
	VALGRIND=0 CLI_JOBS=$jobs bash "$runner" "$BUILD_DIR" "$dir/ok" >>"$dir/log" 2>&1
	rc=$?
	[ "$rc" -eq 0 ] || fail "CLI_JOBS=$jobs: two passing scripts: runner exit $rc, want 0"
	for want in "line written before the runner" "first script of ok" "second script of ok" \
		"ok: 2 passed, 0 failed, 0 skipped"; do
		grep -qxF "$want" "$dir/log" ||
			fail "CLI_JOBS=$jobs: the log lacks '$want': $(tr '\n' '|' <"$dir/log")"
	done
	echo "line written before the runner" >"$dir/log"
	VALGRIND=0 CLI_JOBS=$jobs bash "$runner" "$BUILD_DIR" "$dir/bad" >>"$dir/log" 2>&1
	rc=$?
	[ "$rc" -ne 0 ] || fail "CLI_JOBS=$jobs: a failing script: runner exit 0"
	for want in "line written before the runner" "first script of bad" "second script fails" \
		"FAILED: test-b.sh (exit 3)" "bad: 1 passed, 1 failed, 0 skipped"; do
		grep -qxF "$want" "$dir/log" ||
			fail "CLI_JOBS=$jobs: the log lacks '$want': $(tr '\n' '|' <"$dir/log")"
	done
done
finish runner
