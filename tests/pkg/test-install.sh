#!/usr/bin/env bash
# make install / make uninstall: into a DESTDIR, install writes the binary, every man page,
# the bash completion and whatever contrib/ holds (systemd units, Prometheus and Grafana
# files) at the PREFIX/SBINDIR/MANDIR/... paths, and nothing else; each installed page renders
# with `man --warnings` and nothing on stderr; bash-completion finds the completion there;
# uninstall leaves no file.  A second run with PREFIX, SBINDIR and MANDIR changed and a
# stand-in contrib/ (units, rules, dashboard: the tree may not have them) checks the
# contrib rules and that the units' ExecStart follows SBINDIR; a third, with no contrib/.
set -u
. "$(dirname "$0")/lib.sh"
require "$COWPUNCH" man make bash
export MANWIDTH=80

mk() {
	make -C "$ROOT" --no-print-directory BUILD="$BUILD_DIR" "$@" >"$dir/make.log" 2>&1 ||
		fail "make $* failed: $(tail -n 5 "$dir/make.log")"
}

# files ROOT: the files (and links) under ROOT, relative, sorted.
files() {
	(cd "$1" && find . -type f -o -type l | sed 's|^\./||' | sort)
}

# check_tree DEST WANT: DEST holds exactly the files of the newline list WANT.
check_tree() {
	local got want
	got=$(files "$1")
	want=$(printf '%s\n' $2 | sort)
	[ "$got" = "$want" ] ||
		fail "$1 holds: $(words "$got"); want: $(words "$want"); diff: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
}

# check_pages DIR: each page in DIR renders with no warning on stderr.
check_pages() {
	local p n=0
	for p in "$1"/*.8; do
		[ -f "$p" ] || continue
		n=$((n + 1))
		man --warnings -l "$p" >"$dir/page.txt" 2>"$dir/page.err"
		[ -s "$dir/page.err" ] && fail "man --warnings -l $p: $(head -n 3 "$dir/page.err")"
		[ -s "$dir/page.txt" ] || fail "man -l $p rendered nothing"
	done
	[ "$n" -eq "$(ls "$ROOT"/man/*.8.scd | wc -l)" ] || fail "$1 holds $n pages, man/ has more"
}

pages=$(cd "$ROOT/man" && ls *.8.scd | sed 's/\.scd$//')
contrib_files() { # PREFIX-relative paths of what contrib/ ($1) installs
	local f
	for f in "$1"/systemd/*.service "$1"/systemd/*.timer; do
		[ -f "$f" ] && echo "lib/systemd/system/${f##*/}"
	done
	for f in "$1"/prometheus/* "$1"/grafana/*; do
		[ -f "$f" ] && echo "share/cowpunch/${f#"$1"/}"
	done
	[ -f "$1/bash-completion/cowpunch" ] && echo share/bash-completion/completions/cowpunch
}

# 1. The defaults (PREFIX=/usr/local), the tree's own contrib/.
d=$dir/dest1
mk install DESTDIR="$d"
check_tree "$d" "usr/local/sbin/cowpunch $(printf 'usr/local/share/man/man8/%s\n' $pages)
	$(contrib_files "$ROOT/contrib" | sed 's|^|usr/local/|')"
[ "$(stat -c %a "$d/usr/local/sbin/cowpunch" 2>/dev/null)" = 755 ] || fail "the binary is not mode 755"
v=$("$d/usr/local/sbin/cowpunch" --version)
[ "$v" = "$("$COWPUNCH" --version)" ] || fail "installed cowpunch --version says '$v'"
check_pages "$d/usr/local/share/man/man8"
# bash-completion's loader looks in XDG_DATA_DIRS/bash-completion/completions.
got=$(XDG_DATA_DIRS=$d/usr/local/share bash -c '. /usr/share/bash-completion/bash_completion &&
	__load_completion cowpunch && complete -p cowpunch' 2>&1)
[ "$got" = "complete -F _cowpunch cowpunch" ] || fail "bash-completion did not load it: '$got'"
mk uninstall DESTDIR="$d"
check_tree "$d" ""

# 2. Other paths, a stand-in contrib/.
c=$dir/contrib
mkdir -p "$c/systemd" "$c/prometheus" "$c/grafana" "$c/bash-completion"
printf '[Service]\nExecStart=/usr/sbin/cowpunch agent\n[Install]\nWantedBy=multi-user.target\n' \
	>"$c/systemd/cowpunch-agent.service"
printf '[Service]\nType=oneshot\nExecStart=-/usr/bin/cowpunch reclaim x\nExecStartPost=/bin/true /usr/sbin/cowpunch\n' \
	>"$c/systemd/cowpunch-reclaim.service"
printf '[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n' >"$c/systemd/cowpunch-reclaim.timer"
echo 'groups: []' >"$c/prometheus/cowpunch-rules.yml"
echo '{}' >"$c/grafana/cowpunch-dashboard.json"
cp "$ROOT/contrib/bash-completion/cowpunch" "$c/bash-completion/"
d=$dir/dest2
mk install DESTDIR="$d" CONTRIB="$c" PREFIX=/opt/cp SBINDIR=/opt/cp/bin MANDIR=/opt/cp/man
check_tree "$d" "opt/cp/bin/cowpunch $(printf 'opt/cp/man/man8/%s\n' $pages)
	$(contrib_files "$c" | sed 's|^|opt/cp/|')"
u=$d/opt/cp/lib/systemd/system
grep -qx 'ExecStart=/opt/cp/bin/cowpunch agent' "$u/cowpunch-agent.service" ||
	fail "agent unit: ExecStart not moved to SBINDIR: $(grep Exec "$u/cowpunch-agent.service" 2>&1)"
grep -qx 'ExecStart=-/opt/cp/bin/cowpunch reclaim x' "$u/cowpunch-reclaim.service" ||
	fail "reclaim unit: ExecStart not moved to SBINDIR: $(grep Exec "$u/cowpunch-reclaim.service" 2>&1)"
grep -qx 'ExecStartPost=/bin/true /usr/sbin/cowpunch' "$u/cowpunch-reclaim.service" ||
	fail "reclaim unit: an argument was rewritten: $(grep ExecStartPost "$u/cowpunch-reclaim.service" 2>&1)"
cmp -s "$c/systemd/cowpunch-reclaim.timer" "$u/cowpunch-reclaim.timer" || fail "the timer changed"
cmp -s "$c/grafana/cowpunch-dashboard.json" "$d/opt/cp/share/cowpunch/grafana/cowpunch-dashboard.json" ||
	fail "the dashboard was not installed as it is"
for f in $(files "$d"); do
	want=644
	[ "$f" = opt/cp/bin/cowpunch ] && want=755
	[ "$(stat -c %a "$d/$f")" = "$want" ] || fail "$f: mode $(stat -c %a "$d/$f"), want $want"
done
check_pages "$d/opt/cp/man/man8"
mk uninstall DESTDIR="$d" CONTRIB="$c" PREFIX=/opt/cp SBINDIR=/opt/cp/bin MANDIR=/opt/cp/man
check_tree "$d" ""
[ -e "$d/opt/cp/share/cowpunch" ] && fail "uninstall left $d/opt/cp/share/cowpunch"

# 3. No contrib/ at all.
d=$dir/dest3
mk install DESTDIR="$d" CONTRIB="$dir/no-contrib"
check_tree "$d" "usr/local/sbin/cowpunch $(printf 'usr/local/share/man/man8/%s\n' $pages)"
mk uninstall DESTDIR="$d" CONTRIB="$dir/no-contrib"
check_tree "$d" ""
finish test-install
