"""The month-end file exchange benchmark of issue 20 (opt-in: ``python -m bench.run onec_files``).

Billing (SQLite) holds ``--documents`` issued invoices of one month with ``--lines`` lines each. Measured, each in
its own process (peak RSS, ``wait4``'s ``ru_maxrss``, is that process's alone; RSS after the imports is reported
beside it), at each size given, so the figures at 2,000 and 20,000 documents show whether memory follows the
documents:

- ``send``: the run's first task as the DAG runs it (``flows.invoices_to_onec_files.send_period``): 1C's answers
  read, the month's documents streamed from billing, each serialised and hashed, the EnterpriseData message and
  the XLSX register written as streams, the ledger planning and marking every document sent, and the upload of
  register, manifest and message over SFTP to a real OpenSSH sshd, each under a temporary name;
- ``write``: the writers alone (the documents streamed from billing into the message and the register; no
  ledger, no upload).

Nothing here asserts a time. Results go to ``<out>/onec_files_results.json`` and a section of
``<out>/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.run import worker_env  # the workers' environment, as bench.run's own

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include"
PERIOD = "2026-11"
ORGANISATION_INN = "7701452833"
SECTION = "## Month-end file exchange with 1C (issue 20)"


def write_billing(path: Path, documents: int, lines: int) -> None:
    """``documents`` issued November invoices with ``lines`` lines each (VAT 22 % per line, half-up)."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE customers (customer_id TEXT PRIMARY KEY, legal_name TEXT, country TEXT, entity_kind TEXT,
                                tax_id TEXT, kpp TEXT);
        CREATE TABLE contracts (contract_id TEXT PRIMARY KEY, customer_id TEXT, number TEXT, signed_on TEXT,
                                currency TEXT);
        CREATE TABLE tariffs (tariff_id TEXT PRIMARY KEY, name TEXT, unit TEXT);
        CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, customer_id TEXT, contract_id TEXT, number TEXT,
                               issue_date TEXT, period_start TEXT, period_end TEXT, currency TEXT, net_minor BIGINT,
                               vat_minor BIGINT, gross_minor BIGINT, status TEXT, updated_at TEXT);
        CREATE TABLE invoice_lines (line_id TEXT PRIMARY KEY, invoice_id TEXT, line_no INTEGER, tariff_id TEXT,
                                    description TEXT, quantity TEXT, unit_price_minor BIGINT, net_minor BIGINT,
                                    vat_rate TEXT, vat_minor BIGINT, gross_minor BIGINT);
        CREATE INDEX ix_lines_invoice ON invoice_lines (invoice_id, line_no);
        CREATE INDEX ix_invoices_issue ON invoices (issue_date);""")
    customers = 500
    db.executemany("INSERT INTO customers VALUES (?, ?, 'RU', 'company', ?, '770101001')",
                   [(f"C{n:06d}", f"ООО «Клиент {n}»", f"77{n:08d}") for n in range(customers)])
    db.executemany("INSERT INTO contracts VALUES (?, ?, ?, '2026-01-10', 'RUB')",
                   [(f"K{n:06d}", f"C{n:06d}", f"Д-2026/{n}") for n in range(customers)])
    db.executemany("INSERT INTO tariffs VALUES (?, ?, 'minute')",
                   [(f"T{n}", f"Услуга связи {n}") for n in range(lines)])
    headers, rows = [], []
    for n in range(documents):
        invoice_id = f"IN{n:08d}"
        net_total = vat_total = 0
        for line_no in range(1, lines + 1):
            minutes_tenths = 100 + (n * 7 + line_no * 13) % 5000
            net = minutes_tenths * 15  # 1.50 a minute, in kopecks
            vat = (net * 22 + 50) // 100
            net_total, vat_total = net_total + net, vat_total + vat
            rows.append((f"{invoice_id}-{line_no:04d}", invoice_id, line_no, f"T{line_no - 1}",
                         f"Конференции, ноябрь 2026, строка {line_no}", f"{minutes_tenths / 10:.1f}", 150, net, "22",
                         vat, net + vat))
        day = 1 + n % 28
        headers.append((invoice_id, f"C{n % customers:06d}", f"K{n % customers:06d}", f"БЛ-{n:07d}",
                        f"2026-11-{day:02d}", "2026-11-01", "2026-11-30", "RUB", net_total, vat_total,
                        net_total + vat_total, "issued", f"2026-11-{day:02d}T05:00:00+00:00"))
        if len(rows) >= 50_000:
            db.executemany("INSERT INTO invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            rows = []
    db.executemany("INSERT INTO invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", headers)
    db.commit()
    db.close()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# workers: ``python -m bench.onec_files --worker NAME --config FILE``; each writes FILE.out.json -----------------
def worker_send(cfg: dict) -> dict:
    import sqlalchemy as sa

    from devtools.sshd import SshdInfo, sftp_client
    from ledgerlink.flows import invoices_to_onec_files as flow
    from ledgerlink.ledger import Ledger

    billing = sa.create_engine(f"sqlite:///{cfg['billing']}")
    ledger = Ledger.migrated(f"sqlite:///{cfg['work']}/ledger.db")
    server = SshdInfo(**{**cfg["server"], "private_key_path": Path(cfg["server"]["private_key_path"]),
                         "root": Path(cfg["server"]["root"]), "log_path": None})
    settings = flow.ExchangeSettings(root=cfg["exchange"], organisation_inn=ORGANISATION_INN)
    rss_ready = _rss_mb()
    with sftp_client(server) as sftp:
        started = time.perf_counter()
        state = flow.send_period("bench-send", PERIOD, billing, sftp, settings, ledger)
        seconds = time.perf_counter() - started
    message = Path(cfg["exchange"]) / "in" / state["message"]
    return {"seconds": seconds, "documents": state["documents"], "message_bytes": message.stat().st_size,
            "register_bytes": (Path(cfg["exchange"]) / "registers" /
                               state["message"].replace(".xml", ".register.xlsx")).stat().st_size,
            "rss_after_imports_mb": rss_ready}


def worker_write(cfg: dict) -> dict:
    import sqlalchemy as sa

    from ledgerlink.billing.closing import closing_documents
    from ledgerlink.onec import enterprise_data as ed

    billing = sa.create_engine(f"sqlite:///{cfg['billing']}")
    rss_ready = _rss_mb()
    message, register_path = Path(cfg["work"]) / "message.xml", Path(cfg["work"]) / "register.xlsx"
    header = ed.MessageHeader("Ledgerlink", "BILLING", "1C", 1, 0, datetime.now(timezone.utc))
    started = time.perf_counter()
    register = ed.RegisterWriter(register_path, 1)
    count = 0

    def documents():
        nonlocal count
        for doc in closing_documents(billing, PERIOD):
            count += 1
            register.add(doc)
            yield ed.document_bytes(doc, ORGANISATION_INN)

    ed.write_message(message, header, documents())
    register.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "documents": count, "message_bytes": message.stat().st_size,
            "register_bytes": register_path.stat().st_size, "rss_after_imports_mb": rss_ready}


WORKERS = {"send": worker_send, "write": worker_write}


def _in_process(name: str, cfg: dict, work: Path) -> dict:
    config = work / f"{name}.json"
    config.write_text(json.dumps(cfg))
    env = {**worker_env(), "LEDGERLINK_HOME": str(work / "home")}
    with open(work / f"{name}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "bench.onec_files", "--worker", name, "--config",
                                    str(config)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"worker {name} failed:\n{(work / f'{name}.log').read_text(errors='replace')[-3000:]}")
    result = json.loads((work / f"{name}.json.out.json").read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def run_bench(sizes: list[int], lines: int, out_dir: Path, work_root: Path | None = None) -> dict:
    from devtools.sshd import run_sshd

    work_root = Path(work_root or tempfile.mkdtemp(prefix="onec_files_bench_"))
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "python": platform.python_version(), "lines_per_document": lines, "sizes": {}}
    try:
        with run_sshd(work_root / "sshd") as server:
            info = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(server).items() if k != "log_path"}
            for size in sizes:
                work = work_root / f"size_{size}"
                work.mkdir(parents=True)
                billing = work / "billing.db"
                started = time.perf_counter()
                write_billing(billing, size, lines)
                generated = time.perf_counter() - started
                by_size = {"billing_generated_seconds": round(generated, 2)}
                for name in ("write", "send"):
                    exchange = server.root / f"exchange_{size}_{name}"
                    cfg = {"billing": str(billing), "work": str(work), "server": info, "exchange": str(exchange)}
                    by_size[name] = _in_process(name, cfg, work)
                    print(f"{size} documents, {name}: {json.dumps(by_size[name])}", flush=True)
                results["sizes"][str(size)] = by_size
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "onec_files_results.json").write_text(json.dumps(results, indent=2))
    _write_section(out_dir / "RESULTS.md", results)
    return results


def _write_section(path: Path, results: dict) -> None:
    lines = [SECTION, "",
             f"Measured {results['when']} on {results['cpus']} CPUs, Python {results['python']}: one month's issued "
             f"invoices, {results['lines_per_document']} lines each, from billing (SQLite) into one EnterpriseData "
             f"message and its XLSX register; each path in its own process (`python -m bench.run onec_files`; "
             f"figures in `onec_files_results.json`).", "",
             "| documents | path | seconds | documents/s | message (MB) | register (MB) | RSS after imports (MB) "
             "| peak RSS (MB) |", "|---|---|---|---|---|---|---|---|"]
    names = {"write": "writers alone (billing → message + register)",
             "send": "the DAG's send task (+ ledger, upload over SFTP to OpenSSH)"}
    for size, by_size in results["sizes"].items():
        for name in ("write", "send"):
            r = by_size[name]
            lines.append(f"| {int(size):,} | {names[name]} | {r['seconds']:.2f} | {r['documents'] / r['seconds']:,.0f} "
                         f"| {r['message_bytes'] / 1e6:.1f} | {r['register_bytes'] / 1e6:.1f} | "
                         f"{r['rss_after_imports_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    sizes = sorted(results["sizes"], key=int)
    if len(sizes) > 1:
        small, large = results["sizes"][sizes[0]], results["sizes"][sizes[-1]]
        growth = {name: large[name]["peak_rss_mb"] - small[name]["peak_rss_mb"] for name in ("write", "send")}
        lines += ["", f"From {int(sizes[0]):,} to {int(sizes[-1]):,} documents ({int(sizes[-1]) // int(sizes[0])}x) "
                      f"peak RSS moves by {growth['write']:+.0f} MB for the writers and {growth['send']:+.0f} MB for "
                      f"the send task: the documents stream through one at a time; what grows with them is the "
                      f"ledger's bookkeeping (a key, hash and item id per document, planned and marked sent in bulk). "
                      f"The machine is shared: wall times include waiting for a CPU."]
    text = path.read_text() if path.exists() else ""
    section = "\n".join(lines) + "\n"
    if SECTION in text:
        text = re.sub(re.escape(SECTION) + r".*?(?=\n## |\Z)", section.rstrip("\n") + "\n", text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--config")
    parser.add_argument("--documents", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args(argv)
    if args.worker:
        cfg = json.loads(Path(args.config).read_text())
        result = WORKERS[args.worker](cfg)
        Path(args.config + ".out.json").write_text(json.dumps(result))
        return 0
    print(json.dumps(run_bench(args.documents, args.lines, Path(args.out)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
