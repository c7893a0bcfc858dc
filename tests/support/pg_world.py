"""A billing, an ERP and a ledger database on one throwaway PostgreSQL cluster (per test module), per test.

Test modules import the two fixtures: ``from tests.support.pg_world import server, world  # noqa: F401``.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing
from tests.support.pg import create_database, run_postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        yield info


@pytest.fixture
def world(server, tmp_path, monkeypatch, request):
    """Engines for billing (generated, seed 9, 15 customers) and the ERP, the billing URL, a migrated ledger."""
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    name = request.node.name.replace("[", "_").replace("]", "").lower()[:40]
    billing, erp, ledger = (create_database(server, f"{name}_{kind}") for kind in ("billing", "erp", "ledger"))
    generate_billing(billing.url, seed=9, customers=15)
    return {"billing": sa.create_engine(billing.url), "erp": sa.create_engine(erp.url), "billing_url": billing.url,
            "ledger": Ledger.migrated(str(ledger.url))}
