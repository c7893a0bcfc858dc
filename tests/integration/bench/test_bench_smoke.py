"""The benchmark code, run once at a tiny size so it cannot rot. It asserts no times, only that every path ran."""
from __future__ import annotations

import json

from bench.run import run_benchmark
from devtools.sshd import find_sshd

EXPECTED_PATHS = {"raw_copy", "ledgerlink_full", "ledgerlink_incremental", "to_sql", "dlt_merge",
                  "ledgerlink_full_growth", "sftp", "dag_imports"}


def test_benchmark_runs_every_path_at_a_tiny_size(tmp_path):
    find_sshd()  # skips (or, in CI, fails) when sshd is missing; run_postgres does the same for PostgreSQL
    out = tmp_path / "out"
    run_benchmark(rows=2000, usage_rows=None, growth_factor=2, sftp_mb=2, out_dir=out, work=tmp_path / "work",
                  chunk_rows=700, to_sql_limit=None, repeat=2)
    results = json.loads((out / "results.json").read_text())
    assert set(results["paths"]) == EXPECTED_PATHS
    for name, path in results["paths"].items():
        assert "error" not in path, (name, path.get("log_tail"))
        if name == "dlt_merge" and "skipped" in path:  # dlt is optional: a skip is reported, not hidden
            continue
        assert path["seconds"] >= 0 and path["peak_rss_mb"] > 0, name
    for name in ("raw_copy", "ledgerlink_full", "to_sql", "ledgerlink_full_growth"):
        assert results["paths"][name]["rows"] > 0, name
    assert results["paths"]["raw_copy"]["rows"] == results["paths"]["ledgerlink_full"]["rows"]
    assert results["paths"]["ledgerlink_incremental"]["updated"] > 0
    assert len(results["paths"]["ledgerlink_full"]["runs_s"]) == 2, "each repeat is run and kept"
    assert len(results["paths"]["ledgerlink_incremental"]["runs_s"]) == 2
    assert {t["target"] for t in results["targets"]} and all("met" in t for t in results["targets"])
    markdown = (out / "RESULTS.md").read_text()
    assert "## Targets (issue 7)" in markdown and "raw `COPY FROM STDIN`" in markdown
