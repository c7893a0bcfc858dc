# Sourced by the Makefile's scripts: the project-local Airflow (embedded default) and import paths.
# shellcheck shell=bash
LEDGERLINK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LEDGERLINK_ROOT
export PATH="$LEDGERLINK_ROOT/.venv/bin:$PATH"
export PYTHONPATH="$LEDGERLINK_ROOT/include${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$LEDGERLINK_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$LEDGERLINK_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$LEDGERLINK_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# The Airflow UI (make up): its port, set here only, and loopback unless told otherwise.
export LEDGERLINK_UI_PORT="${LEDGERLINK_UI_PORT:-8080}"
export LEDGERLINK_UI_HOST="${LEDGERLINK_UI_HOST:-127.0.0.1}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-$LEDGERLINK_UI_HOST}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-$LEDGERLINK_UI_PORT}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$LEDGERLINK_UI_PORT/execution/}"
export LEDGERLINK_HOME="${LEDGERLINK_HOME:-$LEDGERLINK_ROOT/.ledgerlink}"
export SANDBOX_DIR="${SANDBOX_DIR:-$LEDGERLINK_ROOT/.sandbox}"
