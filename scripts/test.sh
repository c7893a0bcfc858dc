#!/usr/bin/env bash
# make test: the whole suite (unit, DAG integrity, real servers, Airflow end to end).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LEDGERLINK_ROOT"
exec python -m pytest -p no:cacheprovider "$@"
