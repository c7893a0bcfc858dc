#!/usr/bin/env bash
# The e-invoice integrators' Airflow pools, as the routing file (include/ledgerlink/einvoice_routing.yaml) names
# them: each caps the concurrent calls to its integrator's API. Idempotent (`airflow pools set`).
set -euo pipefail
python -c "from ledgerlink.einvoice.routing import load_routing
for i in load_routing().integrators.values(): print(i.pool, i.pool_slots, i.name)" |
  while read -r pool slots name; do
    airflow pools set "$pool" "$slots" "e-invoice integrator $name: its API's concurrent calls" > /dev/null
  done
