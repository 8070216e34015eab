# shellcheck shell=bash
# A real Prometheus (Debian's `prometheus` binary) for tests, on loopback only,
# with its own temporary configuration and data directory.  Source this file;
# bash only.  Every wait is bounded; prom_stop always stops what prom_start
# started (call it from an EXIT trap).
#
#   prom_start [--rules FILE]... TARGET...   TARGET = 127.0.0.1:PORT, scraped every
#                                            second by job "cowpunch"; rules
#                                            evaluated every second
#   prom_wait_scrapes N [TIMEOUT_S]          until every target has N samples of `up`
#   prom_wait_rules [TIMEOUT_S]              until every rule was evaluated
#   prom_query EXPR                          prints the result array (JSON) of an
#                                            instant query; fails on a query error
#   prom_api PATH                            prints .data of GET /api/v1/PATH
#   prom_stop                                stops Prometheus, removes its directory
#   free_port                                prints a loopback TCP port nobody listens on
#
# Variables set by prom_start: PROM_URL, PROM_PID, PROM_DIR (config, data, log).
# PROM_KEEP=1 keeps PROM_DIR for a post-mortem.

PROM_BIN=${PROM_BIN:-prometheus}
PROM_URL= PROM_PID= PROM_DIR=

prom_log() { echo "prom: $*" >&2; }

# A port in 20000-32767 (below Linux's ephemeral range, so no outgoing
# connection holds it) on which nothing accepts connections now.
free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 12768))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	prom_log "no free port found in 50 tries"
	return 1
}

# curl with a hard time limit; prints the body.
prom_curl() {
	curl -sS --max-time 5 "$@"
}

prom_start() {
	local rules=() targets=() t r port try
	while [ $# -gt 0 ]; do
		case $1 in
		--rules)
			rules+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")")
			shift 2
			;;
		*)
			targets+=("$1")
			shift
			;;
		esac
	done
	if ! command -v "$PROM_BIN" >/dev/null; then
		prom_log "$PROM_BIN not found: install Debian's prometheus package (scripts/deps.sh test)"
		return 1
	fi
	PROM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cowpunch-prom.XXXXXX")
	{
		echo "global:"
		echo "  scrape_interval: 1s"
		echo "  scrape_timeout: 1s"
		echo "  evaluation_interval: 1s"
		echo "rule_files:"
		for r in "${rules[@]}"; do echo "  - '$r'"; done
		[ ${#rules[@]} -gt 0 ] || echo "  []"
		echo "scrape_configs:"
		echo "  - job_name: cowpunch"
		echo "    static_configs:"
		echo "      - targets:"
		for t in "${targets[@]}"; do echo "          - '$t'"; done
	} >"$PROM_DIR/prometheus.yml"
	# The port is only known free when checked: retry when another process took it.
	for try in 1 2 3 4 5; do
		port=$(free_port) || return 1
		PROM_URL=http://127.0.0.1:$port
		"$PROM_BIN" --config.file="$PROM_DIR/prometheus.yml" \
			--storage.tsdb.path="$PROM_DIR/data" \
			--web.listen-address="127.0.0.1:$port" \
			--log.level=warn >"$PROM_DIR/prometheus.log" 2>&1 &
		PROM_PID=$!
		if prom_wait_ready 30; then
			return 0
		fi
		if kill -0 "$PROM_PID" 2>/dev/null; then
			prom_log "Prometheus did not become ready in 30 s; its log:"
			cat "$PROM_DIR/prometheus.log" >&2
			return 1
		fi
		wait "$PROM_PID" 2>/dev/null || true
		PROM_PID=
		if ! grep -q "address already in use" "$PROM_DIR/prometheus.log"; then
			prom_log "Prometheus exited at start; its log:"
			cat "$PROM_DIR/prometheus.log" >&2
			return 1
		fi
		prom_log "port $port was taken meanwhile (try $try), another one"
	done
	return 1
}

# Until /-/ready answers 200, for at most $1 seconds; fails early when Prometheus died.
prom_wait_ready() {
	local deadline=$((SECONDS + $1))
	while [ $SECONDS -lt "$deadline" ]; do
		kill -0 "$PROM_PID" 2>/dev/null || return 1
		if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PROM_URL/-/ready")" = 200 ]; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# Prints FILTER applied to .data of an API reply on stdin, or says what the API
# reported and fails.  prom_data FILTER WHAT
prom_data() {
	jq -c --arg what "$2" "if .status == \"success\" then .data | $1
		else (\"prom: \" + \$what + \": \" + .errorType + \": \" + .error + \"\\n\" | halt_error(1)) end"
}

prom_api() {
	local out
	out=$(prom_curl "$PROM_URL/api/v1/$1") || return 1
	prom_data . "GET /api/v1/$1" <<<"$out"
}

prom_query() {
	local out
	out=$(prom_curl --data-urlencode "query=$1" "$PROM_URL/api/v1/query") || return 1
	prom_data .result "query '$1'" <<<"$out"
}

prom_wait_scrapes() {
	local n=$1 deadline=$((SECONDS + ${2:-30})) got
	while [ $SECONDS -lt "$deadline" ]; do
		# min over the targets of their `up` samples in the last minute; "" before any.
		got=$(prom_query 'min(count_over_time(up{job="cowpunch"}[1m]))' | jq -r '.[0].value[1] // 0') || got=0
		if [ "${got:-0}" -ge "$n" ] 2>/dev/null; then
			return 0
		fi
		sleep 0.5
	done
	prom_log "fewer than $n scrapes of every target after ${2:-30} s"
	return 1
}

prom_wait_rules() {
	local deadline=$((SECONDS + ${1:-30})) pending
	while [ $SECONDS -lt "$deadline" ]; do
		pending=$(prom_api rules | jq '[.groups[].rules[] | select(.health == "unknown")] | length') ||
			pending=
		[ "$pending" = 0 ] && return 0
		sleep 0.5
	done
	prom_log "rules still not evaluated after ${1:-30} s"
	return 1
}

# Safe under set -e, and when nothing was started.
prom_stop() {
	local i
	if [ -n "$PROM_PID" ]; then
		kill "$PROM_PID" 2>/dev/null || true
		for i in $(seq 1 50); do
			kill -0 "$PROM_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$PROM_PID" 2>/dev/null || true
		wait "$PROM_PID" 2>/dev/null || true
		PROM_PID=
	fi
	if [ -n "$PROM_DIR" ] && [ -z "${PROM_KEEP:-}" ]; then
		rm -rf "$PROM_DIR"
	elif [ -n "$PROM_DIR" ]; then
		prom_log "kept $PROM_DIR"
	fi
	PROM_DIR=
}
