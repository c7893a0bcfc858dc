"""Numbering: gapless and unique per series and year, on SQLite and on a real PostgreSQL with two allocators at
once; a failure inside the numbering transaction takes its numbers back; a crash between numbering and sending
loses no number (the next run sends the numbered invoices with the numbers they have)."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ledgerlink.flows.einvoices import EInvoiceFlow
from ledgerlink.ledger import EInvoiceRegister, Ledger
from ledgerlink.ledger.einvoices import NUMBERED, ToNumber, format_number
from tests.support.einvoice_world import einvoice_world
from tests.support.pg_world import server  # noqa: F401 - the throwaway PostgreSQL cluster
from tests.support.pg import create_database


def _invoice(index: int, series: str = "EFA", year: int = 2026) -> ToNumber:
    return ToNumber(f"IN{index:08d}", series, year, f"00000000-0000-4000-8000-{index:012d}", "efatura",
                    "TEMELFATURA", "SATIS", "4549617050", "TRY", Decimal("10.00"), "einvoice_rest", "einvoice_soap")


def _check_gapless(register: EInvoiceRegister) -> None:
    rows = register.invoices()
    by_series: dict = {}
    for row in rows:
        by_series.setdefault((row["series"], row["year"]), []).append(row["sequence"])
        assert row["number"] == format_number(row["series"], row["year"], row["sequence"])
    for key, sequences in by_series.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), key
        assert register.series_counters()[key] == len(sequences)
    assert len({r["number"] for r in rows}) == len({r["ettn"] for r in rows}) == len(rows)


def test_numbers_follow_the_order_given_per_series_and_year_and_never_change(tmp_path):
    register = EInvoiceRegister(Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}").engine)
    batch = [_invoice(1), _invoice(2, "ARS"), _invoice(3), _invoice(4, year=2027), _invoice(5)]
    assert register.number(batch, "run-1") == ["IN00000001", "IN00000003", "IN00000005", "IN00000002", "IN00000004"]
    numbers = {r["invoice_id"]: r["number"] for r in register.invoices()}
    assert numbers == {"IN00000001": "EFA2026000000001", "IN00000003": "EFA2026000000002",
                       "IN00000005": "EFA2026000000003", "IN00000002": "ARS2026000000001",
                       "IN00000004": "EFA2027000000001"}
    assert register.number(batch + [_invoice(6)], "run-2") == ["IN00000006"]  # numbered ones keep theirs
    assert register.invoice("IN00000006")["number"] == "EFA2026000000004"
    assert all(r["state"] == NUMBERED for r in register.invoices())
    _check_gapless(register)


def test_a_failure_inside_the_numbering_transaction_takes_its_numbers_back(tmp_path):
    register = EInvoiceRegister(Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}").engine)
    register.number([_invoice(1)], "run-1")
    clash = ToNumber(**{**_invoice(3).__dict__, "ettn": _invoice(1).ettn})  # the ETTN is unique: the insert fails
    with pytest.raises(sa.exc.IntegrityError):
        register.number([_invoice(2), clash], "run-2")
    assert register.series_counters()[("EFA", 2026)] == 1 and register.known_ids() == {"IN00000001"}
    register.number([_invoice(2), _invoice(3)], "run-3")
    _check_gapless(register)


def test_two_allocators_at_once_on_postgresql_take_each_number_once_without_gaps(server):  # noqa: F811
    url = str(create_database(server, "einvoice_numbering").url)
    Ledger.migrated(url)
    overlapping = ([_invoice(i) for i in range(0, 300)], [_invoice(i) for i in range(150, 450)])
    start, results, errors = threading.Barrier(2), [None, None], []

    def allocate(side: int) -> None:
        register = EInvoiceRegister(sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)))
        try:
            start.wait()
            # Small batches interleave the two transactions as much as the row lock allows.
            results[side] = []
            for first in range(0, 300, 25):
                results[side] += register.number(overlapping[side][first:first + 25], f"run-{side}")
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=allocate, args=(side,)) for side in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert not set(results[0]) & set(results[1]) and len(results[0]) + len(results[1]) == 450
    register = EInvoiceRegister(sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)))
    _check_gapless(register)


def test_a_crash_between_numbering_and_sending_loses_no_number(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    with einvoice_world(tmp_path) as world:
        flow = EInvoiceFlow(status_tries=2)
        state = flow.gate(flow.extract("crashed", world.billing, world.ledger), world.ledger)
        flow.number(state, world.billing, world.clients()["einvoice_rest"], world.ledger)
        numbered = {r["invoice_id"]: r["number"] for r in world.register.invoices()}
        assert len(numbered) == 37 and world.gib_rows() == []
        # The worker dies here: nothing was sent. Its lease lapses (Airflow's callback closes the run).
        world.ledger.end_run_early("crashed", "billing_einvoices", "failed", "test: killed after numbering")
        summary = flow.run_all("next", world.billing, world.clients(), world.ledger)
        assert summary.sent == 37 and summary.reconciliation == []
        assert {r["invoice_id"]: r["number"] for r in world.register.invoices()} == numbered
        at_gib = sorted(r["number"] for r in world.gib_rows())
        assert at_gib == sorted(numbered.values())
        _check_gapless(world.register)
