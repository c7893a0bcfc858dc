#!/usr/bin/env bash
# make up: the sandbox plus the Airflow UI (airflow standalone) on http://localhost:8080.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LEDGERLINK_ROOT"
python -m sandbox up --dir "$SANDBOX_DIR"
trap 'python -m sandbox down --dir "$SANDBOX_DIR"' EXIT
# shellcheck disable=SC1091
source "$SANDBOX_DIR/connections.env"
python -m ledgerlink migrate  # the ledger's schema: tasks only check it is at head
airflow db migrate > /dev/null  # standalone would too; the pools below need the metadata database
bash scripts/einvoice_pools.sh  # the e-invoice integrators' pools
exec airflow standalone
