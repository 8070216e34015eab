#!/usr/bin/env bash
# bench/cow-path/report.sh DIR: from the fio JSON and index.tsv that guest.sh left in DIR, writes
#   results.csv  one row a job: the figures (IOPS, MiB/s, completion latency p50/p99/mean)
#   ratios.csv   each non-raw row against the raw file's row of the same pattern, engine,
#                queue depth and loop mode (IOPS ratio, latency ratios)
#   iops, bw, latency, ratio, variations-qdN (.png and .svg): gnuplot bar charts
#   report.md    the tables for docs/benchmarks.md
# bench/cow-path/report.sh --reclaim CSV DIR: plots the reclaim benchmarks' figures (CSV:
#   bench,fs,cache,tool,median_s) into DIR/reclaim.png and .svg.
set -euo pipefail

die() {
	echo "report: $*" >&2
	exit 2
}
command -v gnuplot >/dev/null || die "gnuplot is missing (scripts/deps.sh bench)"
command -v jq >/dev/null || die "jq is missing (scripts/deps.sh bench)"

# plot NAME TITLE YLABEL DATA LOGSCALE [EXTRA]: a clustered bar chart of DATA (whitespace
# separated, a header line; column 1 the cluster label, the others the bars; "-" is missing)
# written to NAME.png and NAME.svg.
plot() {
	local name=$1 title=$2 ylabel=$3 data=$4 log=$5 extra=${6:-} ncol term
	ncol=$(head -n1 "$data" | awk '{ print NF }')
	for term in "pngcairo size 1400,700 font ',10'|png" "svg size 1400,700 dynamic font ',10'|svg"; do
		gnuplot <<EOF
set terminal ${term%|*} noenhanced
set output '$name.${term#*|}'
set title "$title"
set ylabel "$ylabel"
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top
set xtics rotate by 30 right noenhanced
set key noenhanced
$(if [ -n "$log" ]; then echo "set logscale y"; else echo "set yrange [0:*]"; fi)
$extra
plot for [i=2:$ncol] '$data' using i:xtic(1) title columnhead(i)
EOF
	done
}

if [ "${1:-}" = --reclaim ]; then
	[ $# = 3 ] || die "usage: report.sh --reclaim CSV DIR"
	csv=$2 dir=$3
	mkdir -p "$dir"
	t=$(mktemp)
	# Rows: bench / fs / cache; columns: the tools.
	awk -F, 'NR > 1 { k = $1 " " $2 " " $3; gsub(/ /, "_", k); if (!(k in seen)) { seen[k] = 1; rows[++nr] = k }
		if (!($4 in tseen)) { tseen[$4] = 1; tools[++nt] = $4 }; v[k, $4] = $5 }
		END { printf "case"; for (j = 1; j <= nt; j++) { x = tools[j]; gsub(/ /, "_", x); printf " %s", x }; print ""
			for (i = 1; i <= nr; i++) { printf "%s", rows[i]; for (j = 1; j <= nt; j++) printf " %s", ((rows[i], tools[j]) in v) ? v[rows[i], tools[j]] : "-"; print "" } }' \
		"$csv" >"$t"
	plot "$dir/reclaim" "Reclaim benchmarks (docs/benchmarks.md): median wall time" "seconds" "$t" ""
	rm -f "$t"
	exit 0
fi

dir=${1:?usage: report.sh DIR}
[ -s "$dir/index.tsv" ] || die "$dir/index.tsv is missing or empty"
kernel=$(sed -n 's/^kernel=//p' "$dir/meta" 2>/dev/null)
csv=$dir/results.csv

# --- results.csv ---------------------------------------------------------------------------------
echo "kernel,config,target,pattern,job,rw,bs,iodepth,engine,chunk,cow_dio,iops,bw_mib_s,p50_us,p99_us,mean_us,runtime_ms,ios,json" >"$csv"
while IFS=$'\t' read -r cfg chunk dio target job bs qd engine file; do
	case $job in *read*) d=read ;; *) d=write ;; esac
	pattern=${job%-first}
	pattern=${pattern%-once}
	jq -r --arg d "$d" '.jobs[0][$d] | [.iops, .bw / 1024, (.clat_ns.percentile["50.000000"] // 0) / 1000,
		(.clat_ns.percentile["99.000000"] // 0) / 1000, .clat_ns.mean / 1000, .runtime, .total_ios]
		| map(. * 100 | round / 100) | @csv' "$dir/$file" |
		sed "s|^|$kernel,$cfg,$target,$pattern,$job,$d,$bs,$qd,$engine,$chunk,$dio,|; s|\$|,$file|"
done <"$dir/index.tsv" >>"$csv"

# --- ratios.csv: against the raw file of the same pattern, engine, depth and loop mode ----------------
awk -F, -v OFS=, 'NR == 1 { next }
	{ key = $4 FS $8 FS $9 FS $11 }
	$3 == "raw" { iops[key] = $12; p50[key] = $14; p99[key] = $15; next }
	{ rows[++n] = $0; keys[n] = key }
	END {
		print "config,target,pattern,iodepth,engine,chunk,cow_dio,iops,raw_iops,iops_ratio,p50_ratio,p99_ratio"
		for (i = 1; i <= n; i++) {
			split(rows[i], f, FS); k = keys[i]
			if (!(k in iops) || iops[k] == 0) continue
			printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%.3f,%s,%s\n", f[2], f[3], f[4], f[8], f[9], f[10], f[11],
				f[12], iops[k], f[12] / iops[k],
				(p50[k] > 0 ? sprintf("%.3f", f[14] / p50[k]) : "-"), (p99[k] > 0 ? sprintf("%.3f", f[15] / p99[k]) : "-")
		}
	}' "$csv" >"$dir/ratios.csv"

# --- plots ----------------------------------------------------------------------------------------
main=$(awk -F'\t' '{ print $1; exit }' "$dir/index.tsv")
order="raw base ov-read-base ov-read-cow ov-first ov-overwrite ov-reclaimed thin-read-origin thin-read-prov thin-first thin-overwrite"
engine_main=$(awk -F'\t' -v c="$main" '$1 == c { print $8; exit }' "$dir/index.tsv")
qds=$(awk -F'\t' -v c="$main" '$1 == c { print $7 }' "$dir/index.tsv" | sort -un | tr '\n' ' ')
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT

# table CONFIG ENGINE FIELD [TARGETS]: rows = targets, columns = pattern x depth, values = FIELD
# (a results.csv column number).
table() {
	awk -F, -v c="$1" -v e="$2" -v fld="$3" -v order="$4" -v qds="$qds" '
		NR > 1 && $2 == c && $9 == e { v[$3, $4, $8] = $fld }
		END {
			np = split("randread-4k randwrite-4k read-1m write-1m", pats, " "); nq = split(qds, q, " ")
			printf "target"; for (i = 1; i <= np; i++) for (j = 1; j <= nq; j++) printf " %s_QD%s", pats[i], q[j]; print ""
			nt = split(order, tg, " ")
			for (k = 1; k <= nt; k++) {
				line = tg[k]; any = 0
				for (i = 1; i <= np; i++) for (j = 1; j <= nq; j++) {
					x = ((tg[k], pats[i], q[j]) in v) ? v[tg[k], pats[i], q[j]] : "-"; if (x != "-") any = 1; line = line " " x }
				if (any) print line
			}
		}' "$csv"
}
table "$main" "$engine_main" 12 "$order" >"$t/iops"
table "$main" "$engine_main" 13 "$order" >"$t/bw"
sub="$main, $engine_main, kernel $kernel"
plot "$dir/iops" "IOPS per target ($sub)" "IOPS (log)" "$t/iops" 1
plot "$dir/bw" "Bandwidth per target ($sub)" "MiB/s (log)" "$t/bw" 1
# Latency: p50 and p99 of the 4 KiB patterns at each depth.
awk -F, -v c="$main" -v e="$engine_main" -v order="$order" -v qds="$qds" '
	NR > 1 && $2 == c && $9 == e && $7 == "4k" { p50[$3, $4, $8] = $14; p99[$3, $4, $8] = $15 }
	END {
		nq = split(qds, q, " "); nt = split(order, tg, " ")
		printf "target"; for (j = 1; j <= nq; j++) printf " randread_p50_QD%s randread_p99_QD%s randwrite_p50_QD%s randwrite_p99_QD%s", q[j], q[j], q[j], q[j]; print ""
		for (k = 1; k <= nt; k++) {
			line = tg[k]; any = 0
			for (j = 1; j <= nq; j++) { split("randread-4k randwrite-4k", ps, " ")
				for (i = 1; i <= 2; i++) { a = ((tg[k], ps[i], q[j]) in p50) ? p50[tg[k], ps[i], q[j]] : "-"
					b = ((tg[k], ps[i], q[j]) in p99) ? p99[tg[k], ps[i], q[j]] : "-"; if (a != "-") any = 1; line = line " " a " " b } }
			if (any) print line
		}
	}' "$csv" >"$t/lat"
plot "$dir/latency" "4 KiB completion latency p50 / p99 ($sub)" "microseconds (log)" "$t/lat" 1
# Ratio to the raw file, IOPS.
awk -F, -v c="$main" -v e="$engine_main" -v order="${order#raw }" -v qds="$qds" '
	NR > 1 && $1 == c && $5 == e { v[$2, $3, $4] = $10 }
	END {
		np = split("randread-4k randwrite-4k read-1m write-1m", pats, " "); nq = split(qds, q, " ")
		printf "target"; for (i = 1; i <= np; i++) for (j = 1; j <= nq; j++) printf " %s_QD%s", pats[i], q[j]; print ""
		nt = split(order, tg, " ")
		for (k = 1; k <= nt; k++) { line = tg[k]; any = 0
			for (i = 1; i <= np; i++) for (j = 1; j <= nq; j++) { x = ((tg[k], pats[i], q[j]) in v) ? v[tg[k], pats[i], q[j]] : "-"; if (x != "-") any = 1; line = line " " x }
			if (any) print line }
	}' "$dir/ratios.csv" >"$t/ratio"
plot "$dir/ratio" "IOPS of each target / IOPS of the raw file, same pattern and depth ($sub)" \
	"ratio to raw file (log)" "$t/ratio" 1 "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2"
# Variations: each overlay target and pattern (rows) in each chunk size and loop mode (columns),
# as the ratio to the raw file with the same loop mode, per queue depth.
cfgs=$(awk -F'\t' '{ print $1 }' "$dir/index.tsv" | awk '!s[$0]++' | tr '\n' ' ')
var_engine=$(awk -F'\t' -v c="$main" '$1 != c { print $8; exit }' "$dir/index.tsv")
var_qds=$(awk -F'\t' -v c="$main" '$1 != c { print $7 }' "$dir/index.tsv" | sort -un | tr '\n' ' ')
for q in $var_qds; do
	awk -F, -v e="$var_engine" -v q="$q" -v cfgs="$cfgs" '
		NR > 1 && $5 == e && $4 == q && $2 ~ /^ov-/ { k = $2 ":" $3; if (!(k in seen)) { seen[k] = 1; rows[++n] = k }; v[k, $1] = $10 }
		END {
			nc = split(cfgs, c, " "); printf "target:pattern"; for (j = 1; j <= nc; j++) printf " %s", c[j]; print ""
			for (i = 1; i <= n; i++) { printf "%s", rows[i]; for (j = 1; j <= nc; j++) printf " %s", ((rows[i], c[j]) in v) ? v[rows[i], c[j]] : "-"; print "" }
		}' "$dir/ratios.csv" >"$t/var"
	[ "$(wc -l <"$t/var")" -gt 1 ] || continue
	plot "$dir/variations-qd$q" "Overlay IOPS / raw-file IOPS by chunk size and COW loop mode ($var_engine, QD $q, kernel $kernel)" \
		"ratio to raw file, same loop mode (log)" "$t/var" 1 "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2"
done

# fmt(RATIO): two decimals, three below 0.1.
fmt='function fmt(x) { return sprintf(x < 0.1 ? "%.3f" : "%.2f", x) }'
# --- report.md ---------------------------------------------------------------------------------------
{
	echo "Measured $(sed -n 's/^date=//p' "$dir/meta"), kernel $kernel, $(sed -n 's/^machine=//p' "$dir/meta");"
	echo "$(sed -n 's/^fio=//p' "$dir/meta"); $(sed -n 's/^size_mb=\([0-9]*\) ramp=\([0-9.]*\) runtime=\([0-9.]*\)/targets of \1 MiB, warm-up (ramp_time) \2 s, runtime \3 s/p' "$dir/meta");"
	echo "$(sed -n 's/^jobs=//p' "$dir/meta") jobs in $(sed -n 's/^seconds=//p' "$dir/meta") s; work file system: $(sed -n 's/^work_fs=//p' "$dir/meta")."
	! grep -q '^host=' "$dir/meta" || echo "Host: $(sed -n 's/^host=//p' "$dir/meta")."
	echo
	for e in $(awk -F, -v c="$main" 'NR > 1 && $2 == c { print $9 }' "$csv" | awk '!s[$0]++'); do
		echo "#### $main, $e"
		echo
		echo "| target | pattern | QD | IOPS | MiB/s | p50 µs | p99 µs | IOPS / raw | p99 / raw |"
		echo "|---|---|---|---|---|---|---|---|---|"
		awk -F, -v c="$main" -v e="$e" -v order="$order" -v r="$dir/ratios.csv" "$fmt"'
			BEGIN { while ((getline l < r) > 0) { split(l, f, ","); ri[f[1], f[2], f[3], f[4], f[5]] = f[10]; rp[f[1], f[2], f[3], f[4], f[5]] = f[12] }
				nt = split(order, tg, " "); for (k = 1; k <= nt; k++) rank[tg[k]] = k }
			NR > 1 && $2 == c && $9 == e { k = $2 SUBSEP $3 SUBSEP $4 SUBSEP $8 SUBSEP $9
				printf "%02d %s %08d|| %s | %s | %s | %.0f | %.1f | %.0f | %.0f | %s | %s |\n", rank[$3], $4, $8, $3, $5, $8, $12, $13, $14, $15,
					(k in ri) ? fmt(ri[k]) : "1.00", (k in rp) ? (rp[k] == "-" ? "-" : sprintf("%.2f", rp[k])) : "1.00" }' "$csv" | sort | sed 's/^.*||/|/'
		echo
	done
	if [ -n "$var_qds" ]; then
		echo "#### Chunk size and COW loop mode: IOPS / raw-file IOPS (same loop mode), $var_engine"
		echo
		printf '| target | pattern | QD |'
		for c in $cfgs; do printf ' %s |' "$c"; done
		echo
		printf '|---|---|---|'
		for c in $cfgs; do printf -- '---|'; done
		echo
		awk -F, -v e="$var_engine" -v cfgs="$cfgs" "$fmt"'
			NR > 1 && $5 == e && $2 ~ /^ov-/ { k = $2 "|" $3 "|" $4; if (!(k in seen)) { seen[k] = 1; rows[++n] = k }; v[k, $1] = $10 }
			END { nc = split(cfgs, c, " ")
				for (i = 1; i <= n; i++) { split(rows[i], f, "|"); printf "| %s | %s | %s |", f[1], f[2], f[3]
					for (j = 1; j <= nc; j++) printf " %s |", ((rows[i], c[j]) in v) ? fmt(v[rows[i], c[j]]) : "-"; print "" } }' "$dir/ratios.csv"
		echo
		echo "Raw-file IOPS the ratios divide by:"
		echo
		echo "| loop direct I/O | pattern | QD | IOPS |"
		echo "|---|---|---|---|"
		awk -F, -v e="$var_engine" 'NR > 1 && $3 == "raw" && $9 == e { printf "| %s | %s | %s | %.0f |\n", $11, $4, $8, $12 }' "$csv" | sort -u
		echo
	fi
	echo "#### Plots"
	echo
	for p in iops bw latency ratio variations-qd1 variations-qd32; do
		[ -e "$dir/$p.svg" ] && echo "![$p]($p.svg)"
	done
	echo
} >"$dir/report.md"
echo "report: $(($(wc -l <"$csv") - 1)) jobs -> $csv, $dir/ratios.csv, $dir/report.md, plots $(cd "$dir" && ls *.png | tr '\n' ' ')"
