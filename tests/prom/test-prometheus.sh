#!/usr/bin/env bash
# The metrics contract against a real Prometheus (Debian's), on loopback:
#  - promtool: the served text passes `check metrics`, the rules `check rules`;
#  - Prometheus scrapes tests/tools/metricsd and stores, for every sample
#    served, exactly the value served (and no other cowpunch series);
#  - the textfile equals the served text;
#  - every PromQL expression of the Grafana dashboard (Grafana variables
#    substituted) and of the rules file evaluates without error and returns at
#    least one series; Prometheus itself evaluates every rule healthy, and
#    every alert fires on the agent made to trigger it.
# Three targets: "static" (a host after a few cycles, fixed values), "alerting"
# (failures and refusals counting up every second, no cycle for an hour with a
# 60 s interval) and a port where nothing listens (agent down).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build}
metricsd=$build/tests/tools/metricsd
dashboard=$root/contrib/grafana/cowpunch-dashboard.json
rules=$root/contrib/prometheus/cowpunch-rules.yml
# shellcheck source=tests/prom/lib.sh
. "$here/lib.sh"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

for tool in prometheus promtool jq curl; do
	command -v $tool >/dev/null || fail "$tool is missing: scripts/deps.sh test installs it"
done
[ -x "$metricsd" ] || fail "$metricsd is missing: run make first"

work=$(mktemp -d "${TMPDIR:-/tmp}/cowpunch-promtest.XXXXXX")
pids=()
cleanup() {
	prom_stop
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Starts metricsd with the given arguments; sets $port once it serves.
start_metricsd() {
	local name=$1 i
	shift
	"$metricsd" --port-file "$work/$name.port" --textfile "$work/$name.prom" "$@" \
		>"$work/$name.log" 2>&1 &
	pids+=($!)
	for i in $(seq 1 100); do
		[ -s "$work/$name.port" ] && break
		kill -0 "${pids[-1]}" 2>/dev/null || fail "metricsd $name exited: $(cat "$work/$name.log")"
		sleep 0.1
	done
	port=$(cat "$work/$name.port" 2>/dev/null) || fail "metricsd $name did not start in 10 s"
}

# --- promtool on the rules ---
rules_out=$(promtool check rules "$rules" 2>&1) || fail "promtool check rules $rules: $rules_out"
nrules=$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' <<<"$rules_out")
[ "${nrules:-0}" -gt 0 ] || fail "promtool found no rules in $rules: $rules_out"

# --- the three targets ---
start_metricsd static --per-vm --interval 10m --version 9.8.7 --state "$here/static.state"
static=127.0.0.1:$port
start_metricsd alerting --interval 60s -e "cycle 3600 12" -e "reclaim ok 4" \
	--tick "reclaim failed" --tick "reclaim refused" --tick "observe 2.5" \
	--tick "reclaimed zero 4096" --tick "reclaimed mem_zero 8192" --tick "scanned 1048576"
alerting=127.0.0.1:$port
dead=127.0.0.1:$(free_port)

# --- what metricsd serves: promtool-clean, equal to its textfile, health ---
curl -sS --max-time 5 -o "$work/static.served" "http://$static/metrics"
curl -sS --max-time 5 -o "$work/alerting.served" "http://$alerting/metrics"
for t in static alerting; do
	out=$(promtool check metrics <"$work/$t.served" 2>&1) ||
		fail "promtool check metrics on the $t text: $out"
done
cmp "$work/static.served" "$work/static.prom" ||
	fail "the static textfile differs from the text served on /metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$static/healthz")
[ "$code" = 200 ] || fail "static /healthz: $code, expected 200 (cycle 5 s ago, interval 10 min)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$alerting/healthz")
[ "$code" = 503 ] || fail "alerting /healthz: $code, expected 503 (cycle 1 h ago, interval 60 s)"

# --- Prometheus ---
prom_start --rules "$rules" "$static" "$alerting" "$dead"
echo "prometheus on $PROM_URL scraping $static (static), $alerting (alerting), $dead (down)"
prom_wait_scrapes 3 30
prom_wait_rules 30

# Every sample served by the static target is stored with the same value, and
# nothing else: the served text parsed here with jq's regexes (not by
# Prometheus' parser), against one query for all the target's cowpunch series.
stored=$(prom_query "{instance=\"$static\", __name__=~\"cowpunch_.+\"}")
verdict=$(jq -rRn --argjson stored "$stored" '
	def key: to_entries | sort_by(.key) | map(.key + "=" + .value) | join(",");
	[inputs | select(test("^[^#]")) |
	 capture("^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(?<labels>.*)\\})? (?<value>[^ ]+)$") |
	 {key: ({__name__: .name} + ([(.labels // "") |
		scan("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"") |
		{(.[0]): .[1]}] | add // {}) | key), value: .value}] as $served |
	($stored | map({key: (.metric | del(.instance, .job) | key), value: .value[1]})) as $got |
	($got | from_entries) as $g |
	[$served[] | select(($g[.key] // "absent") as $v |
		$v == "absent" or ($v | tonumber) != (.value | tonumber)) |
	 "\(.key): served \(.value), stored \($g[.key] // "nothing")"] +
	[($got | length) as $n | select($n != ($served | length)) |
	 "Prometheus holds \($n) cowpunch series, \($served | length) were served"] |
	if length == 0 then "ok \($served | length)" else join("\n") end' <"$work/static.served")
[[ $verdict == "ok "* ]] || fail "stored values differ from the served ones:"$'\n'"$verdict"
[ "${verdict#ok }" -ge 40 ] || fail "only ${verdict#ok } samples parsed from the served text"
echo "ok: ${verdict#ok } samples stored as served"

# An expression must evaluate and give at least one series.
check_expr() {
	local what=$1 expr=$2 res
	res=$(prom_query "$expr") || fail "$what: '$expr' does not evaluate"
	[ "$res" != "[]" ] || fail "$what: '$expr' returns no series"
}

# Every expression of the dashboard, Grafana's variables substituted.
nexpr=0
while IFS= read -r -d '' e; do
	e=${e//'$__rate_interval'/1m}
	e=${e//'$__interval'/15s}
	e=${e//'$__range'/5m}
	e=${e//'${instance}'/.*}
	e=${e//'$instance'/.*}
	[[ $e != *'$'* ]] || fail "dashboard: unknown Grafana variable in '$e'"
	check_expr dashboard "$e"
	nexpr=$((nexpr + 1))
done < <(jq -j '.. | objects | select(has("expr")) | .expr + "\u0000"' "$dashboard")
[ "$nexpr" -ge 10 ] || fail "dashboard: only $nexpr expressions found"
# Template variables: label_values(EXPR, LABEL) must find values.
while IFS= read -r q; do
	m=$(sed -n 's/^label_values(\(.*\), *\([a-zA-Z_]*\))$/\1/p' <<<"$q")
	[ -n "$m" ] || fail "dashboard: template query '$q' is not label_values(EXPR, LABEL)"
	check_expr "dashboard variable" "$m"
done < <(jq -r '.templating.list[] | select(.type == "query") | (.query.query? // .query)' "$dashboard")
echo "ok: $nexpr dashboard expressions evaluate and return series"

# Every rule, as Prometheus parsed it: healthy, and its expression gives series.
rules_json=$(prom_api rules)
loaded=$(jq '[.groups[].rules[]] | length' <<<"$rules_json")
[ "$loaded" = "$nrules" ] || fail "Prometheus loaded $loaded rules, promtool counted $nrules"
while IFS=$'\t' read -r -d '' name health query err; do
	[ "$health" = ok ] || fail "rule $name: health $health: $err"
	check_expr "rule $name" "$query"
done < <(jq -j '.groups[].rules[] | [.name, .health, .query, (.lastError // "")] | join("\t") + "\u0000"' <<<"$rules_json")
# ... and every alert is pending or firing in Prometheus' own evaluation.
want=$(jq -r '[.groups[].rules[] | select(.type == "alerting") | .name] | sort | join(" ")' <<<"$rules_json")
have=$(prom_api alerts | jq -r '[.alerts[].labels.alertname] | unique | sort | join(" ")')
[ "$want" = "$have" ] || fail "alerts active: '$have', expected all of '$want'"
echo "ok: $nrules rules healthy and returning series; alerts active: $have"
