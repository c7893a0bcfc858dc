"""The usage benchmark (issue 21, opt-in) run once at a tiny size so it cannot rot. It asserts no times."""
from __future__ import annotations

import json

from bench.usage import run_usage_benchmark
from devtools.sshd import find_sshd


def test_the_usage_benchmark_runs_every_path_at_a_tiny_size(tmp_path):
    find_sshd()
    run_usage_benchmark(2000, tmp_path / "out", tmp_path / "work")
    # A size other than the bench's 1,000,000 rows goes to a file of its own: a smoke run never overwrites results.
    results = json.loads((tmp_path / "out" / "usage_results_2000.json").read_text())
    assert set(results["paths"]) == {"openssh_fetch", "pyarrow_read", "raw_copy", "copy_into_billing_usage",
                                     "ledgerlink"}
    for name, path in results["paths"].items():
        assert "error" not in path, (name, path.get("log_tail"))
        assert path["seconds"] > 0 and path["peak_rss_mb"] > 0, name
    assert results["paths"]["ledgerlink"]["rows"] == results["paths"]["raw_copy"]["rows"] == 2000
    assert results["ratio_to_limit"] > 0 and results["ratio_to_floor"] > 0
