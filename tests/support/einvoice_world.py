"""A world for e-invoice tests: billing (generated), the stand-in GİB with its user list, both integrators
served on loopback, their clients, and a migrated SQLite ledger."""
from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ledgerlink.einvoice.clients import RestIntegrator, SoapIntegrator
from ledgerlink.ledger import EInvoiceRegister, Ledger
from sandbox.einvoice import rest_integrator, soap_integrator
from sandbox.einvoice.gib import Gib
from sandbox.generator import generate_billing
from sandbox.httpbase import SandboxServer
from tests.support.sandbox_http import serving

REST, SOAP = "einvoice_rest", "einvoice_soap"
API_KEY, SOAP_USER, SOAP_PASSWORD = "test-rest-key", "ledgerlink", "test-soap-password"


@dataclass
class EInvoiceWorld:
    directory: Path
    billing: sa.Engine
    gib: Gib
    servers: dict[str, SandboxServer]
    ledger: Ledger
    timeout: float

    @property
    def register(self) -> EInvoiceRegister:
        return EInvoiceRegister(self.ledger.engine)

    def clients(self) -> dict:
        return {REST: RestIntegrator(REST, self.servers[REST].url, API_KEY, timeout=self.timeout),
                SOAP: SoapIntegrator(SOAP, self.servers[SOAP].url, SOAP_USER, SOAP_PASSWORD, timeout=self.timeout)}

    def gib_rows(self) -> list[dict]:
        """GİB's own record: every registered invoice (the judge of "exactly once")."""
        with contextlib.closing(sqlite3.connect(self.gib.db_path)) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT uuid, number, integrator, status FROM invoices")]


def register_turkish_companies(billing_db: Path, gib: Gib) -> None:
    """GİB's e-Fatura users: the Turkish companies (people get e-Arşiv), as the sandbox registers them."""
    with contextlib.closing(sqlite3.connect(billing_db)) as db:
        for tax_id, name in db.execute("SELECT tax_id, legal_name FROM customers WHERE country = 'TR'"
                                       " AND entity_kind = 'company'"):
            gib.register_user(tax_id, name)


@contextlib.contextmanager
def einvoice_world(directory: Path, *, customers: int = 40, queued_polls: int = 0,
                   timeout: float = 2.0):
    billing_db = directory / "billing.db"
    if not billing_db.exists():
        generate_billing(billing_db, seed=9, customers=customers)
    gib = Gib(directory / "gib.db", queued_polls=queued_polls)
    register_turkish_companies(billing_db, gib)
    ledger = Ledger.migrated(f"sqlite:///{directory / 'ledger.db'}")
    with serving(rest_integrator.make_server("127.0.0.1", 0, gib, {API_KEY: "ledgerlink"}, name="rest")) as rest, \
            serving(soap_integrator.make_server("127.0.0.1", 0, gib, {SOAP_USER: SOAP_PASSWORD}, name="soap")) as soap:
        yield EInvoiceWorld(directory, sa.create_engine(f"sqlite:///{billing_db}"), gib, {REST: rest, SOAP: soap},
                            ledger, timeout)
