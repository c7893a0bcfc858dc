"""The 1C OData benchmark (issue 20, opt-in) run once at a tiny size so it cannot rot. It asserts no times."""
from __future__ import annotations

import json

from bench.onec import markdown, run_onec_benchmark


def test_the_onec_benchmark_runs_every_path_at_a_tiny_size(tmp_path):
    run_onec_benchmark(30, tmp_path / "out", tmp_path / "work", latency_ms=5, sessions=(1, 2), repeat=2)
    results = json.loads((tmp_path / "out" / "onec_results.json").read_text())
    assert set(results["paths"]) == {"bare-1", "ledgerlink-1", "bare-2", "ledgerlink-2", "ledgerlink-1-breakdown"}
    for name, path in results["paths"].items():
        assert "error" not in path, (name, path.get("log_tail"))
        for run in path.get("runs", [path]):  # every repeat starts from an empty ledger and infobase
            assert run["records"] == 30 and run["records_per_s"] > 0, name
        # Each session is seen in 1C: the pool and the bare threads really overlap.
        assert path["most_in_flight"] == int(name.split("-")[1]), name
    assert results["paths"]["ledgerlink-1"]["reconciliation"] == []
    assert results["paths"]["ledgerlink-1-breakdown"]["timer_calls"]["http_round_trips"] >= 30
    assert "| 2 |" in markdown(results)
