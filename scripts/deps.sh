#!/usr/bin/env bash
# Installs the Debian packages cowpunch needs to build and test, when any is missing.
# Run by the Makefile; as root on a fresh Debian 12 it apt-get installs, otherwise it
# names what is missing and fails.  Usage: scripts/deps.sh [build|test|fuzz|check|vm|bench|pkg|all]
set -euo pipefail

build=(gcc make pkg-config libc6-dev libdevmapper-dev liburing-dev libaio-dev libext2fs-dev
	libjson-c-dev libssl-dev libmicrohttpd-dev)
# prometheus: the server and promtool (tests/prom); systemd: systemd-analyze (unit checks).
test=(libcmocka-dev e2fsprogs util-linux coreutils xz-utils jq clang-format git prometheus curl
	systemd strace)
vm=(qemu-system-x86 busybox-static kmod cpio dmsetup udev xfsprogs btrfs-progs strace e2fsprogs util-linux coreutils diffutils jq xz-utils fio
	file)
bench=(fio time jq e2fsprogs gnuplot-nox)
# libFuzzer (make fuzz, make fuzz-run): clang, and the runtime (libclang_rt.fuzzer), which
# bookworm ships apart from clang in libclang-rt-14-dev (only recommended by clang).
fuzz=(clang libclang-rt-14-dev xz-utils)
# make valgrind (memcheck over tests/cli) and make lint (cppcheck).
check=(valgrind cppcheck)
# Man pages, bash completion, make install and the Debian package (make pkgtest, make deb).
pkg=(scdoc man-db groff-base bash-completion debhelper dpkg-dev fakeroot lintian busybox-static git)

want=()
case "${1:-all}" in
build) want=("${build[@]}") ;;
test) want=("${build[@]}" "${test[@]}") ;;
fuzz) want=("${build[@]}" "${fuzz[@]}") ;;
check) want=("${build[@]}" "${test[@]}" "${check[@]}") ;;
vm) want=("${build[@]}" "${vm[@]}") ;;
bench) want=("${build[@]}" "${bench[@]}") ;;
pkg) want=("${build[@]}" "${pkg[@]}") ;;
all) want=("${build[@]}" "${test[@]}" "${fuzz[@]}" "${check[@]}" "${vm[@]}" "${bench[@]}" "${pkg[@]}") ;;
*)
	echo "usage: $0 [build|test|fuzz|check|vm|bench|pkg|all]" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package enables and starts a system-wide server (port 9090).
# The tests start their own on loopback; stop the one this script just installed.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
	systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
