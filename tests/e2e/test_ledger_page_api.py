"""The Exchange ledger page's API as Airflow serves it: a real ``airflow api-server`` loads the plugin through
its entry point and mounts the app; calls carry the JWT Airflow issued (``POST /auth/token``), or none.

Every connection (the ledger's and billing's included) carries a canary password; every answer of this
module is kept and none may contain it.
"""
from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ledgerlink.ledger import ACKNOWLEDGED, PLANNED, SENT, SUCCEEDED, Item, Ledger, PlannedChange
from tests.support.airflow_api import REPO, api_server, migrate_metadata, token

pytestmark = pytest.mark.slow
CANARY = "canary-Pw-7f3a9c"
FLOW_LINES, FLOW_CUSTOMERS = "billing_invoice_lines_to_erp", "billing_customers_to_onec"
RUN_LINES = "scheduled__2026-11-30T01:00:00+00:00"
RUN_CUSTOMERS = "manual__2026-11-30T02:00:00+00:00"
ANSWERS: list[str] = []  # every body this module received


def _billing(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE customers (customer_id TEXT PRIMARY KEY, legal_name TEXT, tax_id TEXT);
            CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, customer_id TEXT, number TEXT, issue_date TEXT,
                                   currency TEXT, net_minor INTEGER, vat_minor INTEGER, gross_minor INTEGER);
            CREATE TABLE invoice_lines (line_id TEXT PRIMARY KEY, invoice_id TEXT, currency TEXT, net_minor INTEGER,
                                        vat_minor INTEGER, gross_minor INTEGER);
            INSERT INTO customers VALUES ('C000001', 'Anadolu Konferans Hizmetleri A.Ş.', '1234567802'),
                                         ('C000002', 'ООО «Северный мост»', '7707083893');
            INSERT INTO invoices VALUES ('IN00000001', 'C000001', 'INV-2026-0001', '2026-11-30', 'TRY', 150000, 30000, 180000),
                                        ('IN00000002', 'C000002', 'INV-2026-0002', '2026-11-30', 'RUB', 1000, 200, 1200);
            INSERT INTO invoice_lines VALUES ('IN00000001-0001', 'IN00000001', 'TRY', 100000, 20000, 120000),
                                             ('IN00000001-0002', 'IN00000001', 'TRY', 50000, 10000, 60000),
                                             ('IN00000002-0001', 'IN00000002', 'RUB', 1000, 200, 1200);
        """)


def _ledger(home: Path) -> Ledger:
    ledger = Ledger.migrated(f"sqlite:///{home / 'ledger.db'}")
    # the customers' run: C000001 sent and confirmed
    ledger.start_run(RUN_CUSTOMERS, FLOW_CUSTOMERS)
    ids = ledger.plan_and_mark_sent(RUN_CUSTOMERS, FLOW_CUSTOMERS, "onec", "customer",
                                    [PlannedChange("C000001", "ref-1", "h1", "create")])
    ledger.acknowledge(FLOW_CUSTOMERS, [(ids["C000001"], "C000001", "h1", "ref-1", "create")])
    ledger.finish_run(RUN_CUSTOMERS, FLOW_CUSTOMERS, SUCCEEDED, {"sent": 1, "created": 1, "target": "1C"})
    # the lines' run: IN00000001's two lines in chunk 0, IN00000002-0001 held back
    ledger.start_run(RUN_LINES, FLOW_LINES)
    chunk = ledger.plan_chunk(RUN_LINES, FLOW_LINES, "erp", "invoice_line", 0, "upsert", 2, sent=True)
    ledger.record_confirmed_lines(FLOW_LINES, chunk, ["IN00000001-0001", "IN00000001-0002"], ["a", "b"],
                                  ["create", "create"], expect_new=True)
    ledger.quarantine(RUN_LINES, FLOW_LINES, "invoice_line", [
        ("IN00000002-0001", ["vat_minor: 200 is not 20% of net 1000 at VAT 22", "description: control character"],
         {"line_id": "IN00000002-0001", "currency": "RUB", "net_minor": 1000, "vat_minor": 200, "vat_rate": "22"})])
    reports = home / "reports" / FLOW_LINES / "run1"
    reports.mkdir(parents=True)
    (reports / "reconciliation.xlsx").write_bytes(b"PK\x03\x04 a workbook's bytes")
    (reports / "gate_invoice_line.html").write_text("<html><body>gate: 1 row held back</body></html>")
    (home / "reports" / "escape.xlsx").symlink_to(home / "private.xlsx")
    (home / "private.xlsx").write_bytes(b"not a report " + CANARY.encode())
    ledger.finish_run(RUN_LINES, FLOW_LINES, SUCCEEDED, {
        "sent": 2, "created": 2, "quarantined": 1, "target": "ERP billed_invoice_lines",
        "totals": [{"currency": "TRY", "vat_rate": "20", "net": "1500.00", "vat": "300.00", "gross": "1800.00"}],
        "source_totals": [{"currency": "TRY", "vat_rate": "20", "net": "2500.00", "vat": "500.00", "gross": "3000.00"}],
        "target_totals": [{"currency": "TRY", "vat_rate": "20", "net": "2500.00", "vat": "500.00", "gross": "2999.99"}],
        "reconciliation": ["gross in TRY at VAT 20%: source 3000.00, target 2999.99 (difference 0.01)"],
        "reconciliation_detail": "billing 2 lines, ERP 2 lines",
        "gate_report": str(reports / "gate_invoice_line.html"), "workbook": str(reports / "reconciliation.xlsx")})
    # C000009: refused by 1C
    refused = ledger.plan_and_mark_sent(RUN_CUSTOMERS, FLOW_CUSTOMERS, "onec", "customer",
                                        [PlannedChange("C000009", "ref-9", "h9", "create")])
    ledger.record_failure(refused["C000009"], "1C answered 400: ИНН has wrong check digits", terminal=True)
    # 120 items waiting: 70 planned, 50 sent without an answer, in two flows
    now = datetime.now(timezone.utc)
    with ledger.engine.begin() as conn:
        conn.execute(sa.insert(Item), [
            {"run_id": "manual__open", "flow": FLOW_CUSTOMERS if n % 3 else "billing_einvoices",
             "target": "onec", "entity": "customer", "source_key": f"P{n:05d}", "operation": "update",
             "status": PLANNED if n < 70 else SENT, "attempts": 0 if n < 70 else 1, "planned_at": now,
             "updated_at": now} for n in range(120)])
    return ledger


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("ledger_page")
    home = base / "home"
    home.mkdir()
    _billing(base / "billing.db")
    _ledger(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"PYTHONPATH": str(REPO / "include"), "AIRFLOW_HOME": str(base / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(base / "no-dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "LEDGERLINK_HOME": str(home)})
    env.pop("LEDGERLINK_LEDGER_URL", None)
    sqlite_conn = {"conn_type": "sqlite", "login": "ledgerlink", "password": CANARY}
    env["AIRFLOW_CONN_BILLING_DEFAULT"] = json.dumps({**sqlite_conn, "host": str(base / "billing.db")})
    env["AIRFLOW_CONN_LEDGERLINK_LEDGER"] = json.dumps({**sqlite_conn, "host": str(home / "ledger.db")})
    for conn_id in ("onec_default", "erp_default", "crm_default", "einvoice_rest_default", "einvoice_soap_default",
                    "bridge_sftp", "onec_exchange_sftp", "smtp_default"):
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = f"http://ledgerlink:{CANARY}@127.0.0.1:9/"
    migrate_metadata(env)
    with api_server(env, base / "api-server.log") as running:
        running["token"] = token(running)
        yield running


def _get(server, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server['token']}"} if auth else {}
    answer = httpx.get(f"{server['url']}{path}", headers=headers, timeout=30, **kwargs)
    ANSWERS.append(f"{path} {answer.status_code} {answer.headers} {answer.text}")
    return answer


def test_airflow_lists_the_plugin_with_its_page_in_the_navigation(server):
    plugins = _get(server, "/api/v2/plugins").json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "ledgerlink")
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/ledgerlink"]
    view = ours["external_views"][0]
    assert (view["name"], view["href"], view["destination"], view["url_route"]) == (
        "Exchange ledger", "ledgerlink/", "nav", "exchange-ledger")


@pytest.mark.parametrize("path", ["/ledgerlink/api/search?q=IN00000001", "/ledgerlink/api/planned",
                                  "/ledgerlink/api/held-back", "/ledgerlink/api/runs", "/ledgerlink/api/per-day",
                                  "/ledgerlink/api/map",
                                  f"/ledgerlink/files/reports/{FLOW_LINES}/run1/reconciliation.xlsx"])
def test_an_anonymous_caller_gets_401_and_no_data(server, path):
    answer = _get(server, path, auth=False)
    assert answer.status_code == 401
    assert "IN0000" not in answer.text and "PK" not in answer.text
    forged = httpx.get(f"{server['url']}{path}", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30)
    ANSWERS.append(forged.text)
    assert forged.status_code in (401, 403) and "IN0000" not in forged.text
    cookie = httpx.get(f"{server['url']}{path}", cookies={"_token": server["token"]}, timeout=30)
    ANSWERS.append(cookie.text)
    assert cookie.status_code == 200, "the UI's own cookie is accepted like the bearer token"


def test_the_page_sends_an_anonymous_visitor_to_airflows_login(server):
    answer = _get(server, "/ledgerlink/", auth=False, follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"].startswith(f"{server['url']}/api/v2/auth/login?next=")
    assert "<script" not in answer.text
    page = _get(server, "/ledgerlink/")
    assert page.status_code == 200 and "Exchange ledger" in page.text and "api/search" in page.text


def test_an_invoice_number_finds_each_line_where_it_went_with_amounts_and_links(server):
    answer = _get(server, "/ledgerlink/api/search", params={"q": "IN00000001"}).json()
    lines = [s for s in answer["steps"] if s["kind"] == "line"]
    assert sorted(s["key"] for s in lines) == ["IN00000001-0001", "IN00000001-0002"]
    first = next(s for s in lines if s["key"] == "IN00000001-0001")
    assert (first["system"], first["flow"], first["run_id"], first["status"]) == ("erp", FLOW_LINES, RUN_LINES,
                                                                                   ACKNOWLEDGED)
    assert first["amounts"] == {"currency": "TRY", "net": "1000.00", "vat": "200.00", "gross": "1200.00"}
    run = "dags/billing_invoice_lines_to_erp/runs/scheduled__2026-11-30T01%3A00%3A00%2B00%3A00"
    assert first["links"] == {"dag_run": run, "task_log": f"{run}/tasks/load"}
    # billing's own invoice number leads to the same lines
    by_number = _get(server, "/ledgerlink/api/search", params={"q": "INV-2026-0001"}).json()
    assert {s["key"] for s in by_number["steps"] if s["kind"] == "line"} == {"IN00000001-0001", "IN00000001-0002"}


def test_a_held_back_line_says_why_in_major_units(server):
    answer = _get(server, "/ledgerlink/api/search", params={"q": "IN00000002-0001"}).json()
    (held,) = [s for s in answer["steps"] if s["kind"] == "held back"]
    assert "vat_minor: 200 is not 20% of net 1000" in held["result"]
    assert held["values"]["net"] == "10.00" and held["values"]["vat"] == "2.00" and "net_minor" not in held["values"]
    assert held["links"]["task_log"].endswith("/tasks/gate")


@pytest.mark.parametrize("query", ["anadolu konferans", "1234567802", "C000001", "Konferans Hizmetleri A.Ş."])
def test_a_customer_name_or_tax_id_finds_the_customer_and_its_invoices(server, query):
    answer = _get(server, "/ledgerlink/api/search", params={"q": query}).json()
    assert any(m["kind"] == "customer" and m["key"] == "C000001" for m in answer["matches"])
    item = next(s for s in answer["steps"] if s["kind"] == "item")
    assert (item["key"], item["system"], item["flow"], item["status"]) == ("C000001", "onec", FLOW_CUSTOMERS,
                                                                           ACKNOWLEDGED)
    assert {s["key"] for s in answer["steps"] if s["kind"] == "line"} == {"IN00000001-0001", "IN00000001-0002"}


def test_a_cyrillic_name_as_typed_finds_its_customer(server):
    answer = _get(server, "/ledgerlink/api/search", params={"q": "Северный мост"}).json()
    assert [m["key"] for m in answer["matches"] if m["kind"] == "customer"] == ["C000002"]
    assert {s["key"] for s in answer["steps"] if s["kind"] == "held back"} == {"IN00000002-0001"}


def test_nothing_found_is_an_empty_answer(server):
    answer = _get(server, "/ledgerlink/api/search", params={"q": "IN99999999"}).json()
    assert answer["steps"] == [] and answer["matches"] == []


def test_planned_pages_through_every_open_item_once_and_filters_by_flow(server):
    seen, after, pages = [], None, 0
    while True:
        page = _get(server, "/ledgerlink/api/planned", params={"limit": 50, **({"after": after} if after else {})}).json()
        seen += page["items"]
        pages += 1
        if page["next"] is None:
            break
        after = page["next"]
    assert pages == 3 and len(seen) == 120 and len({i["id"] for i in seen}) == 120
    states = {i["key"]: i["state"] for i in seen}
    assert states["P00001"] == "planned, not sent yet"
    assert states["P00100"] == "sent, awaiting the target's confirmation"
    only = _get(server, "/ledgerlink/api/planned", params={"flow": "billing_einvoices", "limit": 200}).json()
    assert len(only["items"]) == 40 and {i["flow"] for i in only["items"]} == {"billing_einvoices"}


def test_held_back_tab_pages_newest_first(server):
    page = _get(server, "/ledgerlink/api/held-back", params={"flow": FLOW_LINES}).json()
    (row,) = page["rows"]
    assert row["reasons"] == ["vat_minor: 200 is not 20% of net 1000 at VAT 22", "description: control character"]
    assert row["values"]["net"] == "10.00" and page["next"] is None
    assert page["refused"] == []
    customers = _get(server, "/ledgerlink/api/held-back", params={"flow": FLOW_CUSTOMERS}).json()
    assert customers["rows"] == []
    assert [(r["key"], r["system"], r["reason"]) for r in customers["refused"]] == [
        ("C000009", "onec", "1C answered 400: ИНН has wrong check digits")]


def test_runs_show_counts_reconciliation_and_their_reports(server):
    runs = _get(server, "/ledgerlink/api/runs").json()["runs"]
    assert [r["flow"] for r in runs] == [FLOW_LINES, FLOW_CUSTOMERS]  # newest first
    lines = runs[0]
    assert lines["counts"]["sent"] == 2 and lines["counts"]["quarantined"] == 1
    gross = next(g for g in lines["reconciliation"] if g["amount"] == "gross")
    assert (gross["currency"], gross["vat_rate"], gross["source"], gross["target"], gross["difference"],
            gross["sent"]) == ("TRY", "20", "3000.00", "2999.99", "0.01", "1800.00")
    net = next(g for g in lines["reconciliation"] if g["amount"] == "net")
    assert (net["source"], net["target"], net["difference"]) == ("2500.00", "2500.00", "0.00")
    assert lines["differences"] == ["gross in TRY at VAT 20%: source 3000.00, target 2999.99 (difference 0.01)"]
    # a run whose summary kept only what it sent: no side is guessed
    customers = runs[1]
    assert customers["reconciliation"] == [] and customers["counts"] == {"sent": 1, "created": 1}
    assert lines["links"]["task_log"].endswith("/tasks/reconcile_and_report")
    assert lines["workbook"] == f"reports/{FLOW_LINES}/run1/reconciliation.xlsx"
    workbook = _get(server, f"/ledgerlink/files/{lines['workbook']}")
    assert workbook.status_code == 200 and workbook.content == b"PK\x03\x04 a workbook's bytes"
    assert "attachment" in workbook.headers["content-disposition"]
    gate = _get(server, f"/ledgerlink/files/{lines['gate_report']}")
    assert gate.status_code == 200 and "1 row held back" in gate.text
    assert gate.headers["content-security-policy"] == "sandbox"
    only = _get(server, "/ledgerlink/api/runs", params={"flow": FLOW_CUSTOMERS}).json()["runs"]
    assert [r["run_id"] for r in only] == [RUN_CUSTOMERS]


@pytest.mark.parametrize("path", ["reports/%2E%2E/private.xlsx", "%2E%2E/%2E%2E/etc/passwd", "/etc/passwd",
                                  "reports/escape.xlsx", "private.xlsx", "ledger.db",
                                  f"reports/{FLOW_LINES}/run1/%2E%2E/%2E%2E/%2E%2E/private.xlsx"])
def test_files_outside_the_reports_are_refused(server, path):
    answer = httpx.get(f"{server['url']}/ledgerlink/files/{path}",
                       headers={"Authorization": f"Bearer {server['token']}"}, timeout=30)
    ANSWERS.append(answer.text)
    assert answer.status_code == 404
    assert CANARY not in answer.text and "root:" not in answer.text


def test_per_day_and_the_map(server):
    days = _get(server, "/ledgerlink/api/per-day", params={"days": 7}).json()
    assert len(days) == 7 and days[-1]["day"] == datetime.now(timezone.utc).date().isoformat()
    today = days[-1]
    assert today["sent"] == 1 + 2 and today["held_back"] == 1  # C000001, the chunk's 2 lines; one row held back
    entities = {e["entity"]: e for e in _get(server, "/ledgerlink/api/map").json()}
    customers = {f["id"]: f for f in entities["customer"]["flows"]}
    assert entities["customer"]["master"] == "erp"
    assert customers[FLOW_CUSTOMERS]["last_good_run"]["run_id"] == RUN_CUSTOMERS
    assert customers[FLOW_CUSTOMERS]["schedule"] == "@hourly"


def test_bad_parameters_are_refused_plainly(server):
    assert _get(server, "/ledgerlink/api/planned", params={"limit": 100000}).status_code == 422
    assert _get(server, "/ledgerlink/api/runs", params={"before": "yesterday"}).status_code == 422
    assert _get(server, "/ledgerlink/api/search", params={"q": ""}).status_code == 422


def test_no_answer_carried_a_connection_secret(server):
    """Last in the module: every answer above, and the server's own log, are free of the canary."""
    assert len(ANSWERS) > 30
    leaked = [a[:200] for a in ANSWERS if CANARY in a]
    assert leaked == []
    assert CANARY not in Path(server["log"]).read_text(errors="replace")
