#!/usr/bin/env bash
# make bench: the performance benchmark of issue 7 (writes bench/results.json and bench/RESULTS.md).
# BENCH_ROWS shrinks it (default 1,000,000 invoice lines); BENCH_GROWTH_FACTOR=0 skips the 5x memory run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LEDGERLINK_ROOT"
export PYTHONPATH="$LEDGERLINK_ROOT:$PYTHONPATH"
exec python -m bench.run "$@"
