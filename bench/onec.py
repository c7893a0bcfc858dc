"""The 1C OData benchmark of issue 20 (opt-in: ``python -m bench.run onec --rows 2000``, or ``python -m bench.onec``).

Records per second sent to 1C over OData by Ledgerlink's load step, beside the limit: a bare loop of the same
requests with ``requests`` against the same stand-in, each with 1, 2 and 4 sessions (threads, each with its own
``requests.Session``). The stand-in runs in its own process with a server-side time per request
(``--latency-ms``, 20 by default: a real 1C answers in about 10 to 50 ms), so the base's own work dominates, as on
a real server; every path gets a fresh infobase. Ledgerlink's extract and gate run before the timed load (the
bare loop sends exactly the records the gate let through, with the bodies Ledgerlink's mapping builds);
reconciliation is timed on its own.

A flow is a :class:`Case`: how to build billing, the bare loop's requests, and the flow module: ``counterparties``
(``Catalog_Контрагенты``, one POST a record) and ``documents`` (``--case documents``: invoices of 5 lines, each a sale
and its VAT invoice, both posted; the counterparties are sent first by the customers flow, untimed).
Nothing here asserts a time; results go to ``<out>/onec_results.json`` and ``<out>/ONEC.md`` (the documents case:
``onec_results_documents.json`` and ``ONEC_documents.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.run import worker_env  # the workers' environment, as bench.run's own

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include"
USER, PASSWORD = "bench", "bench-secret"
BASE = "/bench"


# --------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    """One flow to 1C as the bench drives it.

    ``prepare(billing_path, rows)``: billing with ``rows`` records to send; ``flow``: the flow module's name (its
    ``extract``/``gate``/``load``/``reconcile_and_report``) and ``target`` its target adapter's class (timed in the
    breakdown); ``requests(client, staged_rows)``: what the bare loop sends for the gate's staged rows, as
    ``(prelude, units)``: the prelude's requests go first, in order on one session (what every record points at),
    then each unit is one record's requests, in order on one session, the units spread over the sessions; a
    request is (method, path relative to the service root, JSON body bytes or None), built with the client once
    before the timed loop; ``setup(client, billing_path, work_dir)``: what 1C must hold before the timed part
    (both paths, untimed); ``unit``: what one record is, for the table."""

    name: str
    unit: str
    flow: str
    target: str
    prepare: Callable[[Path, int], None]
    requests: Callable[[object, list[dict]], tuple[list, list[list[tuple[str, str, bytes | None]]]]]
    setup: Callable[[object, Path, Path], None] | None = None


def _prepare_customers(billing: Path, rows: int) -> None:
    from sandbox.generator import generate_billing

    generate_billing(billing, seed=20, customers=rows, usage_rows=0)


def _body(payload: dict) -> bytes:
    from ledgerlink.onec.client import _json_default

    return json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8")


def _counterparty_requests(client, staged: list[dict]):
    from urllib.parse import quote

    from ledgerlink.onec import counterparties

    path = quote(counterparties.ENTITY_SET)
    return [], [[("POST", path, _body(counterparties._to_wire(client, counterparties.to_counterparty(row), None)))]
                for row in staged]


LINES_PER_INVOICE = 5


def _prepare_invoices(billing: Path, rows: int) -> None:
    """``rows`` issued invoices of exactly 5 lines each: the generator's itemised invoices (more lines than needed,
    over rows/3 customers), each cut to its first 5 lines and its totals summed again from them; invoices with
    fewer lines, and those beyond ``rows``, removed."""
    import sqlite3

    from sandbox.generator import generate_billing

    generate_billing(billing, seed=20, customers=max(3, rows // 3), usage_rows=0,
                     invoice_lines=rows * LINES_PER_INVOICE * 4)
    with sqlite3.connect(billing) as db:
        db.execute("DELETE FROM invoice_lines WHERE line_no > ?", (LINES_PER_INVOICE,))
        keep = [r[0] for r in db.execute(
            "SELECT i.invoice_id FROM invoices i WHERE i.status NOT IN ('cancelled', 'draft') AND "
            "(SELECT COUNT(*) FROM invoice_lines l WHERE l.invoice_id = i.invoice_id) = ? ORDER BY i.invoice_id "
            "LIMIT ?", (LINES_PER_INVOICE, rows))]
        if len(keep) < rows:
            raise RuntimeError(f"billing has only {len(keep)} invoices of {LINES_PER_INVOICE} lines, {rows} asked")
        db.execute("CREATE TEMP TABLE keep (invoice_id TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO keep VALUES (?)", [(k,) for k in keep])
        db.execute("DELETE FROM invoice_lines WHERE invoice_id NOT IN (SELECT invoice_id FROM keep)")
        db.execute("DELETE FROM invoices WHERE invoice_id NOT IN (SELECT invoice_id FROM keep)")
        for total in ("net_minor", "vat_minor", "gross_minor"):
            db.execute(f"UPDATE invoices SET {total} = (SELECT SUM(l.{total}) FROM invoice_lines l "
                       f"WHERE l.invoice_id = invoices.invoice_id)")


def _seed_counterparties(client, billing: Path, work: Path) -> None:
    """The counterparties the invoices point at, sent by the customers flow (its own ledger), before the timer."""
    import sqlalchemy as sa

    from ledgerlink.flows import customers_to_onec
    from ledgerlink.ledger import Ledger

    summary = customers_to_onec.run_all("bench-seed-counterparties", sa.create_engine(f"sqlite:///{billing}"),
                                        client, Ledger.migrated(f"sqlite:///{work / 'seed-ledger.db'}"))
    if not summary.sent:
        raise RuntimeError(f"seeding the counterparties sent nothing: {summary}")


def _document_requests(client, staged: list[dict]):
    """What ``onec.documents`` sends for a new invoice (a first night): its contract and nomenclature items once
    (``prepare``), then per invoice POST the sale, POST its ``Post``, POST the VAT invoice, POST its ``Post``."""
    from urllib.parse import quote

    from ledgerlink.onec import documents
    from ledgerlink.onec.client import guid_key

    refs = documents.base_references(client)
    contracts, tariffs = {}, {}
    for invoice in staged:
        contract = json.loads(invoice["contract"]) if isinstance(invoice["contract"], str) else invoice["contract"]
        contracts[contract["contract_id"]] = contract
        for tariff in json.loads(invoice["tariffs"]) if isinstance(invoice["tariffs"], str) else invoice["tariffs"]:
            tariffs[tariff["tariff_id"]] = tariff
    prelude = [("POST", quote(documents.CONTRACTS), _body(documents.to_contract(c, refs))) for c in contracts.values()]
    prelude += [("POST", quote(documents.PRODUCTS), _body(documents.to_product(t, refs))) for t in tariffs.values()]
    post = "/Post?PostingModeOperational=false"
    units = []
    for invoice in staged:
        sale, vat = documents.to_sale(invoice, refs), documents.to_vat_invoice(invoice, refs)
        units.append([("POST", quote(documents.SALES), _body(sale)),
                      ("POST", guid_key(documents.SALES, sale["Ref_Key"]) + post, None),
                      ("POST", quote(documents.VAT_INVOICES), _body(vat)),
                      ("POST", guid_key(documents.VAT_INVOICES, vat["Ref_Key"]) + post, None)])
    return prelude, units


CASES = {
    "counterparties": Case("counterparties", "counterparty (Catalog_Контрагенты, one POST each)",
                           "ledgerlink.flows.customers_to_onec", "CounterpartiesIn1C", _prepare_customers,
                           _counterparty_requests),
    "documents": Case("documents", f"invoice of {LINES_PER_INVOICE} lines (sale + Post, VAT invoice + Post: "
                      "4 requests each, after its contract and nomenclature)", "ledgerlink.flows.invoices_to_onec",
                      "InvoicesIn1C", _prepare_invoices, _document_requests, _seed_counterparties),
}


# --------------------------------------------------------------------------------------------- workers
# Each runs in its own process: ``python -m bench.onec --worker NAME --config FILE``; it writes FILE.out.json.

def worker_serve(cfg: dict) -> dict:
    """The 1C stand-in, until SIGTERM; writes its URL to ``cfg["url_file"]`` once it listens."""
    from sandbox.onec.server import make_server

    server = make_server("127.0.0.1", 0, db_path=Path(cfg["db"]), users={USER: PASSWORD}, base=BASE,
                         exchange_poll_seconds=None, latency_seconds=cfg["latency_ms"] / 1000)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    Path(cfg["url_file"]).write_text(server.url)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return {}


def _staged(cfg: dict, run_id: str):
    """Extract and gate (untimed): the run's state and the gate's staged rows."""
    import importlib

    import sqlalchemy as sa

    from ledgerlink.flows.staging import read_frame
    from ledgerlink.ledger import Ledger

    os.environ["LEDGERLINK_HOME"] = cfg["home"]
    flow = importlib.import_module(CASES[cfg["case"]].flow)
    billing = sa.create_engine(f"sqlite:///{cfg['billing']}")
    ledger = Ledger.migrated(cfg["ledger_url"])
    state = flow.gate(flow.extract(run_id, billing, ledger), ledger)
    return flow, billing, ledger, state, read_frame(state.batch[0]).to_dict("records")


def _sessions_seen(url: str, reset: bool = False) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_sandbox/onec/sessions?reset={int(reset)}", timeout=30) as response:
        return json.loads(response.read())


class _Timers:
    """Seconds spent in wrapped calls, summed over threads."""

    def __init__(self):
        self.lock, self.seconds, self.calls = threading.Lock(), {}, {}

    def wrap(self, owner, name: str, label: str) -> None:
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            mark = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent = time.perf_counter() - mark
                with self.lock:
                    self.seconds[label] = self.seconds.get(label, 0.0) + spent
                    self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, timed)


def _setup(cfg: dict) -> None:
    """What 1C must hold before the timed part (the case's ``setup``), on a client of its own, untimed."""
    from ledgerlink.onec.client import ODataClient

    case = CASES[cfg["case"]]
    if case.setup is not None:
        seed_dir = Path(cfg["home"]) / "setup"
        seed_dir.mkdir(parents=True, exist_ok=True)
        case.setup(ODataClient(cfg["url"] + BASE, USER, PASSWORD, timeout=60, sessions=cfg["sessions"]),
                   Path(cfg["billing"]), seed_dir)


def worker_ledgerlink(cfg: dict) -> dict:
    import logging

    from ledgerlink.onec.client import ODataClient

    logging.basicConfig(level=logging.WARNING)
    flow, billing, ledger, state, staged = _staged(cfg, "bench-onec")
    _setup(cfg)
    # With the URL limit the stand-in enforces (IIS's, as a real publication): lookups by key are split under it.
    client = ODataClient(cfg["url"] + BASE, USER, PASSWORD, timeout=60, sessions=cfg["sessions"])
    timers = _Timers()
    if cfg.get("breakdown"):
        # Where the time goes: HTTP round trips (in the sessions' threads), the connector's upsert around them,
        # and every ledger write (on the load's own thread, overlapping the sends).
        timers.wrap(ODataClient, "request", "http_round_trips")
        timers.wrap(getattr(flow, CASES[cfg["case"]].target), "upsert", "upsert_incl_http")
        for name in ("close_superseded", "snapshot_hashes", "plan", "sent_before", "mark_sent", "acknowledge",
                     "record_failure", "withdraw_unsent", "set_watermark", "hold_lease"):
            timers.wrap(ledger, name, f"ledger.{name}")
    _sessions_seen(cfg["url"], reset=True)
    mark, cpu = time.perf_counter(), time.process_time()
    state = flow.load(state, client, ledger)
    load_s, cpu_s = time.perf_counter() - mark, time.process_time() - cpu
    seen = _sessions_seen(cfg["url"])
    mark = time.perf_counter()
    summary = flow.reconcile_and_report(state, billing, client, ledger)
    reconcile_s = time.perf_counter() - mark
    return {"seconds": load_s, "cpu_s": cpu_s, "records": summary.sent, "staged": len(staged), "reconcile_s": reconcile_s,
            "reconciliation": summary.reconciliation, "requests": seen["requests"],
            "most_in_flight": seen["most_in_flight"], "timers_s": timers.seconds, "timer_calls": timers.calls}


def worker_bare(cfg: dict) -> dict:
    """The limit: the same requests with ``requests``, one ``requests.Session`` per thread, nothing else."""
    import requests

    from ledgerlink.onec.client import ODataClient

    _, _, _, _, staged = _staged(cfg, "bench-bare")
    _setup(cfg)
    service = cfg["url"] + BASE + "/odata/standard.odata/"
    prelude, units = CASES[cfg["case"]].requests(ODataClient(cfg["url"] + BASE, USER, PASSWORD), staged)
    _sessions_seen(cfg["url"], reset=True)
    position, lock, failures = iter(range(len(units))), threading.Lock(), []
    failed_units: set[int] = set()
    headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8"}

    def send(session, index: int, method: str, path: str, body: bytes | None) -> None:
        response = session.request(method, service + path, params={"$format": "json"}, data=body,
                                   headers=headers)
        if response.status_code >= 300:
            failures.append(f"{response.status_code}: {response.text[:200]}")
            failed_units.add(index)
        if response.content.strip():
            json.loads(response.content)

    def new_session():
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        return session

    def one_session() -> None:
        session = new_session()
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                return
            for method, path, body in units[index]:
                send(session, index, method, path, body)

    def run_prelude() -> None:
        session = new_session()
        for method, path, body in prelude:
            send(session, -1, method, path, body)

    threads = [threading.Thread(target=one_session) for _ in range(cfg["sessions"])]
    mark, cpu = time.perf_counter(), time.process_time()
    run_prelude()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu_s = time.perf_counter() - mark, time.process_time() - cpu
    seen = _sessions_seen(cfg["url"])
    return {"seconds": seconds, "cpu_s": cpu_s, "records": len(units) - len(failed_units - {-1}), "failures": failures[:5],
            "prelude_requests": len(prelude),
            "requests": seen["requests"], "most_in_flight": seen["most_in_flight"]}


WORKERS = {"serve": worker_serve, "ledgerlink": worker_ledgerlink, "bare": worker_bare}


# --------------------------------------------------------------------------------------------- driver

def _spawn(name: str, cfg: dict, work: Path) -> tuple[subprocess.Popen, Path]:
    config = work / f"onec-{name}-{cfg['label']}.json"
    config.write_text(json.dumps(cfg))
    log = open(config.with_suffix(".log"), "wb")
    process = subprocess.Popen([sys.executable, "-m", "bench.onec", "--worker", name, "--config", str(config)],
                               env=worker_env(), cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, config


def _result(process: subprocess.Popen, config: Path) -> dict:
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    out = config.with_suffix(".out.json")
    if process.returncode != 0 or not out.exists():
        return {"error": f"exit {process.returncode}",
                "log_tail": config.with_suffix(".log").read_text(errors="replace")[-3000:]}
    result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process, imports and gate included
    return result


def run_path(kind: str, sessions: int, case: Case, billing: Path, work: Path, latency_ms: float,
             breakdown: bool = False, ledger_url: Callable[[str], str] | None = None) -> dict:
    """One path on a fresh stand-in (its own process and infobase) and a fresh ledger (SQLite in ``work``
    unless ``ledger_url(label)`` gives one)."""
    label = f"{kind}-{sessions}" + ("-breakdown" if breakdown else "")
    url_file = work / f"{label}.url"
    # Every run starts from nothing: a fresh infobase, ledger and home (a repeat must not find the last one's).
    import shutil

    for leftover in [url_file, *work.glob(f"{label}-onec.db*"), *work.glob(f"{label}-ledger.db*")]:
        leftover.unlink(missing_ok=True)
    shutil.rmtree(work / f"{label}-home", ignore_errors=True)
    server, server_config = _spawn("serve", {"label": label, "db": str(work / f"{label}-onec.db"),
                                             "url_file": str(url_file), "latency_ms": latency_ms}, work)
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists() or not url_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the 1C stand-in did not start: "
                                   f"{server_config.with_suffix('.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        client, config = _spawn(kind, {"label": label, "case": case.name, "sessions": sessions,
                                       "url": url_file.read_text(), "billing": str(billing),
                                       "home": str(work / f"{label}-home"), "breakdown": breakdown,
                                       "ledger_url": ledger_url(label) if ledger_url else
                                       f"sqlite:///{work / f'{label}-ledger.db'}"}, work)
        result = _result(client, config)
    finally:
        server.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(server.pid, 0)
        server.returncode = 0
    # The stand-in's own CPU over its life (start-up, the lookups and reconciliation's reads included).
    result["stand_in_cpu_s"] = usage.ru_utime + usage.ru_stime
    if "seconds" in result and result.get("records"):
        result["records_per_s"] = result["records"] / result["seconds"]
    return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate (every run kept under ``runs``); an error if any run failed."""
    failed = [run for run in runs if "records_per_s" not in run]
    if failed:
        return {**failed[0], "runs": runs}
    ordered = sorted(runs, key=lambda run: run["records_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": runs}


def run_onec_benchmark(rows: int, out_dir: Path, work: Path, *, case_name: str = "counterparties",
                       latency_ms: float = 20.0, sessions: tuple[int, ...] = (1, 2, 4), repeat: int = 3,
                       ledger: str = "sqlite") -> dict:
    """``ledger``: ``sqlite`` (a file per path) or ``postgresql`` (a database per path on a throwaway cluster)."""
    sys.path[:0] = [str(INCLUDE), str(ROOT)]
    work.mkdir(parents=True, exist_ok=True)
    if ledger == "postgresql":
        from devtools.pg import create_database, run_postgres

        with run_postgres(work / "pg") as server:
            made = iter(range(1_000_000))
            return _run_paths(rows, out_dir, work, case_name, latency_ms, sessions, repeat, ledger, lambda label: str(
                create_database(server, f"ledger_{label.replace('-', '_')}_{next(made)}").url))
    return _run_paths(rows, out_dir, work, case_name, latency_ms, sessions, repeat, ledger, None)


def _run_paths(rows: int, out_dir: Path, work: Path, case_name: str, latency_ms: float, sessions: tuple[int, ...],
               repeat: int, ledger: str, ledger_url: Callable[[str], str] | None) -> dict:
    case = CASES[case_name]
    billing = work / "billing.db"
    mark = time.perf_counter()
    case.prepare(billing, rows)
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "case": case.name,
                     "unit": case.unit, "rows": rows, "latency_ms": latency_ms, "ledger": ledger,
                     "generate_s": time.perf_counter() - mark,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "paths": {}}
    runs: dict[str, list[dict]] = {}
    # Interleaved, so that whatever else the shared machine does falls on both paths alike.
    for _ in range(repeat):
        for count in sessions:
            for kind in ("bare", "ledgerlink"):
                runs.setdefault(f"{kind}-{count}", []).append(
                    run_path(kind, count, case, billing, work, latency_ms, ledger_url=ledger_url))
    results["repeat"] = repeat
    results["paths"] = {name: _median_run(each) for name, each in runs.items()}
    # Where Ledgerlink's time goes, one session: a separate run with timers (they cost a little themselves).
    results["paths"]["ledgerlink-1-breakdown"] = run_path("ledgerlink", 1, case, billing, work, latency_ms,
                                                          breakdown=True, ledger_url=ledger_url)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = results_name(case.name, ledger) + ".json"
    (out_dir / name).write_text(json.dumps(results, indent=2, default=str))
    return results


def results_name(case_name: str, ledger: str) -> str:
    """``onec_results`` for the counterparties on SQLite; the case and the ledger otherwise named after it."""
    return "onec_results" + ("" if case_name == "counterparties" else f"_{case_name}") + \
        ("" if ledger == "sqlite" else f"_{ledger}")


def markdown(results: dict) -> str:
    p = results["paths"]
    lines = [f"1C OData, {results['case']} ({results['unit']}): {results['rows']:,} billing records, "
             f"{results.get('ledger', 'sqlite')} ledger, stand-in "
             f"latency {results['latency_ms']:g} ms per request (server-side, overlapping between sessions), "
             f"{results['machine']['cpus']} CPUs shared, {results['started_at']}. Each figure is the median "
             f"of {results.get('repeat', 1)} runs, bare and Ledgerlink interleaved; every run in "
             f"{results_name(results['case'], results.get('ledger', 'sqlite'))}.json.",
             "",
             "| sessions | bare loop records/s | Ledgerlink load records/s | Ledgerlink / bare | × 1 session "
             "(Ledgerlink) | × 1 session (bare) | most in flight in 1C | client CPU ms/record (bare, Ledgerlink) |",
             "|---|---|---|---|---|---|---|---|"]
    one = p.get("ledgerlink-1", {}).get("records_per_s")
    bare_one = p.get("bare-1", {}).get("records_per_s")
    for key in sorted(k for k in p if k.startswith("bare-")):
        count = key.split("-")[1]
        bare, ours = p[key], p.get(f"ledgerlink-{count}", {})
        if "records_per_s" not in bare or "records_per_s" not in ours:
            lines.append(f"| {count} | {bare.get('error', '—')} | {ours.get('error', '—')} | | | | | |")
            continue
        lines.append(f"| {count} | {bare['records_per_s']:,.1f} | {ours['records_per_s']:,.1f} | "
                     f"{ours['records_per_s'] / bare['records_per_s']:.0%} | "
                     f"{ours['records_per_s'] / one:.2f}× | {bare['records_per_s'] / bare_one:.2f}× | "
                     f"{ours['most_in_flight']} | {1000 * bare['cpu_s'] / bare['records']:.2f}, "
                     f"{1000 * ours['cpu_s'] / ours['records']:.2f} |")
    breakdown = p.get("ledgerlink-1-breakdown", {})
    if breakdown.get("timers_s"):
        records = breakdown["records"]
        lines += ["", f"Ledgerlink, one session, where the time goes ({records:,} records, load "
                  f"{breakdown['seconds']:.2f} s; ledger writes run on the load's thread, overlapping the sends):", "",
                  "| what | seconds | calls | ms per record |", "|---|---|---|---|"]
        for label, seconds in sorted(breakdown["timers_s"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {label} | {seconds:.2f} | {breakdown['timer_calls'][label]:,} | "
                         f"{1000 * seconds / records:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--config")
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ONEC_ROWS", 2000)))
    parser.add_argument("--case", choices=sorted(CASES), default="counterparties")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the stand-in's own time per request")
    parser.add_argument("--sessions", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median is reported")
    parser.add_argument("--ledger", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path[:0] = [str(INCLUDE), str(ROOT)]
        cfg = json.loads(Path(args.config).read_text())
        Path(args.config).with_suffix(".out.json").write_text(json.dumps(WORKERS[args.worker](cfg), default=str))
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ledgerlink-bench-onec-"))
    try:
        results = run_onec_benchmark(args.rows, Path(args.out), work, case_name=args.case,
                                     latency_ms=args.latency_ms,
                                     sessions=tuple(int(n) for n in args.sessions.split(",")),
                                     repeat=args.repeat, ledger=args.ledger)
    finally:
        if not args.work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    table = markdown(results)
    (Path(args.out) / ("ONEC" + results_name(args.case, args.ledger).removeprefix("onec_results") + ".md")).write_text(
        "# 1C OData bench (issue 20)\n\n" + table)
    print(table)
    return 0 if all("error" not in p for p in results["paths"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
