"""A small world for the billing → 1C flow tests: a billing database, the 1C stand-in over HTTP, a ledger.

Everything lives in one folder; the 1C stand-in listens on a free port with its own infobase file.
"""
from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from ledgerlink.billing.extract import read_customers
from ledgerlink.flows import customers_to_onec as flow
from ledgerlink.ledger import Ledger
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient
from sandbox.httpbase import set_faults
from sandbox.onec.server import make_server
from tests.support.sandbox_http import serving

USER, PASSWORD = "ledgerlink", "secret"


class OneCWorld:
    """Billing (SQLite file), the 1C stand-in (started by ``start``), the ledger, and an ODataClient."""

    def __init__(self, folder: Path, billing_db: Path, *, honour_if_match: bool = True, sessions: int = 1,
                 latency_seconds: float = 0.0):
        self.folder = folder
        self.honour_if_match = honour_if_match
        self.sessions, self.latency_seconds = sessions, latency_seconds  # the client's pool; 1C's time per request
        self.billing_path = billing_db
        self.billing = sa.create_engine(f"sqlite:///{billing_db}")
        self.ledger = Ledger.migrated(f"sqlite:///{folder / 'ledger.db'}")
        self._stack = contextlib.ExitStack()
        self.server = None
        self.client: ODataClient | None = None

    def start(self) -> "OneCWorld":
        server = make_server("127.0.0.1", 0, db_path=self.folder / "onec.sqlite", users={USER: PASSWORD},
                             base="/demo", exchange_poll_seconds=None, honour_if_match=self.honour_if_match,
                             latency_seconds=self.latency_seconds)
        self.server = self._stack.enter_context(serving(server))
        self.client = ODataClient(self.server.url + "/demo", USER, PASSWORD, timeout=10, sessions=self.sessions)
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self._stack.close()
        self.billing.dispose()
        self.ledger.engine.dispose()

    # the flow -------------------------------------------------------------------------------------
    def run(self, run_id: str):
        return flow.run_all(run_id, self.billing, self.client, self.ledger)

    # billing --------------------------------------------------------------------------------------
    def customers(self) -> dict[str, dict]:
        """Every billing customer as the flow reads it, by customer_id."""
        return {row["customer_id"]: row for row in read_customers(self.billing, None).to_dict("records")}

    def sql(self, statement: str, **params) -> None:
        with self.billing.begin() as conn:
            conn.execute(sa.text(statement), params)

    # 1C, through the stand-in's admin endpoints (no auth, never hit by fault rules) -------------------
    def raw_dump(self, entity_set: str = counterparties.ENTITY_SET) -> list[dict]:
        """Every object of the set as 1C holds it."""
        query = urllib.parse.urlencode({"set": entity_set})
        with urllib.request.urlopen(f"{self.server.url}/_sandbox/onec/dump?{query}", timeout=10) as response:
            return json.loads(response.read())["value"]

    def dump(self) -> list[dict]:
        """Every counterparty in the connector's compared view (country and legal address by natural key)."""
        return [counterparties.comparable(self.client, obj) for obj in self.raw_dump()]

    def by_ref(self) -> dict[str, dict]:
        return {row["Ref_Key"]: row for row in self.dump()}

    def edit(self, ref_key: str, changes: dict) -> dict:
        body = json.dumps({"set": counterparties.ENTITY_SET, "ref_key": ref_key, "changes": changes},
                          ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(f"{self.server.url}/_sandbox/onec/edit", data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def sessions_seen(self, reset: bool = False) -> dict[str, int]:
        """OData requests 1C answered, and the most it answered at once."""
        with urllib.request.urlopen(f"{self.server.url}/_sandbox/onec/sessions?reset={int(reset)}",
                                    timeout=10) as response:
            return json.loads(response.read())

    def faults(self, rules: list[dict]) -> None:
        set_faults(self.server.url, rules)

    # ledger ---------------------------------------------------------------------------------------
    def watermark(self) -> str | None:
        return self.ledger.watermark(flow.FLOW, flow.WATERMARK)

    def snapshot(self) -> dict:
        return self.ledger.snapshot(flow.FLOW)


def content_differences(world: OneCWorld) -> list[str]:
    """Every way 1C differs from billing: content of active customers, deletion marks, extra objects."""
    customers = world.customers()
    in_onec = world.by_ref()
    problems = []
    for key, row in customers.items():
        actual = in_onec.get(counterparties.ref_key(key))
        if actual is None:
            problems.append(f"{key}: missing in 1C")
            continue
        mismatched = counterparties.content_mismatches(counterparties.to_counterparty(row), actual)
        if mismatched:
            problems.append(f"{key}: differs in {sorted(mismatched)}")
    expected_refs = {counterparties.ref_key(k) for k in customers}
    for ref, row in in_onec.items():
        if ref not in expected_refs and row["DeletionMark"] is not True:
            problems.append(f"{row['Code']}: in 1C, not in billing, and not marked for deletion")
    return problems
