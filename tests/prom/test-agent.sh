#!/usr/bin/env bash
# A real Prometheus scrapes a running `cowpunch agent` over a state directory of detached VMs
# (tests/tools/mkvms: records, COW stores, memory files).  Through Prometheus's HTTP API: the
# stored sum(cowpunch_reclaimed_bytes_total) equals the sum of the per-VM results in the records
# and the drop in the files' st_blocks; every PromQL expression of the dashboard evaluates and
# returns series from the agent's own metrics; promtool check metrics passes on what it serves.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build}
dashboard=$root/contrib/grafana/cowpunch-dashboard.json
# shellcheck source=tests/prom/lib.sh
. "$here/lib.sh"
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
for tool in prometheus promtool jq curl; do
	command -v $tool >/dev/null || fail "$tool is missing: scripts/deps.sh test installs it"
done
work=$(mktemp -d "${TMPDIR:-/tmp}/cowpunch-promagent.XXXXXX")
agent=
cleanup() {
	prom_stop
	[ -z "$agent" ] || { kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; } || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

state=$work/state
"$build/tests/tools/mkvms" --chunks 512 --zero-pct 40 --mem-size 2M "$state" 4
files=$(ls "$state"/vm-*/cow "$state"/vm-*/mem)
before=$(stat -c %b $files | awk '{s += $1} END {print s * 512}')
port=$(free_port)
"$build/cowpunch" agent --interval 1h --listen 127.0.0.1:$port --per-vm-metrics --state-dir "$state" \
	2>"$work/agent.log" &
agent=$!
for _ in $(seq 1 100); do
	curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || fail "the agent's first cycle did not end: $(cat "$work/agent.log")"
after=$(stat -c %b $files | awk '{s += $1} END {print s * 512}')
drop=$((before - after))
records=$(cat "$state"/vm-*/vm.json | jq -s '[.[].last_reclaim | .reclaimed_bytes + .mem_reclaimed_bytes] | add')
[ "$drop" -gt 0 ] || fail "nothing given back"
[ "$records" -eq "$drop" ] || fail "records say $records, st_blocks dropped $drop"

curl -sf "http://127.0.0.1:$port/metrics" >"$work/served"
out=$(promtool check metrics <"$work/served" 2>&1) || fail "promtool check metrics: $out"

prom_start 127.0.0.1:$port
prom_wait_scrapes 3 60
stored=$(prom_query 'sum(cowpunch_reclaimed_bytes_total)' | jq -r '.[0].value[1]')
[ "$stored" = "$drop" ] || fail "Prometheus stores sum(cowpunch_reclaimed_bytes_total) = $stored, st_blocks dropped $drop"
per_vm=$(prom_query 'sum(cowpunch_vm_reclaimed_bytes_total)' | jq -r '.[0].value[1]')
[ "$per_vm" = "$drop" ] || fail "per-VM series sum to $per_vm, not $drop"
echo "ok: Prometheus stores $stored bytes given back = records = st_blocks drop"

nexpr=0
while IFS= read -r -d '' e; do
	e=${e//'$__rate_interval'/1m}
	e=${e//'$__interval'/15s}
	e=${e//'$__range'/5m}
	e=${e//'${instance}'/.*}
	e=${e//'$instance'/.*}
	res=$(prom_query "$e") || fail "dashboard: '$e' does not evaluate"
	[ "$res" != "[]" ] || fail "dashboard: '$e' returns no series from the agent"
	nexpr=$((nexpr + 1))
done < <(jq -j '.. | objects | select(has("expr")) | .expr + "\u0000"' "$dashboard")
[ "$nexpr" -ge 10 ] || fail "dashboard: only $nexpr expressions found"
echo "ok: $nexpr dashboard expressions evaluate over the real agent"
kill -TERM "$agent"
wait "$agent" || fail "the agent exited $? on SIGTERM"
agent=
echo "test-agent: ok"
