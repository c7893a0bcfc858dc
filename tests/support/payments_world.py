"""A world for the 1C → billing payments flow: billing (SQLite or PostgreSQL), the 1C stand-in over HTTP with a
day's bank statement imported as posted receipts (``sandbox.onec.bank``), a ledger, and the clients.

The payers' counterparties are created in 1C under the Ref_Keys billing_customers_to_onec derives
(``onec.counterparties.ref_key``), with the tax id where 1C keeps it, as that flow leaves them.
"""
from __future__ import annotations

import contextlib
import json
import urllib.request
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from ledgerlink.flows import payments_from_onec as flow
from ledgerlink.ledger import Ledger
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient
from sandbox.onec.bank import demo_statement, receipt_ref
from sandbox.onec.server import make_server
from tests.support.onec_standin import Api
from tests.support.sandbox_http import serving

USER, PASSWORD = "ledgerlink", "secret"
NODE = "PAYMENTS"


class PaymentsWorld:
    def __init__(self, folder: Path, billing_url: str, ledger_url: str | None = None, statement: list | None = None):
        self.folder = folder
        self.billing = sa.create_engine(billing_url)
        self.ledger = Ledger.migrated(ledger_url or f"sqlite:///{folder / 'ledger.db'}")
        self.statement = statement
        self._stack = contextlib.ExitStack()

    def start(self, *, exchange_node: str | None = NODE) -> "PaymentsWorld":
        if self.statement is None:
            self.statement = demo_statement_from(self.billing)
        path = self.folder / "statement.json"
        path.write_text(json.dumps(self.statement, ensure_ascii=False), encoding="utf-8")
        server = make_server("127.0.0.1", 0, db_path=self.folder / "onec.sqlite", users={USER: PASSWORD},
                             base="/demo", exchange_poll_seconds=None, bank_statement=path,
                             node_codes=("BILLING", NODE))
        self.server = self._stack.enter_context(serving(server))
        self.api = Api(self.server)
        self.api.session.auth = (USER, PASSWORD)
        self._create_payers()
        assert self.server.bank.import_pending()["imported"] == len(self.statement)
        self.client = ODataClient(self.server.url + "/demo", USER, PASSWORD, timeout=10)
        self.client.exchange_node = exchange_node
        return self

    def close(self) -> None:
        self.client.close()
        self.api.session.close()
        self._stack.close()
        self.billing.dispose()
        self.ledger.engine.dispose()

    def _create_payers(self) -> None:
        inns = {line["payer_inn"] for line in self.statement if not line.get("new_payer")}
        with self.billing.connect() as conn:
            rows = conn.execute(sa.text("SELECT customer_id, legal_name, country, tax_id FROM customers")).all()
        for customer_id, name, country, tax_id in rows:
            if tax_id in inns:
                russian = country == "RU"
                self.api.create(counterparties.ENTITY_SET, Ref_Key=counterparties.ref_key(customer_id),
                                Code=customer_id, Description=name[:100], ИНН=tax_id if russian else "",
                                НалоговыйНомер="" if russian else tax_id)

    # the flow -------------------------------------------------------------------------------------------------
    def run(self, run_id: str):
        return flow.run_all(run_id, self.client, self.billing, self.ledger)

    # what each side holds -------------------------------------------------------------------------------------
    def payments(self) -> dict[str, dict]:
        """Billing's payments applied from 1C, by payment_id."""
        with self.billing.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM payments WHERE payment_id LIKE '1C-%'")).mappings().all()
        return {r["payment_id"]: dict(r) for r in rows}

    def invoice(self, invoice_id: str) -> dict:
        with self.billing.connect() as conn:
            return dict(conn.execute(sa.text("SELECT * FROM invoices WHERE invoice_id = :i"),
                                     {"i": invoice_id}).mappings().one())

    def held(self) -> dict[str, dict]:
        """What the flow held back (every run), by payment_id: the latest row with its reasons."""
        return {q["source_key"]: {**q, "row": json.loads(q["row"])} for q in self.ledger.quarantined(flow=flow.FLOW)}

    def pending_in_1c(self) -> list[dict]:
        """The receipts still registered for the flow's node (not acknowledged)."""
        with urllib.request.urlopen(f"{self.server.url}/_sandbox/onec/changes?node={NODE}", timeout=10) as answer:
            return [c for c in json.loads(answer.read())["value"]
                    if c["entity_set"] == "Document_ПоступлениеНаРасчетныйСчет"]

    def edit_in_1c(self, line_id: str, **changes) -> None:
        """An accountant's edit of a receipt in 1C (new DataVersion, registered for the nodes)."""
        body = json.dumps({"set": "Document_ПоступлениеНаРасчетныйСчет", "ref_key": receipt_ref(line_id),
                           "changes": changes}).encode("utf-8")
        request = urllib.request.Request(f"{self.server.url}/_sandbox/onec/edit", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def line(self, kind: str) -> dict:
        return next(line for line in self.statement if line["id"].endswith(kind))

    def lines(self, kind: str) -> list[dict]:
        return [line for line in self.statement if line["id"].endswith(kind)]


def payment_key(line: dict) -> str:
    return "1C-" + receipt_ref(line["id"])


def minor(amount: str) -> int:
    return int(Decimal(amount) * 100)


def demo_statement_from(engine: sa.Engine) -> list[dict]:
    """The sandbox's demo statement over this billing (SQLite file, or PostgreSQL copied to one)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return demo_statement(Path(url.database))
    raise ValueError("give a statement for a PostgreSQL billing")
