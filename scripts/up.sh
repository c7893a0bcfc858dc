#!/usr/bin/env bash
# make up: the sandbox plus the Airflow UI (airflow standalone) on http://127.0.0.1:$LEDGERLINK_UI_PORT.
# The UI listens on loopback only unless LEDGERLINK_UI_HOST says otherwise (e.g. 0.0.0.0 to reach it from another
# machine); the port is LEDGERLINK_UI_PORT (scripts/env.sh, default 8080). Stopping Airflow (Ctrl-C) stops the
# sandbox too.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LEDGERLINK_ROOT"
python -m sandbox up --dir "$SANDBOX_DIR"
airflow_pid=""
stop() {
  trap - EXIT INT TERM
  if [ -n "$airflow_pid" ] && kill -0 "$airflow_pid" 2>/dev/null; then
    # SIGINT to Airflow's whole process group: standalone stops its scheduler, API server, triggerer and
    # dag-processor as on Ctrl-C (a SIGTERM would end standalone alone and leave them running).
    kill -INT -- "-$airflow_pid" 2>/dev/null || true
    # Standalone's components can take long to wind down on a busy machine (or hang): 30 s, then SIGTERM, then
    # SIGKILL, so that stopping `make up` always stops everything it started.
    for _ in $(seq 60); do kill -0 -- "-$airflow_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 -- "-$airflow_pid" 2>/dev/null; then
      echo "Airflow is slow to stop: terminating its processes" >&2
      kill -TERM -- "-$airflow_pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 -- "-$airflow_pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$airflow_pid" 2>/dev/null || true
    fi
    wait "$airflow_pid" 2>/dev/null || true
  fi
  python -m sandbox down --dir "$SANDBOX_DIR"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# shellcheck disable=SC1091
source "$SANDBOX_DIR/connections.env"
airflow db migrate > /dev/null  # standalone would too; the pools and the ledger's connection lookup need it
python -m ledgerlink migrate  # the ledger's schema: tasks only check it is at head
bash scripts/einvoice_pools.sh  # the e-invoice integrators' pools

passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
cat <<MSG

Ledgerlink's Airflow UI: http://$LEDGERLINK_UI_HOST:$LEDGERLINK_UI_PORT
  Log in as admin; the password is in $passwords
  (written by Airflow on its first start; also printed below as "Password for user 'admin'").
  The DAGs start paused: unpause one in the UI (the toggle beside it), or trigger it once (▶) to run it now.
  Ctrl-C stops Airflow and the sandbox.

MSG
# Not exec: this shell stays, to stop the sandbox when Airflow stops (or fails). Airflow runs as a job in its own
# process group (set -m: a background job without job control would ignore SIGINT); Ctrl-C reaches this shell,
# whose trap stops Airflow, then the sandbox.
set -m
airflow standalone &
airflow_pid=$!
set +m
wait "$airflow_pid"
