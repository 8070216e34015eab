#!/usr/bin/env bash
# `make bench`: runs every benchmark.  Results go into docs/benchmarks.md by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/reclaim-vs-dig-holes" "${BUILD_DIR:-$here/../build}"
"$here/agent-cycle" "${BUILD_DIR:-$here/../build}"
"$here/sparsify-vs-dig-holes" "${BUILD_DIR:-$here/../build}"
