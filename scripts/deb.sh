#!/usr/bin/env bash
# Builds the Debian package (make deb).  dpkg-buildpackage writes its results into the parent
# of the source folder, so it runs on a copy of the tree in OUT/src and the .deb lands in OUT.
# Usage: scripts/deb.sh OUT VERSION (the Makefile's VERSION, which debian/changelog must match).
set -euo pipefail
out=$1 version=$2
cd "$(dirname "$0")/.."

cl=$(dpkg-parsechangelog -S Version)
if [ "$cl" != "$version" ]; then
	echo "deb: debian/changelog's version is $cl, the Makefile's VERSION is $version:" \
		"add a changelog entry (dch -v $version)" >&2
	exit 1
fi

rm -rf "$out"
mkdir -p "$out/src"
# The tree as git sees it (tracked and new files, no build output), so that an uncommitted
# change is packaged too; a tree without git is copied whole, less its build folders.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$out/src"
else
	tar --exclude=./build --exclude='./build-*' -cf - . | tar -xf - -C "$out/src"
fi

# make test runs the unit tests itself: by default the package build does not again.
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck parallel=$(nproc)}
echo "deb: dpkg-buildpackage -us -uc -b in $out/src (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
if ! (cd "$out/src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	echo "deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
	exit 1
fi
ls "$out"/*.deb
