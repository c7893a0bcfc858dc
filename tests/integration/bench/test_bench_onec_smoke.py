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


def test_the_documents_case_sends_each_invoice_as_the_flow_does_on_both_paths(tmp_path):
    """Invoices of 5 lines: the counterparties seeded first (untimed), then per invoice the sale, its Post, the VAT
    invoice and its Post on the bare path, after the contracts and nomenclature; the flow reconciles to nothing."""
    import sqlite3

    from bench.onec import LINES_PER_INVOICE

    rows = 6
    run_onec_benchmark(rows, tmp_path / "out", tmp_path / "work", case_name="documents", latency_ms=5,
                       sessions=(1, 2), repeat=1)
    with sqlite3.connect(tmp_path / "work" / "billing.db") as billing:
        assert billing.execute("SELECT COUNT(*) FROM invoices").fetchone()[0] == rows
        assert billing.execute("SELECT COUNT(DISTINCT invoice_id), COUNT(*) FROM invoice_lines").fetchone() == \
            (rows, rows * LINES_PER_INVOICE)
        # Every invoice's totals are its lines' sums again after the cut to 5 lines.
        assert billing.execute("SELECT COUNT(*) FROM invoices i WHERE net_minor <> (SELECT SUM(net_minor) FROM "
                               "invoice_lines l WHERE l.invoice_id = i.invoice_id)").fetchone()[0] == 0
    results = json.loads((tmp_path / "out" / "onec_results_documents.json").read_text())
    assert results["case"] == "documents"
    paths = results["paths"]
    assert set(paths) == {"bare-1", "ledgerlink-1", "bare-2", "ledgerlink-2", "ledgerlink-1-breakdown"}
    for name, path in paths.items():
        assert "error" not in path, (name, path.get("log_tail"))
        assert path["records"] == rows and path["records_per_s"] > 0, name
        assert path["most_in_flight"] == int(name.split("-")[1]), name
    for count in (1, 2):
        bare = paths[f"bare-{count}"]
        assert bare["failures"] == [] and bare["prelude_requests"] >= 2  # a contract and a nomenclature item at least
        assert bare["requests"] == bare["prelude_requests"] + 4 * rows
        # The flow itself: every invoice posted with its VAT invoice, totals equal to billing's.
        assert paths[f"ledgerlink-{count}"]["reconciliation"] == []
        assert paths[f"ledgerlink-{count}"]["requests"] >= bare["requests"]
    assert paths["ledgerlink-1-breakdown"]["timer_calls"]["upsert_incl_http"] == rows
    assert "| 2 |" in markdown(results)
