"""The usage benchmark of issue 21 (opt-in: ``python -m bench.run usage``, or ``python -m bench.usage``).

One CDR file of ``--rows`` calls (1,000,000 is about 90 MB) on a real OpenSSH sshd; billing on a throwaway
PostgreSQL cluster. Measured, each in its own process (peak RSS is that process's alone):

- ``ledgerlink_intake``: the intake as the DAG runs it (list, settle, fetch over SFTP, hash, read against the
  profile, gate, load into billing's usage, move to processed/), then ``ledgerlink_rating``: the period rated into
  invoices;
- the limits, in the same run: OpenSSH's ``sftp`` fetching the file, ``pyarrow.csv.read_csv`` of it, a raw
  ``COPY`` of its rows into an empty table with a primary key (the issue's limit), and a ``COPY`` of the rows the
  intake writes into billing's own ``usage`` table (its primary key and six indexes: the floor of any load into
  billing, measured in a database of its own).

Nothing here asserts a time. Results go to ``<out>/usage_results.json`` (1,000,000 rows) or
``<out>/usage_results_<rows>.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.run import worker_env  # the workers' environment, as bench.run's own

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include"
FILE_NAME = "cdr_BR01_20261103.utf-8.csv"
HEADER = "call_id,bridge_id,customer_ref,started_at,ended_at,duration_seconds,participants,dial_in_number\r\n"
COPY_DDL = ("CREATE TABLE usage_copy (call_id TEXT PRIMARY KEY, bridge_id TEXT, customer_ref TEXT, started_at TEXT, "
            "ended_at TEXT, duration_seconds BIGINT, participants BIGINT, dial_in_number TEXT)")


def write_cdr_file(path: Path, rows: int, customers: list[str], seed: int = 21) -> str:
    """A bridge day of ``rows`` calls (all in 2026-11-03, UTC+3), streamed; returns its SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    midnight = datetime(2026, 11, 3, tzinfo=timezone(timedelta(hours=3)))
    with open(path, "wb") as out:
        block = [HEADER]
        for number in range(1, rows + 1):
            started = midnight + timedelta(seconds=number * 86_000 // rows)
            duration = rng.randrange(30, 3 * 3600)
            ended = started + timedelta(seconds=duration)
            block.append(f"BR01-20261103-{number:08d},BR01,{customers[rng.randrange(len(customers))]},"
                         f"{started.isoformat()},{ended.isoformat()},{duration},{rng.randrange(2, 31)},"
                         f"+74950000000\r\n")
            if len(block) >= 50_000:
                data = "".join(block).encode()
                out.write(data)
                digest.update(data)
                block = []
        data = "".join(block).encode()
        out.write(data)
        digest.update(data)
    return digest.hexdigest()


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------- workers

def worker_ledgerlink(cfg: dict) -> dict:
    import logging

    import sqlalchemy as sa

    from devtools.sshd import sftp_client
    from ledgerlink.flows.bridge_usage import take_files
    from ledgerlink.flows.usage_rating import RatingSummary, rate_periods
    from ledgerlink.ledger import Ledger

    logging.basicConfig(level=logging.WARNING)
    os.environ["LEDGERLINK_HOME"] = cfg["home"]
    billing = sa.create_engine(cfg["billing_url"])
    ledger = Ledger.migrated(cfg["ledger_url"])
    server = _server(cfg)
    from ledgerlink.gates import BlockGate, suite_for
    from ledgerlink.gates.gx import screening_for, validation_for

    mark = time.perf_counter()  # GX's import and the suite's validations, as a task pays them (reported apart)
    block_suite = BlockGate(suite_for("usage", max_rows=None), run_id="", flow="", report_dir=Path(cfg["work"]),
                            ledger=None).block_suite
    validation_for(block_suite)
    screening_for(block_suite)
    gx_setup, gx_rss = time.perf_counter() - mark, _peak_rss_mb()
    started = time.perf_counter()
    with sftp_client(server) as sftp:
        summary = take_files("bench-usage", sftp, billing, ledger, folder=cfg["folder"], settle_seconds=0)
    intake = time.perf_counter() - started
    intake_rss = _peak_rss_mb()
    mark = time.perf_counter()
    rating = rate_periods(["2026-11"], billing, RatingSummary("bench", "bench-usage"))
    rated = time.perf_counter() - mark
    (outcome,) = summary.files
    return {"seconds": intake + rated, "intake_s": intake, "rating_s": rated, "rows": outcome.rows_loaded,
            "held_back": outcome.rows_held_back, "status": outcome.status, "documents": rating.outcomes,
            "steps_s": outcome.seconds, "gx_setup_s": gx_setup, "peak_rss_mb_after_gx_setup": gx_rss,
            "peak_rss_mb_after_intake": intake_rss}


def worker_openssh_fetch(cfg: dict) -> dict:
    server = _server(cfg)
    work = Path(cfg["work"])
    known_hosts = work / "known_hosts"
    known_hosts.write_text(f"[{server.host}]:{server.port} {server.host_key_line}\n")
    base = ["sftp", "-q", "-P", str(server.port), "-i", str(server.private_key_path), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
            "-b"]

    def batch(commands: str) -> float:
        script = work / "batch.txt"
        script.write_text(commands)
        mark = time.perf_counter()
        subprocess.run(base + [str(script), f"{server.user}@{server.host}"], check=True, capture_output=True,
                       timeout=600)
        return time.perf_counter() - mark

    connect = min(batch("pwd\n") for _ in range(3))
    fetch = batch(f"get {cfg['remote_file']} {work / 'openssh_copy.csv'}\n") - connect
    (work / "openssh_copy.csv").unlink(missing_ok=True)
    return {"seconds": max(fetch, 1e-6), "connect_s": connect}


def worker_pyarrow_read(cfg: dict) -> dict:
    import pyarrow.csv as pv

    mark = time.perf_counter()
    table = pv.read_csv(cfg["local_file"])
    return {"seconds": time.perf_counter() - mark, "rows": table.num_rows}


def worker_copy(cfg: dict) -> dict:
    import psycopg

    with psycopg.connect(cfg["copy_dsn"]) as conn:
        conn.execute(COPY_DDL)
        conn.commit()
        mark = time.perf_counter()
        with conn.cursor() as cursor, open(cfg["local_file"], "rb") as source:
            with cursor.copy("COPY usage_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - mark
        rows = conn.execute("SELECT count(*) FROM usage_copy").fetchone()[0]
    return {"seconds": seconds, "rows": rows}


def worker_copy_into_billing_usage(cfg: dict) -> dict:
    """The rows the intake writes (usage ids, contracts, tariffs, UTC times), prepared untimed, then one COPY into
    billing's ``usage`` as its schema stands: what the server's index upkeep alone costs."""
    import io

    import psycopg
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    import sqlalchemy as sa

    from ledgerlink.billing.usage import USAGE_COLUMNS, read_plans, usage_ids

    plans = read_plans(sa.create_engine(cfg["billing_url"]))
    table = pv.read_csv(cfg["local_file"], convert_options=pv.ConvertOptions(column_types={
        "started_at": pa.string(), "ended_at": pa.string()}))
    customers = table.column("customer_ref").to_pylist()
    plan = {c: plans.for_period(c, "2026-11") for c in set(customers)}
    rows = pa.table({
        "usage_id": pa.array(usage_ids(table.column("call_id").to_pylist())),
        "customer_id": table.column("customer_ref"),
        "contract_id": pa.array([plan[c].contract_id for c in customers]),
        "tariff_id": pa.array([plan[c].tariff_id for c in customers]),
        "call_id": table.column("call_id"), "started_at": table.column("started_at"),
        "duration_seconds": table.column("duration_seconds"), "participants": table.column("participants"),
        "source_file": pa.array([FILE_NAME] * table.num_rows)})
    del table, customers
    buffer = io.BytesIO()
    pv.write_csv(rows.select(list(USAGE_COLUMNS)), buffer, write_options=pv.WriteOptions(include_header=False))
    del rows, pc
    with psycopg.connect(cfg["limit_dsn"]) as conn:
        mark = time.perf_counter()
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY usage ({', '.join(USAGE_COLUMNS)}) FROM STDIN WITH (FORMAT csv)") as copy:
                view = buffer.getbuffer()
                for start in range(0, len(view), 1 << 20):
                    copy.write(view[start:start + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - mark
        count = conn.execute("SELECT count(*) FROM usage").fetchone()[0]
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'usage'").fetchone()[0]
    return {"seconds": seconds, "rows": count, "indexes": indexes}


WORKERS = {"ledgerlink": worker_ledgerlink, "openssh_fetch": worker_openssh_fetch,
           "pyarrow_read": worker_pyarrow_read, "raw_copy": worker_copy,
           "copy_into_billing_usage": worker_copy_into_billing_usage}


def _server(cfg: dict):
    from devtools.sshd import SshdInfo

    s = cfg["server"]
    return SshdInfo(s["host"], s["port"], s["user"], Path(s["private_key_path"]), s["host_key_line"], Path(s["root"]))


def run_worker(name: str, cfg: dict, work: Path) -> dict:
    config = work / f"usage-{name}.json"
    config.write_text(json.dumps(cfg))
    out = config.with_suffix(".out.json")
    log = config.with_suffix(".log")
    with open(log, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "bench.usage", "--worker", name, "--config", str(config)],
                                   env=worker_env(), cwd=str(ROOT), stdout=log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not out.exists():
        return {"error": f"exit {os.waitstatus_to_exitcode(status)}", "log_tail": log.read_text(errors="replace")[-3000:]}
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


# --------------------------------------------------------------------------------------------- driver

def run_usage_benchmark(rows: int, out_dir: Path, work: Path) -> dict:
    sys.path[:0] = [str(INCLUDE), str(ROOT)]
    import sqlalchemy as sa

    from devtools.pg import create_database, run_postgres
    from devtools.sshd import run_sshd
    from ledgerlink.billing.usage import read_plans
    from sandbox.generator import generate_billing

    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows,
                     "paths": {}}
    with run_postgres(work / "pg") as pg, run_sshd(work / "sshd") as server:
        billing = create_database(pg, "billing_usage")
        ledger = create_database(pg, "ledger_usage")
        copy_target = create_database(pg, "usage_copy")
        limit_target = create_database(pg, "usage_limit")
        generate_billing(billing.dsn, customers=300, usage_rows=0)
        generate_billing(limit_target.dsn, customers=300, usage_rows=0)
        engine = sa.create_engine(billing.url)
        plans = read_plans(engine)
        customers = sorted(c for c in plans.by_customer if plans.for_period(c, "2026-11"))
        engine.dispose()
        folder = server.root / "bridge"
        folder.mkdir()
        local = work / FILE_NAME
        mark = time.perf_counter()
        sha256 = write_cdr_file(local, rows, customers)
        results["file_mb"] = local.stat().st_size / (1 << 20)
        results["generate_s"] = time.perf_counter() - mark
        server_cfg = {"host": server.host, "port": server.port, "user": server.user,
                      "private_key_path": str(server.private_key_path), "host_key_line": server.host_key_line,
                      "root": str(server.root)}
        base = {"server": server_cfg, "work": str(work), "local_file": str(local),
                "remote_file": str(folder / FILE_NAME)}
        shutil.copy(local, folder / FILE_NAME)
        results["paths"]["openssh_fetch"] = run_worker("openssh_fetch", base, work)
        results["paths"]["pyarrow_read"] = run_worker("pyarrow_read", base, work)
        results["paths"]["raw_copy"] = run_worker("raw_copy", {**base, "copy_dsn": copy_target.dsn}, work)
        results["paths"]["copy_into_billing_usage"] = run_worker("copy_into_billing_usage", {
            **base, "billing_url": billing.url, "limit_dsn": limit_target.dsn}, work)
        (folder / f"{FILE_NAME}.sha256").write_text(f"{sha256}  {FILE_NAME}\n")
        results["paths"]["ledgerlink"] = run_worker("ledgerlink", {
            **base, "billing_url": billing.url, "ledger_url": ledger.url, "folder": str(folder),
            "home": str(work / "home")}, work)
    p = results["paths"]
    if all("error" not in path for path in p.values()):
        limit = p["openssh_fetch"]["seconds"] + p["raw_copy"]["seconds"]
        results["limit_fetch_plus_copy_s"] = limit
        results["ratio_to_limit"] = p["ledgerlink"]["seconds"] / limit
        floor = p["openssh_fetch"]["seconds"] + p["copy_into_billing_usage"]["seconds"]
        results["floor_fetch_plus_copy_into_billing_usage_s"] = floor
        results["ratio_to_floor"] = p["ledgerlink"]["seconds"] / floor
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "usage_results.json" if rows == 1_000_000 else f"usage_results_{rows}.json"
    (out_dir / name).write_text(json.dumps(results, indent=2, default=str))
    return results


USAGE_HEADING = "## Conference-bridge usage intake (issue 21, opt-in: `python -m bench.run usage --rows N`)"
# The intake as it was before it went block by block (commit 82a5e85, the same bench on a quiet machine): the whole
# file in one DataFrame, gated whole by GX, loaded in one COPY.
BEFORE = {"rows": 1_000_000, "seconds": 21.50, "intake_s": 19.98, "ratio_to_limit": 12.46, "peak_rss_mb": 936,
          "steps": "read 1.80, accounts 1.77, gate 3.13, load 12.04, fetch 0.68", "commit": "82a5e85",
          # the same code again, 2026-12-02 10:21 UTC, an hour before this page's runs on a busier machine
          "again": "23.4 s, 11.0× fetch + raw COPY, peak RSS 933 MB"}


def usage_markdown(out_dir: Path) -> str:
    """The usage section of ``RESULTS.md``, from the usage results in ``out_dir`` (every size measured)."""
    runs = []
    for path in sorted(out_dir.glob("usage_results*.json")):
        result = json.loads(path.read_text())
        if all("error" not in p for p in result.get("paths", {}).values()) and "ratio_to_limit" in result:
            runs.append(result)
    runs.sort(key=lambda r: r["rows"])
    if not runs:
        return ""
    lines = [USAGE_HEADING, "",
             "One CDR file on a real OpenSSH sshd, billing on a throwaway PostgreSQL (its `usage` table as the "
             "sandbox's billing has it: a primary key and six indexes). The Ledgerlink time is intake (list, settle, "
             "fetch, hash, check, read, gate, write, move) and rating into invoices; GX's import and the usage "
             "suite's validations, paid once per task, are beside it. Each path in its own process; one run per "
             "size: the machine's 2 cores are shared, so times are noisy (peak RSS is not).", "",
             "| rows | file (MB) | fetch: OpenSSH `sftp` (s) | raw `COPY`, PK only (s) | `COPY` into billing's "
             "`usage` (s) | Ledgerlink intake + rating (s) | × (fetch + raw COPY) | × (fetch + COPY into `usage`) "
             "| GX setup (s) | peak RSS (MB) | RSS after GX setup (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        p = r["paths"]
        ours = p["ledgerlink"]
        floor = p.get("copy_into_billing_usage", {}).get("seconds")
        lines.append(
            f"| {r['rows']:,} | {r['file_mb']:.1f} | {p['openssh_fetch']['seconds']:.2f} | "
            f"{p['raw_copy']['seconds']:.2f} | {floor:.2f} | {ours['seconds']:.2f} | {r['ratio_to_limit']:.2f} | "
            f"{r.get('ratio_to_floor', float('nan')):.2f} | {ours.get('gx_setup_s', float('nan')):.2f} | "
            f"{ours['peak_rss_mb']:.0f} | {ours.get('peak_rss_mb_after_gx_setup', float('nan')):.0f} |")
    lines += ["", "Intake steps (s): " + "; ".join(
        f"{r['rows']:,} rows: " + ", ".join(f"{k} {v}" for k, v in r["paths"]["ledgerlink"]["steps_s"].items())
        for r in runs) + " (`write` includes waiting for billing to take the block before; `finish` the last "
        "block and the commit)."]
    first, last = runs[0], runs[-1]
    if last["rows"] > first["rows"]:
        growth = last["paths"]["ledgerlink"]["peak_rss_mb"] / first["paths"]["ledgerlink"]["peak_rss_mb"] - 1
        lines += ["", f"Peak RSS from {first['rows']:,} to {last['rows']:,} rows: {growth:+.0%}."]
    b = BEFORE
    lines += ["", f"Before (commit {b['commit']}, the whole file in memory, quiet machine): {b['rows']:,} rows "
                  f"{b['seconds']:.1f} s ({b['ratio_to_limit']:.1f}× fetch + raw COPY; steps {b['steps']}), peak RSS "
                  f"{b['peak_rss_mb']} MB, growing with the file; run again on a busier machine the day this "
                  f"page was made: {b['again']}.",
              "", "Goal (issue 21): ≤ 3× fetch + raw COPY, memory flat from 1M to 5M rows. The load into billing is "
                  "bound by billing's own `usage` table: a bare `COPY` of the same rows into it (its six secondary "
                  "indexes) costs several times the raw `COPY` the goal names, before any reading or gating."]
    return "\n".join(lines) + "\n"


def write_usage_section(out_dir: Path) -> None:
    """Put the usage section at the end of ``out_dir/RESULTS.md`` (replacing the one there)."""
    page = out_dir / "RESULTS.md"
    section = usage_markdown(out_dir)
    if not section or not page.exists():
        return
    text = page.read_text()
    if USAGE_HEADING in text:
        text = text[:text.index(USAGE_HEADING)].rstrip("\n") + "\n"
    page.write_text(text + "\n" + section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--config")
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_USAGE_FILE_ROWS", 1_000_000)))
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path[:0] = [str(INCLUDE), str(ROOT)]
        cfg = json.loads(Path(args.config).read_text())
        Path(args.config).with_suffix(".out.json").write_text(json.dumps(WORKERS[args.worker](cfg), default=str))
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ledgerlink-bench-usage-"))
    try:
        results = run_usage_benchmark(args.rows, Path(args.out), work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2, default=str))
    write_usage_section(Path(args.out))
    return 0 if all("error" not in p for p in results["paths"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
