"""The Exchange ledger page's bench (issue 23; opt-in: ``python -m bench.run ledger-page``).

A fresh ledger at head (with revision ``ledger_page_indexes``) filled with ``--items`` generated items (500,000 by
default: 60 days of hourly customer runs, 3% still open, 1% refused), as many invoice lines delivered in chunks
(the snapshot, 10% of them delivered twice), ``--items // 25`` held-back rows and a run per flow and hour; then
every filtered page the page asks for, each ``--repeat`` times through the app (FastAPI's TestClient, in this
process: the HTTP hop and Airflow's token check are not what grows with the ledger, and are left out).
On SQLite (the default ledger) and, where PostgreSQL's server binaries are installed, on a throwaway cluster.
Nothing here asserts a time. Results: ``<out>/ledger_page_results.json`` and ``<out>/LEDGER_PAGE.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW_CUSTOMERS, FLOW_LINES, FLOW_EINVOICES = "billing_customers_to_onec", "billing_invoice_lines_to_erp", \
    "billing_einvoices"
BATCH = 20_000


def fill(url: str, items: int, seed: int = 23) -> dict:
    """The generated ledger; returns what it holds and how long filling took."""
    import sqlalchemy as sa

    from ledgerlink.ledger import (ACKNOWLEDGED, PLANNED, REJECTED, SENT, SUCCEEDED, Chunk, Flow, Item,
                                   QuarantinedRow, Run, Snapshot, deliveries)
    from ledgerlink.migrations import migrate

    started = time.perf_counter()
    migrate(url)
    from ledgerlink.ledger import Ledger

    engine = Ledger(url).engine
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    hours = 60 * 24
    with engine.begin() as conn:
        conn.execute(sa.insert(Run), [
            {"run_id": f"scheduled__{(now - timedelta(hours=h)).isoformat()}", "flow": flow,
             "started_at": now - timedelta(hours=h), "finished_at": now - timedelta(hours=h, minutes=-3),
             "status": SUCCEEDED if h % 97 else "failed",
             "summary": json.dumps({"sent": 300, "created": 10, "updated": 290, "target": flow,
                                    "totals": [{"currency": "TRY", "vat_rate": "20", "net": "1000.00",
                                                "vat": "200.00", "gross": "1200.00"}],
                                    "reconciliation": [], "reconciliation_detail": "equal"})}
            for h in range(hours) for flow in (FLOW_CUSTOMERS, FLOW_LINES)])

        def item(n: int) -> dict:
            at = now - timedelta(minutes=rng.randrange(hours * 60))
            roll = rng.random()
            status = PLANNED if roll < 0.015 else SENT if roll < 0.03 else REJECTED if roll < 0.04 else ACKNOWLEDGED
            flow = FLOW_CUSTOMERS if n % 4 else FLOW_EINVOICES
            return {"run_id": f"scheduled__{at.replace(minute=0).isoformat()}", "flow": flow,
                    "target": "onec" if flow == FLOW_CUSTOMERS else "einvoice", "entity": "customer",
                    "source_key": f"C{n:07d}", "target_key": f"ref-{n}", "content_hash": str(n),
                    "operation": "update", "status": status, "attempts": 1,
                    "last_error": "1C refused: INN check digits" if status == REJECTED else None,
                    "planned_at": at, "sent_at": at if status != PLANNED else None,
                    "acknowledged_at": at if status == ACKNOWLEDGED else None, "updated_at": at}

        for start in range(0, items, BATCH):
            conn.execute(sa.insert(Item), [item(n) for n in range(start, min(items, start + BATCH))])
        conn.execute(sa.insert(Flow), [{"name": FLOW_LINES}])
        flow_id = conn.scalar(sa.select(Flow.id).where(Flow.name == FLOW_LINES))
        lines_per_chunk = 5_000
        for chunk_index, start in enumerate(range(0, items, lines_per_chunk)):
            at = now - timedelta(hours=chunk_index % hours)
            chunk_id = conn.scalar(sa.insert(Chunk).values(
                run_id=f"scheduled__{at.isoformat()}", flow=FLOW_LINES, target="erp", entity="invoice_line",
                chunk_index=chunk_index, operation="upsert", lines=lines_per_chunk, status=ACKNOWLEDGED, attempts=1,
                planned_at=at, sent_at=at, acknowledged_at=at, updated_at=at).returning(Chunk.id))
            keys = [f"IN{n // 4:08d}-{n % 4 + 1:04d}" for n in range(start, min(items, start + lines_per_chunk))]
            conn.execute(sa.insert(Snapshot), [{"flow_id": flow_id, "source_key": k, "content_hash": "h",
                                                "target_key": k, "acknowledged_at": at, "chunk_id": chunk_id,
                                                "operation": "create"} for k in keys])
            conn.execute(sa.insert(deliveries), [{"chunk_id": chunk_id, "source_key": k, "content_hash": "g",
                                                  "operation": "create"} for k in keys[::10]])
        held = items // 25
        for start in range(0, held, BATCH):
            conn.execute(sa.insert(QuarantinedRow), [
                {"run_id": f"scheduled__{now.isoformat()}", "flow": FLOW_LINES, "entity": "invoice_line",
                 "source_key": f"IN{9_000_000 + n:08d}-0001", "reasons": "vat_minor: not 20% of net_minor",
                 "row": json.dumps({"currency": "TRY", "net_minor": 100_000 + n, "vat_minor": 1}),
                 "created_at": now - timedelta(minutes=rng.randrange(hours * 60))}
                for n in range(start, min(held, start + BATCH))])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return {"engine": engine, "seconds": time.perf_counter() - started, "items": items,
            "lines": items, "held_back": held, "runs": hours * 2, "now": now}


def measure(engine, repeat: int, items: int) -> list[dict]:
    """Every page the ledger page asks for, ``repeat`` times each: median, p95 and worst in milliseconds."""
    from fastapi.testclient import TestClient

    from ledgerlink.ui import app as ui

    app = ui.create_app(ledger_engine=engine, billing=None)
    app.dependency_overrides[ui.airflow_user] = lambda: "bench"
    client = TestClient(app)
    cases = [
        ("search: an invoice number (its 4 lines, history)", "/api/search", {"q": "IN00061234"}),
        ("search: a line id", "/api/search", {"q": "IN00061234-0002"}),
        ("search: a customer key (its item)", "/api/search", {"q": "C0123457"}),
        ("search: a held-back line", "/api/search", {"q": "IN09000123-0001"}),
        ("search: nothing found", "/api/search", {"q": "IN99999999"}),
        ("planned: first page (50)", "/api/planned", {"limit": 50}),
        ("planned: a page deep in (after an id)", "/api/planned", {"limit": 50, "after": items // 2}),
        ("planned: one flow, 200 a page", "/api/planned", {"flow": FLOW_EINVOICES, "limit": 200}),
        ("held back: first page of a flow (50)", "/api/held-back", {"flow": FLOW_LINES, "limit": 50}),
        ("held back: a page deep in (before an id)", "/api/held-back", {"limit": 50, "before": items // 50}),
        ("runs: newest 20", "/api/runs", {"limit": 20}),
        ("runs: one flow, failed only", "/api/runs", {"flow": FLOW_LINES, "status": "failed"}),
        ("per day: 30 days", "/api/per-day", {"days": 30}),
        ("exchange map with last good runs", "/api/map", {}),
    ]
    out = []
    for name, path, params in cases:
        times, size = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            answer = client.get(path, params=params)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
            size = len(answer.content)
        body = answer.json()
        rows = len(body) if isinstance(body, list) else sum(len(v) for v in body.values() if isinstance(v, list))
        times.sort()
        out.append({"case": name, "path": path, "params": params, "median_ms": statistics.median(times),
                    "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))], "max_ms": times[-1],
                    "bytes": size, "rows": rows})
    return out


def run_ledger_page_bench(items: int, repeat: int, out_dir: Path, work: Path, postgres: bool) -> dict:
    results = {"items": items, "repeat": repeat, "machine": {"python": platform.python_version(),
                                                             "cpus": os.cpu_count(), "platform": platform.platform()},
               "started_at": datetime.now(timezone.utc).isoformat(), "ledgers": {}}
    filled = fill(f"sqlite:///{work / 'ledger.db'}", items)
    results["ledgers"]["sqlite"] = {"fill_seconds": filled["seconds"], "held_back": filled["held_back"],
                                    "runs": filled["runs"], "pages": measure(filled["engine"], repeat, items)}
    filled["engine"].dispose()
    if postgres:
        from devtools.pg import find_server_binaries, run_postgres

        if find_server_binaries() is None:
            results["ledgers"]["postgresql"] = {"error": "PostgreSQL's server binaries are not installed"}
        else:
            with run_postgres(work / "pg") as pg:
                filled = fill(pg.url, items)
                results["ledgers"]["postgresql"] = {"fill_seconds": filled["seconds"], "held_back": filled["held_back"],
                                                    "runs": filled["runs"], "pages": measure(filled["engine"], repeat, items)}
                filled["engine"].dispose()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ledger_page_results.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "LEDGER_PAGE.md").write_text(markdown(results))
    return results


def markdown(results: dict) -> str:
    lines = [f"# The Exchange ledger page with {results['items']:,} ledger items",
             "",
             f"Measured {results['started_at'][:16]} UTC on {results['machine']['cpus']} CPUs "
             f"({results['machine']['platform']}), Python {results['machine']['python']}; each page "
             f"{results['repeat']} times through the app in-process (`python -m bench.run ledger-page`). "
             f"Beside the items: as many invoice lines delivered in chunks, held-back rows and runs as listed.",
             ""]
    for name, ledger in results["ledgers"].items():
        if "error" in ledger:
            lines += [f"## {name}: not measured ({ledger['error']})", ""]
            continue
        lines += [f"## Ledger on {name} ({ledger['held_back']:,} held-back rows, {ledger['runs']:,} runs; "
                  f"filled in {ledger['fill_seconds']:.0f} s)", "",
                  "| page | median ms | p95 ms | worst ms | rows answered | answer bytes |",
                  "|---|---:|---:|---:|---:|---:|"]
        for page in ledger["pages"]:
            lines.append(f"| {page['case']} | {page['median_ms']:.1f} | {page['p95_ms']:.1f} | {page['max_ms']:.1f} "
                         f"| {page['rows']:,} | {page['bytes']:,} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=int(os.environ.get("BENCH_LEDGER_ITEMS", 500_000)))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true", help="the SQLite ledger only")
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ledgerlink-bench-page-"))
    try:
        results = run_ledger_page_bench(args.items, args.repeat, Path(args.out), work, not args.no_postgres)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print((Path(args.out) / "LEDGER_PAGE.md").read_text())
    return 0 if all("error" not in v for v in results["ledgers"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
