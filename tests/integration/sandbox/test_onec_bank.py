"""The 1C stand-in's bank statement import: lines become posted receipts once their payer is there, once each,
and are registered for the exchange nodes like any other change."""
from __future__ import annotations

import json
from decimal import Decimal

import requests

from sandbox.onec.bank import receipt_ref
from sandbox.onec.server import make_server
from tests.support.onec_standin import USERS, Api
from tests.support.sandbox_http import serving

RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"


def _line(line_id, inn, new_payer=False, amount="1220.50"):
    return {"id": line_id, "number": "17", "date": "2026-11-14", "payer_inn": inn, "payer_name": "ООО Ромашка",
            "amount": amount, "currency": "643", "purpose": "Оплата по счету БЛ-000001", "new_payer": new_payer}


def test_lines_wait_for_their_payer_and_are_imported_once_posted(tmp_path):
    statement = tmp_path / "statement.json"
    statement.write_text(json.dumps([_line("L1", "7701234567"), _line("L2", "7707083893", new_payer=True)]),
                         encoding="utf-8")
    server = make_server("127.0.0.1", 0, db_path=tmp_path / "onec.sqlite", users=USERS, base="/demo",
                         exchange_poll_seconds=None, bank_statement=statement, node_codes=("BILLING", "PAYMENTS"))
    with serving(server):
        api = Api(server)
        admin = server.url + "/_sandbox/onec/bank/import"
        assert requests.post(admin, timeout=5).json() == {"imported": 1, "waiting": 1, "refused": 0}
        api.create("Catalog_Контрагенты", Description="ООО Ромашка", ИНН="7701234567")
        assert requests.post(admin, timeout=5).json() == {"imported": 1, "waiting": 0, "refused": 0}
        assert requests.post(admin, timeout=5).json() == {"imported": 0, "waiting": 0, "refused": 0}
        receipt = api.get(RECEIPTS, receipt_ref("L1"))
        assert receipt["Posted"] is True and Decimal(str(receipt["СуммаДокумента"])) == Decimal("1220.50")
        assert receipt["НазначениеПлатежа"] == "Оплата по счету БЛ-000001"
        assert receipt["РасшифровкаПлатежа"][0]["ДоговорКонтрагента_Key"] != "00000000-0000-0000-0000-000000000000"
        unknown = api.get(RECEIPTS, receipt_ref("L2"))
        payer = api.get("Catalog_Контрагенты", unknown["Контрагент_Key"])
        assert payer["ИНН"] == "7707083893"  # created from the statement, as 1C does for a payer it does not know
        for node in ("BILLING", "PAYMENTS"):
            changes = requests.get(server.url + "/_sandbox/onec/changes", params={"node": node}, timeout=5).json()
            assert {c["ref_key"] for c in changes["value"] if c["entity_set"] == RECEIPTS} == {
                receipt_ref("L1"), receipt_ref("L2")}
