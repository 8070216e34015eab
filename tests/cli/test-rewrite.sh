#!/usr/bin/env bash
# --strategy rewrite|punch|auto on reclaim (COW path), sparsify and the agent: the bytes are
# unchanged (sha256), the path names a new inode, the zero chunks became holes (st_blocks),
# owner, mode and xattrs came over, the store is valid (inspect), no temp file is left; the
# refusals (two links, a file another process holds open) exit 5 with the file untouched,
# and auto then punches and says why; a stale temp file goes with the next run; the agent's
# record takes the new inode and its next cycle finds the VM unchanged; the agent rewrites a
# memory file too, and one another process holds it punches (auto) or refuses (rewrite).
set -u
: "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" "$BUILD_DIR/tests/tools/mkvms" jq python3
mkvms=$BUILD_DIR/tests/tools/mkvms

state() { echo "$(sha256sum <"$1") $(stat -c %b "$1")"; }
tmpname() { echo "$(dirname "$1")/.$(basename "$1").cowpunch-rewrite"; }

expect_rc 2 "$COWPUNCH" reclaim --strategy bogus "$dir/x"
grep -q "unknown strategy 'bogus'" "$dir/err" || fail "bad strategy: $(cat "$dir/err")"
expect_rc 2 "$COWPUNCH" sparsify --strategy bogus "$dir/x"
expect_rc 2 "$COWPUNCH" agent --once --strategy bogus --state-dir "$dir/none"

# --- rewrite a store: 100 data, 50 written zeros, 20 holes, 30 data, 200 written zeros
"$MKSTORE" "$dir/cow" add=1000,100 add=2000,50,1 add=3000,20,2 add=4000,30 add=5000,200,1 ||
	fail "mkstore cow"
chmod 0604 "$dir/cow"
chown 1234:5678 "$dir/cow"
python3 -c "import os, sys; os.setxattr(sys.argv[1], 'user.cowpunch', b'kept')" "$dir/cow" ||
	fail "setxattr"
sha=$(sha256sum <"$dir/cow")
ino=$(stat -c %i "$dir/cow")
blocks=$(stat -c %b "$dir/cow")
expect_rc 0 "$COWPUNCH" reclaim --strategy rewrite --json "$dir/cow"
jq_is .strategy rewrite
jq_is .zero_chunks 250
jq_is .punched_ranges 0
jq_is '.bytes_written > 0' true
jq_is '.strategy_reason | contains("--strategy rewrite")' true
[ "$(sha256sum <"$dir/cow")" = "$sha" ] || fail "rewrite changed the bytes"
[ "$(stat -c %i "$dir/cow")" != "$ino" ] || fail "rewrite kept the inode: nothing renamed"
freed=$(((blocks - $(stat -c %b "$dir/cow")) * 512))
[ "$freed" -ge $((250 * 4096)) ] || fail "rewrite freed $freed bytes, want >= $((250 * 4096))"
jq_is .reclaimed_bytes "$freed"
[ "$(stat -c '%a %u %g' "$dir/cow")" = "604 1234 5678" ] ||
	fail "mode/owner now $(stat -c '%a %u %g' "$dir/cow")"
[ "$(python3 -c "import os, sys; print(os.getxattr(sys.argv[1], 'user.cowpunch').decode())" \
	"$dir/cow")" = kept ] || fail "user.cowpunch lost"
[ ! -e "$(tmpname "$dir/cow")" ] || fail "temp file left after a rewrite"
expect_rc 0 "$COWPUNCH" inspect "$dir/cow"
# Text output names the strategy.
expect_rc 0 "$COWPUNCH" reclaim --strategy rewrite "$dir/cow"
grep -q "strategy rewrite" "$dir/out" || fail "text output does not name the strategy"

# --- a stale temp file (a killed rewrite) goes with the next run, punch included
echo partial >"$(tmpname "$dir/cow")"
expect_rc 0 "$COWPUNCH" reclaim --strategy punch --json "$dir/cow"
jq_is .strategy punch
[ ! -e "$(tmpname "$dir/cow")" ] || fail "a punch run left the stale temp file"

# --- refused: two links.  Forced: exit 5, untouched; auto: punched, and says why.
"$MKSTORE" "$dir/linked" add=1000,50 add=2000,50,1 || fail "mkstore linked"
ln "$dir/linked" "$dir/linked2"
s=$(state "$dir/linked")
ino=$(stat -c %i "$dir/linked")
expect_rc 5 "$COWPUNCH" reclaim --strategy rewrite "$dir/linked"
grep -q "2 links" "$dir/err" || fail "links refusal does not say why: $(cat "$dir/err")"
[ "$(state "$dir/linked")" = "$s" ] || fail "a refused rewrite changed the file"
expect_rc 5 "$COWPUNCH" reclaim --strategy rewrite --json "$dir/linked"
jq_is .exit_code 5
expect_rc 0 "$COWPUNCH" reclaim --json "$dir/linked"
jq_is .strategy punch
jq_is '.strategy_reason | contains("2 links")' true
jq_is .zero_chunks 50
[ "$(stat -c %i "$dir/linked")" = "$ino" ] || fail "auto over two links changed the inode"
[ "$(sha256sum <"$dir/linked" | cut -d' ' -f1)" = "${s%% *}" ] ||
	fail "auto over two links changed the bytes"

# --- sparsify: a plain file with a partial last block, rewritten; refused while held open
python3 - "$dir/plain" <<'EOF'
import os, sys
with open(sys.argv[1], 'wb') as f:
    for i in range(300):
        f.write(os.urandom(4096) if i % 3 == 0 else bytes(4096))
    f.write(b'x' * 100)
EOF
sha=$(sha256sum <"$dir/plain")
ino=$(stat -c %i "$dir/plain")
expect_rc 0 "$COWPUNCH" sparsify --strategy rewrite --json "$dir/plain"
jq_is '.files[0].strategy' rewrite
jq_is '.files[0].zero_blocks' 200
[ "$(sha256sum <"$dir/plain")" = "$sha" ] || fail "sparsify rewrite changed the bytes"
[ "$(stat -c %i "$dir/plain")" != "$ino" ] || fail "sparsify rewrite kept the inode"
[ "$(stat -c %b "$dir/plain")" -le $((101 * 8 + 8)) ] ||
	fail "sparsify rewrite left $(stat -c %b "$dir/plain") blocks"
cp "$dir/plain" "$dir/held"
dd if=/dev/zero of="$dir/held" bs=4096 count=50 conv=notrunc status=none
sleep 30 <"$dir/held" &
holder=$!
cleanup_hooks+=('kill $holder 2>/dev/null')
s=$(state "$dir/held")
expect_rc 5 "$COWPUNCH" sparsify --strategy rewrite "$dir/held"
grep -q "process $holder" "$dir/err" || fail "held-open refusal does not name $holder: $(cat "$dir/err")"
[ "$(state "$dir/held")" = "$s" ] || fail "a refused sparsify rewrite changed the file"
expect_rc 0 "$COWPUNCH" sparsify --json "$dir/held"
jq_is '.files[0].strategy' punch
jq_is ".files[0].strategy_reason | contains(\"process $holder\")" true
kill $holder 2>/dev/null

# --- the agent: a rewrite updates the record's stamp to the new inode; the next cycle skips it.
# The memory file is rewritten too: the same bytes, a new inode, its zero pages holes.
S=$dir/state
"$mkvms" --chunks 256 --zero-pct 50 --mem-size 4M "$S" 1 || fail "mkvms failed"
cow=$(echo "$S"/vm-*/cow)
sha=$(sha256sum <"$cow")
ino=$(stat -c %i "$cow")
mem=$(echo "$S"/vm-*/mem)
msha=$(sha256sum <"$mem")
mino=$(stat -c %i "$mem")
mblocks=$(stat -c %b "$mem")
expect_rc 0 "$COWPUNCH" agent --once --no-fs-aware --strategy rewrite --state-dir "$S" \
	--textfile "$dir/m.prom"
[ "$(sha256sum <"$cow")" = "$sha" ] || fail "agent rewrite changed the COW's bytes"
[ "$(stat -c %i "$cow")" != "$ino" ] || fail "agent --strategy rewrite kept the inode"
rec=$(echo "$S"/vm-*/vm.json)
[ "$(jq -r .last_reclaim.cow_stamp.ino "$rec")" = "$(stat -c %i "$cow")" ] ||
	fail "record's cow_stamp.ino $(jq -r .last_reclaim.cow_stamp.ino "$rec") is not the new inode"
[ "$(jq -r .last_reclaim.strategy "$rec")" = rewrite ] ||
	fail "record's strategy is $(jq -r .last_reclaim.strategy "$rec"), want rewrite"
grep -q '^cowpunch_cow_reclaims_total{strategy="rewrite"} 1$' "$dir/m.prom" &&
	grep -q '^cowpunch_cow_reclaims_total{strategy="punch"} 0$' "$dir/m.prom" ||
	fail "the rewrite is not counted as one: $(grep cow_reclaims_total "$dir/m.prom")"
grep -q '^cowpunch_mem_reclaims_total{strategy="rewrite"} 1$' "$dir/m.prom" &&
	grep -q '^cowpunch_mem_reclaims_total{strategy="punch"} 0$' "$dir/m.prom" ||
	fail "the memory file's rewrite is not counted as one: $(grep mem_reclaims_total "$dir/m.prom")"
grep -q "result=ok strategy=rewrite mem_strategy=rewrite " "$dir/err" ||
	fail "the agent's log line does not say rewrite for both files: $(cat "$dir/err")"
[ "$(sha256sum <"$mem")" = "$msha" ] || fail "agent rewrite changed the memory file's bytes"
[ "$(stat -c %i "$mem")" != "$mino" ] || fail "agent --strategy rewrite kept the memory file's inode"
[ "$(jq -r .last_reclaim.mem_strategy "$rec")" = rewrite ] ||
	fail "record's mem_strategy is $(jq -r .last_reclaim.mem_strategy "$rec"), want rewrite"
[ "$(jq -r .last_reclaim.mem_stamp.ino "$rec")" = "$(stat -c %i "$mem")" ] ||
	fail "record's mem_stamp.ino is not the memory file's new inode"
mfreed=$(((mblocks - $(stat -c %b "$mem")) * 512))
[ "$mfreed" -gt $((1 << 20)) ] && [ "$(jq -r .last_reclaim.mem_reclaimed_bytes "$rec")" -eq "$mfreed" ] ||
	fail "memory file: st_blocks fell by $mfreed bytes, record says $(jq -r .last_reclaim.mem_reclaimed_bytes "$rec")"
[ "$(jq -r .last_reclaim.reclaimed_bytes "$rec")" -ge $((128 * 4096)) ] ||
	fail "record says $(jq -r .last_reclaim.reclaimed_bytes "$rec") given back"
expect_rc 0 "$COWPUNCH" agent --once --no-fs-aware --strategy rewrite --state-dir "$S" \
	--textfile "$dir/m.prom"
grep -q 'cowpunch_reclaims_total{result="unchanged"} 1' "$dir/m.prom" ||
	fail "the cycle after a rewrite did not find the VM unchanged: $(grep reclaims_total "$dir/m.prom")"
expect_rc 0 "$COWPUNCH" inspect "$cow"

# A memory file another process has open (read-only: a restored VM maps it) would keep the old
# file: auto punches it in place; a forced rewrite fails the visit and leaves it untouched.
"$mkvms" --chunks 64 --zero-pct 50 --mem-size 4M "$dir/held-state" 1 || fail "mkvms failed"
mem=$(echo "$dir"/held-state/vm-*/mem)
sleep 60 <"$mem" &
mholder=$!
cleanup_hooks+=('kill $mholder 2>/dev/null')
s=$(state "$mem")
mino=$(stat -c %i "$mem")
expect_rc 1 "$COWPUNCH" agent --once --no-fs-aware --strategy rewrite --state-dir "$dir/held-state"
grep -q "rewrite refused: $mem is open or mapped by process $mholder" "$dir/err" ||
	fail "a forced rewrite of a held memory file: no refusal naming $mholder: $(cat "$dir/err")"
[ "$(state "$mem")" = "$s" ] || fail "a refused memory-file rewrite changed the file"
msha=$(sha256sum <"$mem")
expect_rc 0 "$COWPUNCH" agent --once --no-fs-aware --state-dir "$dir/held-state"
grep -q "mem_strategy=punch " "$dir/err" || fail "auto did not punch the held memory file: $(cat "$dir/err")"
[ "$(jq -r .last_reclaim.mem_strategy "$dir"/held-state/vm-*/vm.json)" = punch ] ||
	fail "the record does not say the held memory file was punched"
[ "$(stat -c %i "$mem")" = "$mino" ] || fail "auto rewrote a memory file another process holds"
[ "$(sha256sum <"$mem")" = "$msha" ] || fail "auto's punch changed the held memory file's bytes"
[ "$(state "$mem")" != "$s" ] || fail "auto gave nothing back from the held memory file"
kill $mholder 2>/dev/null

finish rewrite
