"""The e-invoice bench (issue 22), opt-in: ``python -m bench.run --einvoices 10000``.

Measures, on generated billing and the real stand-ins on loopback:
- UBL-TR generation per second (documents built from records, checked and serialised), beside lxml serialising
  the same finished trees (the limit);
- dispatch through both integrators with the primary (REST) failing for the first third of the run (503 to every
  send until a third of the invoices are at GİB): invoices per minute, failovers, and duplicates at GİB (the
  stand-in GİB's own record: UUIDs registered more than once, and 1163 refusals; both must be 0).
Nothing here asserts a time.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml


def _billing_for(directory: Path, invoices: int) -> tuple[Path, Path]:
    """Billing with about ``invoices`` invoices to Turkish customers, and a routing copy whose cut-over takes
    them all (12 months a customer)."""
    from ledgerlink.einvoice.routing import DEFAULT_PATH
    from sandbox.generator import generate_billing

    billing = directory / "billing.db"
    # About 3.7 invoices a customer reach Turkey since the cut-over of 2000 (measured on seed 11).
    generate_billing(billing, seed=11, customers=max(10, round(invoices / 3.7)))
    routing = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    routing["issued_from"] = "2000-01-01"
    routing_path = directory / "routing.yaml"
    routing_path.write_text(yaml.safe_dump(routing, allow_unicode=True), encoding="utf-8")
    return billing, routing_path


def run_einvoice_bench(invoices: int, out_dir: Path) -> dict:
    import sqlalchemy as sa
    from lxml import etree

    from ledgerlink.billing.einvoices import read_einvoice_headers, read_einvoice_lines
    from ledgerlink.einvoice.clients import RestIntegrator, SoapIntegrator
    from ledgerlink.einvoice.dispatch import Breaker
    from ledgerlink.einvoice.document import build_tree, build_ubl, document_from_records, ettn_for
    from ledgerlink.einvoice.routing import load_routing
    from ledgerlink.flows.einvoices import EInvoiceFlow
    from ledgerlink.ledger import EInvoiceRegister, Ledger
    from sandbox.einvoice import rest_integrator, soap_integrator
    from sandbox.einvoice.gib import Gib
    from sandbox.httpbase import set_faults

    work = Path(tempfile.mkdtemp(prefix="ledgerlink-einvoice-bench-"))
    os.environ["LEDGERLINK_HOME"] = str(work / "home")
    billing_path, routing_path = _billing_for(work, invoices)
    os.environ["LEDGERLINK_EINVOICE_ROUTING"] = str(routing_path)
    routing = load_routing(routing_path)
    billing = sa.create_engine(f"sqlite:///{billing_path}")
    headers = read_einvoice_headers(billing, "2000-01-01").to_dict("records")
    lines = read_einvoice_lines(billing, [h["invoice_id"] for h in headers])

    # 1. documents: built from records, checked, serialised; beside lxml serialising the finished trees
    started = time.perf_counter()
    documents = [document_from_records(h, lines[h["invoice_id"]], supplier=routing.supplier,
                                       number=f"EFA{str(h['issue_date'])[:4]}{i + 1:09d}",
                                       ettn=ettn_for(routing.supplier.tax_id, h["invoice_id"]),
                                       profile="TEMELFATURA", type_code="SATIS") for i, h in enumerate(headers)]
    mapped = time.perf_counter() - started
    started = time.perf_counter()
    for document in documents:
        build_ubl(document)
    generated = time.perf_counter() - started
    trees = [build_tree(d) for d in documents]
    started = time.perf_counter()
    for tree in trees:
        etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    serialised = time.perf_counter() - started

    # 2. dispatch with the primary failing for the first third
    gib = Gib(work / "gib.db")
    with sqlite3.connect(billing_path) as db:
        for tax_id, name in db.execute("SELECT tax_id, legal_name FROM customers WHERE country = 'TR'"
                                       " AND entity_kind = 'company'"):
            gib.register_user(tax_id, name)
    ledger = Ledger.migrated(f"sqlite:///{work / 'ledger.db'}")
    register = EInvoiceRegister(ledger.engine)
    rest = rest_integrator.make_server("127.0.0.1", 0, gib, {"bench-key": "ledgerlink"}, name="rest")
    soap = soap_integrator.make_server("127.0.0.1", 0, gib, {"ledgerlink": "bench-password"}, name="soap")
    for server in (rest, soap):
        server.start_in_thread()
    clients = {"einvoice_rest": RestIntegrator("einvoice_rest", rest.url, "bench-key", timeout=10),
               "einvoice_soap": SoapIntegrator("einvoice_soap", soap.url, "ledgerlink", "bench-password", timeout=10)}
    flow = EInvoiceFlow(routing=lambda: routing, status_tries=2,
                        breaker=lambda: Breaker(threshold=3, cooldown=5.0))
    state = flow.number(flow.gate(flow.extract("bench", billing, ledger), ledger), billing,
                        clients["einvoice_rest"], ledger)
    total = len(register.invoices())
    set_faults(rest.url, [{"mode": "error", "status": 503, "methods": ["POST"]}])
    stop = threading.Event()
    healed_at = {}

    def heal_after_a_third() -> None:
        while not stop.is_set():
            if len(register.invoices(states=("queued", "accepted"))) >= total / 3:
                set_faults(rest.url, [])
                healed_at["seconds"] = time.perf_counter() - dispatch_started
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=heal_after_a_third, daemon=True)
    dispatch_started = time.perf_counter()
    watcher.start()
    for _wave in ("primaries", "failovers"):
        for name in sorted(routing.integrators):
            flow.send(state, name, clients, ledger)
    dispatched = time.perf_counter() - dispatch_started
    stop.set()
    with contextlib.suppress(Exception):
        summary = flow.reconcile_and_report(state, clients, ledger)
    for server in (rest, soap):
        server.shutdown()
        server.server_close()
    at_gib = {}
    with sqlite3.connect(gib.db_path) as db:
        for uuid, integrator in db.execute("SELECT uuid, integrator FROM invoices"):
            at_gib[uuid] = at_gib.get(uuid, 0) + 1
    invoices_now = register.invoices()
    results = {
        "invoices": len(headers),
        "ubl_documents_per_second": round(len(documents) / generated),
        "lxml_serialise_only_per_second": round(len(trees) / serialised),
        "records_to_document_model_per_second": round(len(documents) / mapped),
        "dispatched": total,
        "dispatch_seconds": round(dispatched, 2),
        "invoices_per_minute": round(total / dispatched * 60),
        "primary_healed_after_seconds": round(healed_at.get("seconds", float("nan")), 2),
        "carried": dict(Counter(i["carrier"] for i in invoices_now)),
        "failed_over": sum(1 for i in invoices_now if i["carrier"] and i["carrier"] != i["primary_integrator"]),
        "states": dict(Counter(i["state"] for i in invoices_now)),
        "at_gib": len(at_gib),
        "duplicates_at_gib": sum(1 for n in at_gib.values() if n > 1),
        "gib_1163_refusals": sum(1 for r in gib.rejections() if r["code"] == 1163),
        "ledger": "SQLite", "summary_ok": bool(locals().get("summary")),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "einvoice_results.json").write_text(json.dumps(results, indent=2))
    return results
