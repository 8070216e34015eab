#!/usr/bin/env bash
# make deb: the package holds the binary, every man page, the bash completion, the systemd
# units, Prometheus and Grafana files; its Depends (from shlibs) names the package of every
# library the binary links; lintian reports no error; and it installs with dpkg into a
# scratch root (its own dpkg database, busybox as /bin/sh, recording stand-ins for
# deb-systemd-helper/-invoke and systemctl), where cowpunch --version works, the postinst
# enables and starts the reclaim timer and neither enables nor starts the agent service,
# and remove + purge take every file away.  Never this host's dpkg database or root.
#
# The package is built from a copy of the tree.  Units that contrib/systemd/ lacks (the tree
# may not have them yet) are added to the copy as stand-ins, so the units' handling is
# checked either way.
set -u
. "$(dirname "$0")/lib.sh"
require "$COWPUNCH" make dpkg dpkg-deb lintian busybox chroot objdump

# The copy: the tree as git sees it (tracked and new files), less build output.
t=$dir/tree
mkdir -p "$t"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf -) | tar -xf - -C "$t" || fail "cannot copy the tree"
standin() {
	[ -f "$t/contrib/systemd/$1" ] && return
	echo "test-deb: contrib/systemd/$1 is not in the tree: a stand-in for the test"
	mkdir -p "$t/contrib/systemd"
	printf "$2" >"$t/contrib/systemd/$1"
}
standin cowpunch-agent.service '[Unit]\nDescription=cowpunch agent (stand-in)\nDocumentation=man:cowpunch(8)\n\n[Service]\nExecStart=/usr/sbin/cowpunch agent\n\n[Install]\nWantedBy=multi-user.target\n'
standin cowpunch-reclaim.service '[Unit]\nDescription=cowpunch reclaim (stand-in)\nDocumentation=man:cowpunch-reclaim(8)\n\n[Service]\nType=oneshot\nExecStart=/usr/sbin/cowpunch list\n'
standin cowpunch-reclaim.timer '[Unit]\nDescription=cowpunch reclaim timer (stand-in)\nDocumentation=man:cowpunch-reclaim(8)\n\n[Timer]\nOnCalendar=hourly\n\n[Install]\nWantedBy=timers.target\n'

version=$("$COWPUNCH" --version | awk '{ print $2 }')
arch=$(dpkg --print-architecture)
deb=$t/build/deb/cowpunch_${version}_$arch.deb
listing() { (cd "$t" && find . -path ./build -prune -o -print | sort) }
listing >"$dir/before"
if ! make -C "$t" --no-print-directory deb >"$dir/deb.log" 2>&1; then
	cat "$dir/deb.log" >&2
	fail "make deb failed"
	finish test-deb
fi
[ -f "$deb" ] || { fail "make deb made no $deb: $(ls "$t/build/deb")"; finish test-deb; }
listing | diff "$dir/before" - >"$dir/litter" || fail "make deb wrote outside build/: $(words "$(cat "$dir/litter")")"
[ -e "$dir/cowpunch_${version}_$arch.deb" ] && fail "make deb wrote into the tree's parent"

# Contents.
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$dir/contents"
want="/usr/sbin/cowpunch /usr/share/bash-completion/completions/cowpunch"
for p in "$ROOT"/man/*.8.scd; do
	p=${p##*/}
	want="$want /usr/share/man/man8/${p%.scd}.gz"
done
units=$(cd "$t/contrib/systemd" && ls *.service *.timer 2>/dev/null)
for u in $units; do want="$want /lib/systemd/system/$u"; done
for f in "$t"/contrib/prometheus/* "$t"/contrib/grafana/*; do
	[ -f "$f" ] && want="$want /usr/share/cowpunch/${f#"$t/contrib/"}"
done
for f in $want; do
	grep -qx -- "$f" "$dir/contents" || fail "$deb lacks $f"
done
echo "test-deb: dpkg -c lists $(words "$want")"

# Depends: the package of each library the binary needs.
x=$dir/x
dpkg-deb -x "$deb" "$x"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in $(objdump -p "$x/usr/sbin/cowpunch" | awk '$1 == "NEEDED" { print $2 }'); do
	path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
	# Merged /usr: dpkg knows a library by the path its package ships, /lib or /usr/lib.
	real=$(readlink -f "$path")
	pkg=$(dpkg -S "$path" "$real" "${real#/usr}" 2>/dev/null | head -n 1 | cut -d: -f1)
	[ -n "$pkg" ] || { fail "no package owns $lib ($path)"; continue; }
	grep -qE "(^|, )$pkg( |,|$)" <<<"$depends" || fail "Depends lacks $pkg (for $lib): $depends"
done
# The units run the packaged binary.
for u in $units; do
	for e in $(grep -hoE '^Exec[A-Za-z]*=[-@+!:]*[^ ]*cowpunch\>' "$x/lib/systemd/system/$u" | sed -E 's/^[^=]*=[-@+!:]*//'); do
		[ "$e" = /usr/sbin/cowpunch ] || fail "$u runs $e, the package has /usr/sbin/cowpunch"
	done
done

# lintian: no error (warnings and infos are listed).
lintian --fail-on error --display-info "$deb" "$t"/build/deb/*.changes >"$dir/lintian" 2>"$dir/lintian.err"
rc=$?
grep -q '^E: ' "$dir/lintian" && fail "lintian errors: $(grep '^E: ' "$dir/lintian" | tr '\n' ' ')"
[ "$rc" -eq 0 ] || fail "lintian exited $rc: $(cat "$dir/lintian.err")"
echo "test-deb: lintian: $(grep -c "^E: " "$dir/lintian") errors, $(grep -c "^W: " "$dir/lintian") warnings, $(grep -c "^I: " "$dir/lintian") infos"
grep '^[WI]: ' "$dir/lintian"

# A scratch root: dpkg's database, busybox as /bin/sh (the maintainer scripts run chrooted),
# a plain file as /dev/null (mknod needs real root), /run/systemd/system (systemd "runs"),
# and stand-ins that log how the scripts call them.  A fresh install: was-enabled says yes
# and debian-installed no, as deb-systemd-helper does for a unit it has never seen.
r=$dir/root
mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers" \
	"$r/bin" "$r/usr/bin" "$r/run/systemd/system" "$r/tmp" "$r/dev"
touch "$r/var/lib/dpkg/status" "$r/var/lib/dpkg/available" "$r/dev/null"
cp "$(command -v busybox)" "$r/bin/busybox"
for a in sh cat echo rm mkdir; do ln -s busybox "$r/bin/$a"; done
for s in deb-systemd-helper deb-systemd-invoke systemctl; do
	printf '#!/bin/sh\necho "%s $*" >>/calls.log\ncase "$*" in *debian-installed*) exit 1 ;; esac\nexit 0\n' \
		"$s" >"$r/usr/bin/$s"
	chmod 755 "$r/usr/bin/$s"
done
asroot=()
[ "$(id -u)" -eq 0 ] || asroot=(unshare --map-root-user)
dpkg_r() {
	"${asroot[@]}" dpkg --root="$r" --force-not-root --log=/dev/null "$@" >"$dir/dpkg.log" 2>&1 ||
		fail "dpkg $*: $(cat "$dir/dpkg.log")"
}
dpkg_r --force-depends -i "$deb"
status=$(dpkg --root="$r" -s cowpunch 2>/dev/null | sed -n 's/^Status: //p')
[ "$status" = "install ok installed" ] || fail "dpkg says cowpunch is '$status' in the scratch root"
# The libraries are the host's: it has the packages Depends names (checked above).
v=$("$r/usr/sbin/cowpunch" --version 2>&1)
[ "$v" = "cowpunch $version" ] || fail "the installed cowpunch --version says '$v'"
calls=$(cat "$r/calls.log" 2>/dev/null)
echo "test-deb: postinst called: $(tr '\n' ';' <<<"$calls")"
for u in $units; do
	grep -q '^\[Install\]' "$t/contrib/systemd/$u" || continue
	grep -q "$u" <<<"$calls" || fail "the postinst leaves $u alone: debian/rules needs a line for it"
done
if grep -qx cowpunch-reclaim.timer <<<"$units"; then
	grep -qx "deb-systemd-helper enable cowpunch-reclaim.timer" <<<"$calls" ||
		fail "the postinst does not enable cowpunch-reclaim.timer"
	grep -qE "^deb-systemd-invoke start .*cowpunch-reclaim.timer" <<<"$calls" ||
		fail "the postinst does not start cowpunch-reclaim.timer"
fi
if grep -qx cowpunch-agent.service <<<"$units"; then
	grep -q "enable cowpunch-agent.service" <<<"$calls" && fail "the postinst enables the agent"
	grep -qE "^deb-systemd-invoke .*cowpunch-agent.service" <<<"$calls" && fail "the postinst starts the agent"
fi

rm -f "$r/calls.log"
dpkg_r --purge cowpunch
left=$(cd "$r" && find . -type f -o -type l | grep -vE '^\./(var/lib/dpkg/|bin/|usr/bin/(deb-systemd-|systemctl)|calls\.log|dev/null)')
[ -z "$left" ] || fail "purge left: $(words "$left")"
echo "test-deb: prerm and postrm called: $(tr '\n' ';' <"$r/calls.log")"
for u in cowpunch-reclaim.timer cowpunch-agent.service; do
	grep -qx "$u" <<<"$units" || continue
	grep -qE "^deb-systemd-invoke stop .*$u" "$r/calls.log" || fail "removal does not stop $u"
	grep -qE "^deb-systemd-helper purge .*$u" "$r/calls.log" || fail "purge does not purge $u"
done
finish test-deb
