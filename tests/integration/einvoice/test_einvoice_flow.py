"""The e-invoice flow against the stand-ins: statuses until final, refusals to finance with both codes and the
number never reused, 429 with Retry-After honoured, credit notes (IADE), tax ids held back, and a secret canary
that never reaches a log, the ledger, a staged file, a report or an archived document."""
from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile
from collections import Counter
from datetime import date

import pytest
import sqlalchemy as sa

from ledgerlink.einvoice.document import build_ubl, document_from_records
from ledgerlink.einvoice.routing import load_routing
from ledgerlink.errors import ReconciliationError, TerminalError
from ledgerlink.flows.einvoices import EInvoiceFlow, archive_path, check_target, daily_summary
from ledgerlink.ledger.einvoices import ACCEPTED, QUEUED, REJECTED
from ledgerlink.retrying import RetryBudget
from sandbox.httpbase import set_faults
from tests.support.einvoice_world import REST, SOAP, einvoice_world


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_dry_run_numbers_nothing_and_sends_nothing_then_one_customer_goes_alone(tmp_path, home):
    from ledgerlink.flows.params import RunParams

    with einvoice_world(tmp_path) as world:
        dry = EInvoiceFlow(status_tries=2).run_all("dry", world.billing, world.clients(), world.ledger,
                                                   RunParams(dry_run=True))
        assert dry.dry_run and dry.sent == 37 and "would send: 37" in dry.text()
        assert world.register.invoices() == [] and world.register.series_counters() == {}, "no number taken"
        customer = world.billing.connect().exec_driver_sql(
            "SELECT min(i.customer_id) FROM invoices i JOIN customers c USING (customer_id) "
            "WHERE c.country = 'TR'").scalar()
        one = EInvoiceFlow(status_tries=2).run_all("one", world.billing, world.clients(), world.ledger,
                                                   RunParams(customer=customer))
        assert 0 < one.sent < 37
        of_customer = {r[0] for r in world.billing.connect().exec_driver_sql(
            "SELECT invoice_id FROM invoices WHERE customer_id = ?", (customer,))}
        assert {i["invoice_id"] for i in world.register.invoices()} <= of_customer


def test_statuses_are_polled_until_every_invoice_is_final(tmp_path, home):
    with einvoice_world(tmp_path, queued_polls=2) as world:
        summary = EInvoiceFlow(status_tries=2).run_all("run-1", world.billing, world.clients(), world.ledger)
        assert "queued 37" in summary.reconciliation_detail  # GİB has them, not yet done
        rounds = 0
        while world.register.invoices(states=(QUEUED,)):
            rounds += 1
            assert rounds <= 3
            EInvoiceFlow(status_tries=2).poll_statuses(world.clients(), world.ledger)
        assert Counter(i["state"] for i in world.register.invoices()) == {ACCEPTED: 37}
        assert all(i["gib_status"] == 1300 and i["final_at"] for i in world.register.invoices())
        line, agrees = check_target(world.ledger, world.clients())  # `ledgerlink summary --check-targets`
        assert agrees and "hold 37 e-invoices accepted by GİB; the ledger has 37" in line


def test_a_refusal_reaches_finance_with_both_codes_and_its_number_is_never_reused(tmp_path, home):
    with einvoice_world(tmp_path) as world:
        routing = load_routing()
        # Someone else used our second e-Fatura number at GİB (another UUID): GİB refuses ours, 1150.
        intruder = document_from_records(
            {"invoice_id": "X", "issue_date": "2026-09-01", "currency": "TRY", "tax_id": "4549617050",
             "legal_name": "Başka A.Ş.", "address": "Bir Sk. 1", "city": "Ankara"},
            [{"line_no": 1, "description": "x", "quantity": "1", "unit_price_minor": 100, "net_minor": 100,
              "vat_rate": "20", "vat_minor": 20}],
            supplier=routing.supplier, number="EFA2026000000002", ettn=str(uuid.uuid4()), profile="TEMELFATURA",
            type_code="SATIS")
        world.clients()[REST].send(intruder.ettn, intruder.number, build_ubl(intruder))
        with pytest.raises(TerminalError, match="integrator code 422, GİB 1150") as error:
            EInvoiceFlow(status_tries=2).run_all("run-1", world.billing, world.clients(), world.ledger)
        assert "EFA2026000000002" in str(error.value) and "daha önce kullanılmış" in str(error.value)
        (refused,) = world.register.invoices(states=(REJECTED,))
        assert (refused["number"], refused["carrier"], refused["integrator_code"], refused["gib_status"]) == \
            ("EFA2026000000002", REST, "422", 1150)
        assert not any(a["integrator"] == SOAP for a in world.register.attempts(refused["invoice_id"]))  # no failover
        counters = world.register.series_counters()
        EInvoiceFlow(status_tries=2).run_all("run-2", world.billing, world.clients(), world.ledger)
        assert world.register.series_counters() == counters  # no new number; the refused one stays used
        assert world.register.invoice(refused["invoice_id"])["state"] == REJECTED
        text = daily_summary(world.ledger, date.today())
        assert "refused 1" in text and "EFA2026000000002 via einvoice_rest: integrator code 422, GİB 1150" in text
        # The workbook's payable amounts are numbers that sum to the register's exact total.
        from decimal import Decimal

        from openpyxl import load_workbook

        from ledgerlink import settings

        sheet = load_workbook(settings.home() / "reports" / "einvoices" / f"summary_{date.today()}.xlsx")["invoices"]
        header = [c.value for c in sheet[1]]
        payable = [row[header.index("payable")] for row in sheet.iter_rows(min_row=2)]
        assert all(c.number_format == "#,##0.00" and isinstance(c.value, (int, float)) for c in payable)
        assert sum(Decimal(repr(c.value)) for c in payable) == sum(i["payable"] for i in world.register.invoices())
        assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref


def test_429_is_retried_after_exactly_retry_after_and_a_longer_limit_waits_for_the_next_run(tmp_path, home):
    with einvoice_world(tmp_path) as world:
        waits = []
        set_faults(world.servers[REST].url, [{"mode": "error", "status": 429, "retry_after": 2, "count": 2,
                                              "methods": ["POST"]}])
        flow = EInvoiceFlow(status_tries=2, retry=lambda: RetryBudget(sleep=waits.append))
        flow.run_all("run-1", world.billing, world.clients(), world.ledger)
        assert waits == [2.0, 2.0]
        assert Counter(i["carrier"] for i in world.register.invoices()) == {REST: 29, SOAP: 8}  # no failover
    with einvoice_world(tmp_path / "long") as world:
        set_faults(world.servers[REST].url, [{"mode": "error", "status": 429, "retry_after": 3600,
                                              "methods": ["POST"]}])
        with pytest.raises(ReconciliationError, match="could not be sent"):
            EInvoiceFlow(status_tries=2, retry=lambda: RetryBudget(sleep=waits.append)).run_all(
                "run-1", world.billing, world.clients(), world.ledger)
        assert waits == [2.0, 2.0]  # never retried sooner than told
        assert not any(a["integrator"] == SOAP and a["invoice_id"] in {i["invoice_id"] for i in
                       world.register.invoices() if i["primary_integrator"] == REST} for a in world.register.attempts())


def test_a_credit_note_goes_as_iade_naming_its_invoice_and_a_bad_tax_id_is_held_back(tmp_path, home):
    with einvoice_world(tmp_path / "w") as world:
        with world.billing.begin() as conn:
            person = conn.execute(sa.text("SELECT customer_id FROM customers WHERE country = 'TR' AND "
                                          "entity_kind = 'person' ORDER BY customer_id LIMIT 1")).scalar()
            conn.execute(sa.text("UPDATE customers SET tax_id = '10000000147' WHERE customer_id = :c"), {"c": person})
        flow = EInvoiceFlow(status_tries=2)
        first = flow.run_all("run-1", world.billing, world.clients(), world.ledger)
        held = world.ledger.quarantined(flow="billing_einvoices")
        assert first.quarantined == len(held) > 0
        assert all("VKN/TCKN has valid check digits" in q["reasons"] for q in held)
        assert not world.register.known_ids() & {q["source_key"] for q in held}  # no number taken
        original = next(i for i in world.register.invoices() if i["series"] == "EFA")
        with world.billing.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO invoices SELECT 'CN00000001', customer_id, contract_id, 'CN-1', '2026-11-15',"
                " period_start, period_end, currency, -net_minor, -vat_minor, -gross_minor, 'issued', updated_at,"
                " invoice_id FROM invoices WHERE invoice_id = :i"), {"i": original["invoice_id"]})
            conn.execute(sa.text(
                "INSERT INTO invoice_lines SELECT 'CN00000001-' || line_no, 'CN00000001', line_no, tariff_id,"
                " description, quantity, unit_price_minor, -net_minor, vat_rate, -vat_minor, -gross_minor, currency,"
                " updated_at FROM invoice_lines WHERE invoice_id = :i"), {"i": original["invoice_id"]})
        flow.run_all("run-2", world.billing, world.clients(), world.ledger)
        credit = world.register.invoice("CN00000001")
        assert (credit["series"], credit["type_code"], credit["number"], credit["state"]) == \
            ("EIA", "IADE", "EIA2026000000001", ACCEPTED)
        xml = archive_path(credit).read_bytes()
        assert b"<cbc:InvoiceTypeCode>IADE</cbc:InvoiceTypeCode>" in xml
        assert f"<cbc:ID>{original['number']}</cbc:ID>".encode() in xml


@pytest.fixture
def task_log():
    """Every log record of the test at DEBUG, formatted with its traceback, as a task log would hold it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_secret_canary_never_reaches_a_log_the_ledger_a_staged_file_a_report_or_an_archive(
        tmp_path, home, monkeypatch, task_log):
    canary_key, canary_password = "canary-rest-K3y-9f1c", "canary-soap-Pa55-77ab"
    from sandbox.einvoice import rest_integrator, soap_integrator
    from sandbox.einvoice.gib import Gib
    from sandbox.generator import generate_billing
    from tests.support.einvoice_world import register_turkish_companies
    from tests.support.sandbox_http import serving
    from ledgerlink import tasks
    from ledgerlink.ledger import Ledger

    generate_billing(tmp_path / "billing.db", seed=9, customers=40)
    gib = Gib(tmp_path / "gib.db")
    register_turkish_companies(tmp_path / "billing.db", gib)
    ledger = Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")
    with serving(rest_integrator.make_server("127.0.0.1", 0, gib, {canary_key: "t"})) as rest, \
            serving(soap_integrator.make_server("127.0.0.1", 0, gib, {"ledgerlink": canary_password})) as soap:
        for name, server, login, password in ((REST, rest, None, canary_key),
                                              (SOAP, soap, "ledgerlink", canary_password)):
            host, port = server.server_address[:2]
            monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_DEFAULT", json.dumps(
                {"conn_type": "http", "host": host, "port": port, "schema": "http", "login": login,
                 "password": password, "extra": {"timeout": 2}}))
        set_faults(rest.url, [{"mode": "error", "status": 503, "count": 3, "methods": ["POST"]},
                              {"mode": "drop_after_apply", "count": 2, "methods": ["POST"]}])
        clients = tasks.einvoice_clients()
        EInvoiceFlow(status_tries=2).run_all("run-1", sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
                                             clients, ledger)
        wrong = tasks.einvoice_clients()
        wrong[SOAP]._password = "not-" + canary_password  # a refused login: its error must not carry secrets
        with pytest.raises(TerminalError) as refused:
            wrong[SOAP].status(str(uuid.uuid4()))
        assert repr(clients[REST]) and repr(clients[SOAP])
    assert "einvoice" in task_log.getvalue()
    places = {"task log": task_log.getvalue(), "refusal": str(refused.value),
              "client reprs": repr(clients[REST]) + repr(clients[SOAP])}
    for path in [*home.rglob("*"), *tmp_path.glob("ledger.db*")]:
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("latin-1")
            if path.suffix == ".xlsx":
                with zipfile.ZipFile(path) as workbook:
                    places[str(path)] += "".join(workbook.read(n).decode("utf-8") for n in workbook.namelist())
    with ledger.engine.connect() as conn:
        for table in ("einvoices", "einvoice_attempts", "runs", "quarantine", "validations", "items"):
            places[f"ledger table {table}"] = json.dumps([list(map(str, r)) for r in conn.execute(
                sa.text(f"SELECT * FROM {table}"))])
    assert len([p for p in places if "/einvoice/archive/" in p and p.endswith(".xml")]) == 37
    leaks = [where for where, text in places.items() if canary_key in text or canary_password in text]
    assert leaks == []
