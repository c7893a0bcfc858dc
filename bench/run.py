"""The performance benchmark of issue 7: Ledgerlink's nightly SQL path against the limit and the peers.

    python -m bench.run                      # 1M invoice lines (BENCH_ROWS to change), 200 MB SFTP file
    BENCH_ROWS=2000 BENCH_SFTP_MB=2 python -m bench.run --out /tmp/bench

One throwaway PostgreSQL cluster (devtools/pg.py); billing generated once into one database; every
path loads the same rows into its own empty database. Each path runs in its own subprocess, so the peak
RSS reported (``wait4``'s ``ru_maxrss``) is that path's alone. Memory growth is measured by a second full
Ledgerlink run at ``BENCH_GROWTH_FACTOR`` (default 5) times the invoice lines, in its own billing database
(``BENCH_GROWTH_FACTOR=0`` skips it). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include"
EXTRACT_COLUMNS = ["line_id", "invoice_id", "line_no", "customer_id", "issue_date", "tariff_id", "description",
                   "quantity", "unit_price_minor", "net_minor", "vat_rate", "vat_minor", "gross_minor", "currency"]
EXTRACT_SQL = ("SELECT l.line_id, l.invoice_id, l.line_no, i.customer_id, i.issue_date, l.tariff_id, l.description, "
               "l.quantity, l.unit_price_minor, l.net_minor, l.vat_rate, l.vat_minor, l.gross_minor, l.currency "
               "FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id")
TARGET_DDL = """CREATE TABLE {table} (
    line_id TEXT PRIMARY KEY, invoice_id TEXT NOT NULL, line_no INTEGER NOT NULL, customer_id TEXT NOT NULL,
    issue_date TEXT NOT NULL, tariff_id TEXT, description TEXT, quantity TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL, net_minor BIGINT NOT NULL, vat_rate TEXT NOT NULL, vat_minor BIGINT NOT NULL,
    gross_minor BIGINT NOT NULL, currency TEXT NOT NULL)"""
FLOW_RUN_FULL = "bench-full"
FLOW_RUN_INCREMENTAL = "bench-incremental"


def worker_env() -> dict:
    """The environment of a bench worker process: this checkout's include/ and root first on its path."""
    env = dict(os.environ)
    paths = [str(INCLUDE), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


# --------------------------------------------------------------------------------------------- workers
# Each runs in its own process: ``python -m bench.run --worker NAME --config FILE``; it writes FILE.out.json.

def worker_copy(cfg: dict) -> dict:
    import psycopg

    with psycopg.connect(cfg["dsn"]) as conn:
        conn.execute(TARGET_DDL.format(table="raw_copy"))
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, open(cfg["csv"], "rb") as source:
            with cursor.copy(f"COPY raw_copy ({', '.join(EXTRACT_COLUMNS)}) FROM STDIN WITH (FORMAT csv)") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM raw_copy").fetchone()[0]
    return {"seconds": seconds, "rows": rows}


def _read_csv_frame(path: str):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in EXTRACT_COLUMNS}
    types.update({c: pa.int64() for c in ("line_no", "unit_price_minor", "net_minor", "vat_minor", "gross_minor")})
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=EXTRACT_COLUMNS),
                          convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))


def worker_to_sql(cfg: dict) -> dict:
    import sqlalchemy as sa

    table = _read_csv_frame(cfg["csv"])
    if cfg.get("limit") and table.num_rows > cfg["limit"]:
        table = table.slice(0, cfg["limit"])
    df = table.to_pandas()
    engine = sa.create_engine(cfg["url"])
    with engine.begin() as conn:
        conn.execute(sa.text(TARGET_DDL.format(table="naive_to_sql")))
    started = time.perf_counter()
    df.to_sql("naive_to_sql", engine, if_exists="append", index=False)
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        rows = conn.scalar(sa.text("SELECT count(*) FROM naive_to_sql"))
    return {"seconds": seconds, "rows": rows}


def worker_dlt(cfg: dict) -> dict:
    try:
        import dlt
    except ImportError as exc:
        return {"skipped": f"dlt is not installed ({exc})"}
    os.environ.setdefault("DLT_DATA_DIR", str(Path(cfg["work"]) / "dlt_data"))
    os.environ.setdefault("DLT_PROJECT_DIR", str(Path(cfg["work"]) / "dlt_project"))
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_TELEMETRY_DISABLED"] = "1"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    table = _read_csv_frame(cfg["csv"])
    # the throwaway cluster trusts local connections; dlt insists on a password in the credentials anyway
    dsn = cfg["dsn"].replace("postgresql://postgres@", "postgresql://postgres:unused@")
    pipeline = dlt.pipeline(pipeline_name=cfg.get("pipeline", "bench_merge"), pipelines_dir=str(Path(cfg["work"]) / "dlt_pipelines"),
                            destination=dlt.destinations.postgres(dsn), dataset_name="bench")
    started = time.perf_counter()
    pipeline.run(table, table_name="lines", write_disposition="merge", primary_key="line_id")
    seconds = time.perf_counter() - started
    import psycopg

    with psycopg.connect(cfg["dsn"]) as conn:
        rows = conn.execute("SELECT count(*) FROM bench.lines").fetchone()[0]
    return {"seconds": seconds, "rows": rows, "version": dlt.__version__}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ledgerlink(cfg: dict) -> dict:
    import logging

    import sqlalchemy as sa

    from ledgerlink.flows import invoice_lines_to_erp as flow
    from ledgerlink.ledger import Ledger

    logging.basicConfig(level=logging.WARNING)
    os.environ["LEDGERLINK_HOME"] = cfg["home"]
    # Outside the timed window, as the peers' imports are (dlt, pandas, psycopg): importing Great Expectations
    # and building the gate's ValidationDefinition, once per process. Reported on its own.
    mark = time.perf_counter()
    from ledgerlink.gates import gx, suite_for

    gx.validation_for(suite_for("invoice_line", max_rows=None))
    setup = time.perf_counter() - mark
    setup_rss = _peak_rss_mb()
    billing, erp = sa.create_engine(cfg["billing_url"]), sa.create_engine(cfg["erp_url"])
    steps, peaks = {}, {"setup": setup_rss}
    started = time.perf_counter()
    ledger = Ledger.migrated(cfg["ledger_url"])
    steps["ledger_open"] = time.perf_counter() - started
    outcome = cfg["run_id"]
    # Each step takes what the one before it returned, as the Airflow tasks do through XCom.
    for name, step in (("extract", lambda run_id: flow.extract(run_id, billing, ledger, cfg["chunk_rows"])),
                       ("gate", lambda meta: flow.gate(meta, ledger)),
                       ("load", lambda meta: flow.load(meta, erp, ledger)),
                       ("reconcile_and_report", lambda meta: flow.reconcile_and_report(meta, billing, erp, ledger))):
        mark = time.perf_counter()
        meta, outcome = outcome, step(outcome)
        steps[name] = time.perf_counter() - mark
        peaks[name] = _peak_rss_mb()
    summary = outcome
    seconds = time.perf_counter() - started
    with erp.connect() as conn:
        rows = conn.scalar(sa.text("SELECT count(*) FROM billed_invoice_lines"))
    return {"seconds": seconds, "rows": rows, "steps": steps, "gx_setup_s": setup, "peak_rss_mb_after": peaks,
            "sent": summary.sent, "created": summary.created,
            "updated": summary.updated, "deleted": summary.deleted, "read": meta.read}


def worker_sftp(cfg: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    from devtools.sshd import run_sshd
    from ledgerlink.sftp import TunedSFTPHook

    work = Path(cfg["work"]) / "sftp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    size = int(cfg["megabytes"] * (1 << 20))
    repeat = cfg.get("repeat", 3)  # each transfer, both clients: the median is reported
    local = work / "payload.bin"
    with open(local, "wb") as out:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            out.write(block)
            remaining -= len(block)
    results = {"bytes": size}
    with run_sshd(work) as server:
        remote_dir = server.root
        # the production path: Airflow's SFTPHook (ledgerlink.sftp) over a connection that pins the host key
        os.environ["AIRFLOW_CONN_BENCH_SFTP"] = json.dumps({
            "conn_type": "sftp", "host": server.host, "port": server.port, "login": server.user,
            "extra": {"key_file": str(server.private_key_path), "host_key": server.host_key_line,
                      "no_host_key_check": False, "look_for_keys": False}})
        hook = TunedSFTPHook("bench_sftp")
        with hook.get_managed_conn() as sftp:
            results["ledgerlink_cipher"] = sftp.get_channel().get_transport().remote_cipher

            def timed(transfer) -> float:
                mark = time.perf_counter()
                transfer()
                return time.perf_counter() - mark

            results["ledgerlink_put_runs_s"] = [timed(lambda: hook.store_file(f"{remote_dir}/ll_up.bin", str(local)))
                                                for _ in range(repeat)]
            results["ledgerlink_get_runs_s"] = [
                timed(lambda: hook.retrieve_file(f"{remote_dir}/ll_up.bin", str(work / "ll_down.bin")))
                for _ in range(repeat)]
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[{server.host}]:{server.port} {server.host_key_line}\n")
        base = ["sftp", "-q", "-P", str(server.port), "-i", str(server.private_key_path), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-b"]

        def batch(commands: str) -> float:
            script = work / "batch.txt"
            script.write_text(commands)
            mark = time.perf_counter()
            subprocess.run(base + [str(script), f"{server.user}@{server.host}"], check=True,
                           capture_output=True, timeout=600)
            return time.perf_counter() - mark

        connect = min(batch("pwd\n") for _ in range(3))  # connection + session cost, taken off the transfers
        results["openssh_connect_s"] = connect
        results["openssh_put_runs_s"] = [max(batch(f"put {local} {remote_dir}/os_up.bin\n") - connect, 1e-6)
                                         for _ in range(repeat)]
        results["openssh_get_runs_s"] = [max(batch(f"get {remote_dir}/os_up.bin {work}/os_down.bin\n") - connect, 1e-6)
                                         for _ in range(repeat)]
    for name in ("ledgerlink_put", "ledgerlink_get", "openssh_put", "openssh_get"):
        results[f"{name}_s"] = statistics.median(results[f"{name}_runs_s"])
        results[f"{name}_mb_s"] = size / (1 << 20) / results[f"{name}_s"]
    results["ratio_put"] = results["ledgerlink_put_mb_s"] / results["openssh_put_mb_s"]
    results["ratio_get"] = results["ledgerlink_get_mb_s"] / results["openssh_get_mb_s"]
    results["seconds"] = results["ledgerlink_put_s"] + results["ledgerlink_get_s"]
    shutil.rmtree(work, ignore_errors=True)
    return results


def worker_dag_imports(cfg: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(INCLUDE))
    files, total = {}, 0.0
    mapped_per_row = []
    for path in sorted((ROOT / "dags").glob("*.py")):
        mark = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(path)!r})"], env=env, check=True,
                       capture_output=True, cwd=str(ROOT))
        files[path.name] = time.perf_counter() - mark
        total += files[path.name]
        if ".expand(" in path.read_text(encoding="utf-8"):
            mapped_per_row.append(path.name)
    # Airflow's DAG processor parses in a process that has Airflow loaded already: time every file in one
    # process, and the bare ``import airflow`` that each of the per-file figures above also pays.
    script = ("import runpy, sys, time; import airflow.sdk; t = time.perf_counter()\n"
              "for p in sys.argv[1:]: runpy.run_path(p)\n"
              "print(time.perf_counter() - t)")
    dag_files = [str(p) for p in sorted((ROOT / "dags").glob("*.py"))]
    one = subprocess.run([sys.executable, "-c", script, *dag_files], env=env, check=True, capture_output=True,
                         text=True, cwd=str(ROOT))
    mark = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import airflow.sdk"], env=env, check=True, capture_output=True)
    baseline = time.perf_counter() - mark
    return {"seconds": float(one.stdout.strip().splitlines()[-1]), "per_file_process_total": total, "files": files,
            "import_airflow_sdk_s": baseline, "files_with_dynamic_mapping": mapped_per_row}


WORKERS = {"copy": worker_copy, "to_sql": worker_to_sql, "dlt": worker_dlt, "ledgerlink": worker_ledgerlink,
           "sftp": worker_sftp, "dag_imports": worker_dag_imports}


def run_worker(name: str, cfg: dict, work: Path) -> dict:
    """Run one path in its own process; its result plus that process's own peak RSS."""
    config = work / f"{name}-{cfg.get('label', name)}.json"
    config.write_text(json.dumps(cfg))
    out = config.with_suffix(".out.json")
    out.unlink(missing_ok=True)
    log = config.with_suffix(".log")
    with open(log, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "bench.run", "--worker", name, "--config", str(config)],
                                   env=worker_env(), cwd=str(ROOT), stdout=log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-3000:]
        return {"error": f"exit {process.returncode}", "log_tail": tail}
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


# --------------------------------------------------------------------------------------------- driver

def _prepare_billing(pg, name: str, rows: int, usage_rows: int | None) -> tuple:
    from devtools.pg import create_database
    from sandbox.generator import generate_billing

    info = create_database(pg, name)
    mark = time.perf_counter()
    counts = generate_billing(info.dsn, invoice_lines=rows, usage_rows=usage_rows)
    return info, counts, time.perf_counter() - mark


def _export_csv(info, path: Path) -> None:
    import psycopg

    with psycopg.connect(info.dsn) as conn, conn.cursor() as cursor, open(path, "wb") as out:
        with cursor.copy(f"COPY ({EXTRACT_SQL}) TO STDOUT WITH (FORMAT csv)") as copy:
            for block in copy:
                out.write(block)


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (its steps and counts), every run's time, and the highest peak RSS."""
    timed = sorted((r for r in runs if _seconds(r) is not None), key=lambda r: r["seconds"])
    if not timed:
        return runs[0]
    path = dict(timed[(len(timed) - 1) // 2])
    path["runs_s"] = [round(r["seconds"], 3) for r in runs if _seconds(r) is not None]
    path["peak_rss_mb"] = max(r["peak_rss_mb"] for r in timed)
    return path


def run_benchmark(rows: int, usage_rows: int | None, growth_factor: int, sftp_mb: float, out_dir: Path,
                  work: Path, chunk_rows: int, to_sql_limit: int | None, repeat: int = 3) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(INCLUDE))
    from devtools.pg import create_database, run_postgres

    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "invoice_lines": rows, "usage_rows": usage_rows, "chunk_rows": chunk_rows, "repeat": repeat,
                     "paths": {}}
    paths = results["paths"]
    with run_postgres(work) as pg:
        billing, counts, seconds = _prepare_billing(pg, "billing", rows, usage_rows)
        results["generated"] = {"counts": counts, "seconds": seconds}
        csv_path = work / "lines.csv"
        _export_csv(billing, csv_path)
        print(f"billing generated: {counts} in {seconds:.1f} s", flush=True)

        def repeated(label: str, run_once) -> dict:
            """``repeat`` runs of one path (each on fresh databases): the median run, every time, the top RSS."""
            runs = [run_once(i) for i in range(repeat)]
            path = median_run(runs)
            print(f"{label}:", path.get("runs_s") or path, flush=True)
            return path

        paths["raw_copy"] = repeated("raw COPY", lambda i: run_worker(
            "copy", {"label": f"copy{i}", "dsn": create_database(pg, f"t_copy_{i}").dsn, "csv": str(csv_path)},
            work))

        def ledgerlink(label: str, billing_info, erp_db: str, ledger_db: str, run_id: str, fresh: bool) -> dict:
            erp = create_database(pg, erp_db) if fresh else pg.with_database(erp_db)
            ledger = create_database(pg, ledger_db) if fresh else pg.with_database(ledger_db)
            return run_worker("ledgerlink", {"label": label, "billing_url": billing_info.url, "erp_url": erp.url,
                                             "ledger_url": ledger.url, "run_id": run_id, "chunk_rows": chunk_rows,
                                             "home": str(work / f"home_{label}")}, work)

        paths["ledgerlink_full"] = repeated("ledgerlink full", lambda i: ledgerlink(
            f"full{i}", billing, f"t_erp_{i}", f"t_ledger_{i}", FLOW_RUN_FULL, True))
        paths["to_sql"] = repeated("to_sql", lambda i: run_worker(
            "to_sql", {"label": f"to_sql{i}", "url": create_database(pg, f"t_to_sql_{i}").url, "csv": str(csv_path),
                       "limit": to_sql_limit}, work))
        paths["dlt_merge"] = repeated("dlt", lambda i: run_worker(
            "dlt", {"label": f"dlt{i}", "dsn": create_database(pg, f"t_dlt_{i}").dsn, "csv": str(csv_path),
                    "work": str(work), "pipeline": f"bench_merge_{i}"}, work))

        from sandbox.generator import mutate_billing

        touched = mutate_billing(billing.dsn, changed_fraction=0.01)
        results["mutated"] = {t: {k: len(v) for k, v in d.items()} for t, d in touched.items()}
        # each repeat of the full run left its own ERP and ledger: one incremental run on each
        paths["ledgerlink_incremental"] = repeated("ledgerlink incremental", lambda i: ledgerlink(
            f"incremental{i}", billing, f"t_erp_{i}", f"t_ledger_{i}", FLOW_RUN_INCREMENTAL, False))

        if growth_factor and growth_factor > 1:
            big_rows = rows * growth_factor
            big, big_counts, big_seconds = _prepare_billing(pg, "billing_big", big_rows, usage_rows)
            results["generated_growth"] = {"counts": big_counts, "seconds": big_seconds}
            paths["ledgerlink_full_growth"] = ledgerlink("growth", big, "t_erp_big", "t_ledger_big",
                                                         FLOW_RUN_FULL, True)
            print("ledgerlink growth:", paths["ledgerlink_full_growth"].get("seconds"), flush=True)

    paths["sftp"] = run_worker("sftp", {"work": str(work), "megabytes": sftp_mb, "repeat": repeat}, work)
    print("sftp:", {k: v for k, v in paths["sftp"].items() if k.startswith("ratio")}, flush=True)
    paths["dag_imports"] = run_worker("dag_imports", {}, work)
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["targets"] = targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "RESULTS.md").write_text(markdown(results))
    from bench.usage import write_usage_section

    write_usage_section(out_dir)  # the opt-in usage bench's last results, kept in the page
    return results


def _seconds(path: dict) -> float | None:
    return path.get("seconds") if isinstance(path, dict) and "error" not in path and "skipped" not in path else None


def targets(results: dict) -> list[dict]:
    p = results["paths"]
    copy, full, incr = _seconds(p["raw_copy"]), _seconds(p["ledgerlink_full"]), _seconds(p["ledgerlink_incremental"])
    to_sql, dlt_s, growth = _seconds(p["to_sql"]), _seconds(p["dlt_merge"]), p.get("ledgerlink_full_growth")
    out = []

    def add(name: str, value, limit: str, met):
        out.append({"target": name, "value": value, "limit": limit,
                    "met": None if met is None else bool(met)})

    add("full run / raw COPY", full / copy if full and copy else None, "≤ 3×", full / copy <= 3 if full and copy else None)
    gate = p["ledgerlink_full"].get("steps", {}).get("gate") if full else None
    add("gate share of the full run", gate / full if gate is not None else None, "≤ 25%",
        gate / full <= 0.25 if gate is not None else None)
    add("incremental (1% changed) / full run", incr / full if incr and full else None, "≤ 5%",
        incr / full <= 0.05 if incr and full else None)
    scale = (p["to_sql"].get("rows") or 1) / (p["ledgerlink_full"].get("rows") or 1) if to_sql else 1
    add("to_sql time / full run (per row)", to_sql / scale / full if to_sql and full else None, "≥ 5×",
        to_sql / scale / full >= 5 if to_sql and full else None)
    add("dlt merge time / full run", dlt_s / full if dlt_s and full else None, "> 1×",
        dlt_s / full > 1 if dlt_s and full else None)
    rss = p["ledgerlink_full"].get("peak_rss_mb")
    add("peak RSS of the full run (MB)", rss, "≤ 1536 MB", rss <= 1536 if rss else None)
    if growth and _seconds(growth) and rss:
        grow = growth["peak_rss_mb"] / rss - 1
        add(f"peak RSS growth, {results['invoice_lines']:,} → {growth.get('rows', 0):,} lines", grow, "< 20%",
            grow < 0.20)
    else:
        add("peak RSS growth to 5× the lines", None, "< 20%", None)
    sftp = p["sftp"]
    if "ratio_put" in sftp:
        add("SFTP upload / OpenSSH sftp", sftp["ratio_put"], "≥ 50%", sftp["ratio_put"] >= 0.5)
        add("SFTP download / OpenSSH sftp", sftp["ratio_get"], "≥ 50%", sftp["ratio_get"] >= 0.5)
    else:
        add("SFTP / OpenSSH sftp", None, "≥ 50%", None)
    dags = p["dag_imports"]
    add("importing every DAG file (s)", _seconds(dags), "≤ 2 s", _seconds(dags) <= 2 if _seconds(dags) else None)
    add("DAGs mapping one task per row", dags.get("files_with_dynamic_mapping"), "none",
        not dags.get("files_with_dynamic_mapping") if "error" not in dags else None)
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(results: dict) -> str:
    p = results["paths"]
    copy = _seconds(p["raw_copy"])
    lines = [f"# Benchmark results ({results['started_at']})", "",
             f"{results['invoice_lines']:,} invoice lines, {results['machine']['cpus']} CPUs, "
             f"Python {results['machine']['python']}; throwaway PostgreSQL; each path in its own process "
             f"(peak RSS is that process's). Times are the median of {results.get('repeat', 1)} runs, each on fresh "
             "databases (every run's time in `results.json`); peak RSS is the highest of them.", "",
             "| path | wall time (s) | rows | rows/s | peak RSS (MB) | × raw COPY |", "|---|---|---|---|---|---|"]
    labels = {"raw_copy": "raw `COPY FROM STDIN`, primary key (the limit)",
              "ledgerlink_full": "Ledgerlink nightly run, end to end (empty ERP and ledger)",
              "ledgerlink_incremental": "Ledgerlink incremental run, 1% of lines changed",
              "to_sql": "`DataFrame.to_sql` (naive peer)", "dlt_merge": "dlt `merge` (library peer)",
              "ledgerlink_full_growth": "Ledgerlink nightly run at the growth size"}
    for key, label in labels.items():
        path = p.get(key)
        if path is None:
            continue
        seconds = _seconds(path)
        if seconds is None:
            lines.append(f"| {label} | not measured: {path.get('skipped') or path.get('error')} | | | | |")
            continue
        rows = path.get("rows")
        lines.append(f"| {label} | {_fmt(seconds)} | {_fmt(rows)} | {_fmt(int(rows / seconds)) if rows else '—'} | "
                     f"{_fmt(path.get('peak_rss_mb'), 0)} | {_fmt(seconds / copy) if copy else '—'} |")
    full = p["ledgerlink_full"]
    if full.get("steps"):
        growth = p.get("ledgerlink_full_growth") or {}
        peaks, growth_peaks = full.get("peak_rss_mb_after", {}), growth.get("peak_rss_mb_after", {})
        lines += ["", "Ledgerlink's full run, step by step (peak RSS so far, at 1× and at the growth size):", "",
                  "| step | seconds | share | peak RSS (MB) | at growth size (MB) |", "|---|---|---|---|---|"]
        if "setup" in peaks:
            lines.append(f"| (GX import and setup, untimed) | | | {_fmt(peaks['setup'], 0)} | "
                         f"{_fmt(growth_peaks.get('setup'), 0)} |")
        for step, seconds in full["steps"].items():
            lines.append(f"| {step} | {_fmt(seconds)} | {seconds / full['seconds']:.0%} | "
                         f"{_fmt(peaks.get(step), 0)} | {_fmt(growth_peaks.get(step), 0)} |")
    if full.get("gx_setup_s") is not None:
        lines += ["", f"Not in these times, as the peers' library imports are not in theirs: importing Great "
                  f"Expectations and building the gate's ValidationDefinition, {full['gx_setup_s']:.2f} s once per "
                  "process. An Airflow gate task pays it on every run (each task is a fresh process)."]
    incr = p["ledgerlink_incremental"]
    if incr.get("steps"):
        lines += ["", "Incremental run, step by step:", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {step} | {_fmt(seconds)} |" for step, seconds in incr["steps"].items()]
    sftp = p["sftp"]
    if "ratio_put" in sftp:
        lines += ["", f"SFTP, {sftp['bytes'] / (1 << 20):,.0f} MB on loopback, median of "
                  f"{len(sftp.get('ledgerlink_get_runs_s', [0]))} transfers each way and client (OpenSSH's connection "
                  f"cost {sftp['openssh_connect_s']:.2f} s taken off its batch times):", "",
                  "| direction | Ledgerlink (paramiko, tuned) MB/s | OpenSSH `sftp` MB/s | ratio |", "|---|---|---|---|",
                  f"| upload | {_fmt(sftp['ledgerlink_put_mb_s'], 1)} | {_fmt(sftp['openssh_put_mb_s'], 1)} | "
                  f"{sftp['ratio_put']:.2f} |",
                  f"| download | {_fmt(sftp['ledgerlink_get_mb_s'], 1)} | {_fmt(sftp['openssh_get_mb_s'], 1)} | "
                  f"{sftp['ratio_get']:.2f} |"]
    else:
        lines += ["", f"SFTP: not measured ({sftp.get('error')})"]
    dags = p["dag_imports"]
    if "files" in dags:
        lines += ["", "DAG imports, one fresh process per file (each pays Python + `import airflow.sdk`, "
                  f"{dags['import_airflow_sdk_s']:.2f} s alone): "
                  + ", ".join(f"`{k}` {v:.2f} s" for k, v in dags["files"].items())
                  + f" (total {dags['per_file_process_total']:.2f} s); every file in one process with Airflow "
                  f"loaded (what the DAG processor pays): {dags['seconds']:.2f} s"]
    lines += ["", "## Targets (issue 7)", "", "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in results["targets"]:
        value = t["value"]
        if isinstance(value, float) and ("share" in t["target"] or "/" in t["target"] or "growth" in t["target"]):
            shown = f"{value:.0%}" if ("share" in t["target"] or "growth" in t["target"] or "incremental" in t["target"]
                                        or "SFTP" in t["target"]) else f"{value:.2f}×"
        else:
            shown = _fmt(value)
        met = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {shown} | {t['limit']} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["usage"]:  # the opt-in usage case (issue 21): bench/usage.py, never part of `make bench`
        from bench.usage import main as usage_main

        return usage_main(argv[1:])
    if argv[:1] == ["onec_files"]:  # the opt-in month-end file exchange case (issue 20): bench/onec_files.py
        from bench.onec_files import main as onec_files_main

        return onec_files_main(argv[1:])
    if argv[:1] == ["ledger-page"]:  # the opt-in ledger page case (issue 23): bench/ledger_page.py
        from bench.ledger_page import main as ledger_page_main

        return ledger_page_main(argv[1:])
    if argv[:1] == ["onec"]:  # the opt-in 1C OData case (issue 20): bench/onec.py, never part of `make bench`
        from bench.onec import main as onec_main

        return onec_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--config")
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 1_000_000)))
    parser.add_argument("--usage-rows", type=int, default=int(os.environ["BENCH_USAGE_ROWS"])
                        if os.environ.get("BENCH_USAGE_ROWS") else None,
                        help="usage records generated beside the lines (default: the generator's small default)")
    parser.add_argument("--growth-factor", type=int, default=int(os.environ.get("BENCH_GROWTH_FACTOR", 5)))
    parser.add_argument("--sftp-mb", type=float, default=float(os.environ.get("BENCH_SFTP_MB", 200)))
    parser.add_argument("--chunk-rows", type=int, default=int(os.environ.get("BENCH_CHUNK_ROWS", 200_000)))
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", 3)),
                        help="runs of each 1M-row path; the median is reported")
    parser.add_argument("--to-sql-limit", type=int, default=None, help="measure to_sql on the first N rows only")
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temp folder, removed after)")
    parser.add_argument("--einvoices", type=int, default=None,
                        help="opt-in: only the e-invoice case (issue 22) with this many invoices, e.g. 10000")
    args = parser.parse_args(argv)
    if args.einvoices:
        from bench.einvoices import run_einvoice_bench

        print(json.dumps(run_einvoice_bench(args.einvoices, Path(args.out)), indent=2))
        return 0
    if args.worker:
        cfg = json.loads(Path(args.config).read_text())
        result = WORKERS[args.worker](cfg)
        Path(args.config).with_suffix(".out.json").write_text(json.dumps(result, default=str))
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ledgerlink-bench-"))
    try:
        results = run_benchmark(args.rows, args.usage_rows, args.growth_factor, args.sftp_mb, Path(args.out), work,
                                args.chunk_rows, args.to_sql_limit, args.repeat)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print((Path(args.out) / "RESULTS.md").read_text())
    return 0 if all("error" not in p for p in results["paths"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
