#!/usr/bin/env bash
# The newcomer's demo (`make demo`): builds cowpunch if needed and runs the story in
# tests/vm/demo/story.sh in the QEMU test bed: three VMs on one base image write, delete and
# zero-fill; they hibernate (detach); every VM is reclaimed; each is attached again and every
# file is checked.  Progress shows while it runs; a summary closes it.
#
# Usage: tests/vm/demo.sh [--kernel 6.1|6.12] [--native]
#   --kernel K   the Debian kernel to boot (default 6.12)
#   --native     run the story on THIS machine instead (root, device-mapper and loop needed;
#                it creates and removes dm devices named base-/overlay-{web,db,cache})
# Exit status: 0 the story ran and every check held, 1 a check failed, 2 cannot run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$top/build}
kernel=6.12
native=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) [ $# -ge 2 ] || { echo "demo: --kernel needs 6.1 or 6.12" >&2; exit 2; }; kernel=$2; shift 2 ;;
	--native) native=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

if [ ! -x "$build/cowpunch" ]; then
	echo "demo: building cowpunch (make -j2)"
	make -C "$top" -j2 >/dev/null
fi

if [ $native -eq 1 ]; then
	[ "$(id -u)" -eq 0 ] || { echo "demo: --native needs root" >&2; exit 2; }
	[ -e /dev/mapper/control ] && grep -qw device-mapper /proc/devices ||
		{ echo "demo: --native needs device-mapper in this kernel (try without --native)" >&2; exit 2; }
	work=$(mktemp -d /var/tmp/cowpunch-demo.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/bin" "$work/tmp" "$work/out"
	ln -s "$build/cowpunch" "$work/bin/cowpunch"
	PATH=$work/bin:$PATH SCENARIO=demo WORK=$work TMPWORK=$work/tmp OUT=$work/out \
		sh -c 'set -e; cd "$WORK"; . "$1"; . "$2"' demo "$here/lib.sh" "$here/demo/story.sh"
	exit $?
fi

echo "demo: booting Debian's $kernel kernel in QEMU (tests/vm/run.sh); the story follows live"
mkdir -p "$build/vm/$kernel"
console=$build/vm/$kernel/console.log
rm -f "$console"
log=$(mktemp)
trap 'rm -f "$log" "$log.rc"; [ -z "${tailpid:-}" ] || kill "$tailpid" 2>/dev/null || true' EXIT
# The test bed's own progress (kernel download on a first run, initramfs, boot) shows too.
{
	rc=0
	"$here/run.sh" --kernel "$kernel" "$here/demo/story.sh" 2>&1 || rc=$?
	echo "$rc" >"$log.rc"
} | tee "$log" | sed -u -n \
	-e '/^vmtest: timings/d' -e '/^vmtest: [0-9]* passed/d' -e 's/^vmtest: /test bed: /p' &
runpid=$!
# The guest's serial console is a file that grows while the story runs: follow its demo lines.
tail -F -n +1 "$console" 2>/dev/null |
	sed -u -n -e 's/\r$//' -e 's/^demo: //p' -e '/^\[story\] FAIL/p' &
tailpid=$!
wait "$runpid" || true
rc=$(cat "$log.rc" 2>/dev/null || echo 1)
sleep 1
kill "$tailpid" 2>/dev/null || true
if [ $rc -ne 0 ]; then
	echo
	echo "demo: FAILED (tests/vm/run.sh exit $rc); its output:"
	sed 's/^/  /' "$log"
	exit 1
fi
grep -q "^PASS" "$log" || { echo "demo: the story did not pass:"; sed 's/^/  /' "$log"; exit 1; }
echo "demo: done (the whole story ran in a throw-away VM; nothing on this machine changed)"
