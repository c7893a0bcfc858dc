"""Failover against the real stand-ins: the primary down, slow, silent, and "accepted but response lost". The
stand-in GİB's own record is the judge: every invoice registered exactly once, by the integrator the ledger
says carried it, and GİB never asked twice for one UUID (no 1163 in its log)."""
from __future__ import annotations

from collections import Counter

import pytest

from ledgerlink.einvoice.dispatch import Breaker
from ledgerlink.errors import ReconciliationError
from ledgerlink.flows.einvoices import EInvoiceFlow
from ledgerlink.ledger.einvoices import ACCEPTED, IN_DOUBT
from sandbox.httpbase import set_faults
from tests.support.einvoice_world import REST, SOAP, einvoice_world


def _flow(**changes) -> EInvoiceFlow:
    values = {"status_tries": 2, "settle_seconds": 2.5, "breaker": lambda: Breaker(threshold=3, cooldown=60)}
    values.update(changes)
    return EInvoiceFlow(**values)


def _judge(world) -> dict[str, str]:
    """GİB's record against the ledger's: each invoice once, by its carrier; returns ETTN -> GİB integrator."""
    at_gib = world.gib_rows()
    assert len({r["uuid"] for r in at_gib}) == len(at_gib)
    assert [r for r in world.gib.rejections() if r["code"] == 1163] == [], "GİB saw a UUID twice"
    invoices = world.register.invoices()
    by_ettn = {r["uuid"]: {"rest": REST, "soap": SOAP}[r["integrator"]] for r in at_gib}
    assert {i["ettn"]: i["carrier"] for i in invoices if i["state"] == ACCEPTED} == by_ettn
    numbers = Counter(i["number"] for i in invoices)
    assert max(numbers.values()) == 1
    return by_ettn


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    with einvoice_world(tmp_path, timeout=1.0) as world:
        yield world


def test_every_invoice_reaches_gib_once_when_nothing_fails(world):
    summary = _flow().run_all("run-1", world.billing, world.clients(), world.ledger)
    carried = _judge(world)
    assert summary.sent == summary.created == len(carried) == 37 and summary.rejected == 0
    assert Counter(i["carrier"] for i in world.register.invoices()) == {REST: 29, SOAP: 8}  # EFA / ARS primaries
    # Round trip: what GİB holds, through REST or through SOAP's base64 ZIP, is byte for byte what we archived,
    # and passes the structural checks there.
    import sqlite3
    from ledgerlink.einvoice.document import structural_problems
    from ledgerlink.flows.einvoices import archive_path
    with sqlite3.connect(world.gib.db_path) as db:
        held = dict(db.execute("SELECT uuid, document FROM invoices"))
    for invoice in world.register.invoices():
        assert held[invoice["ettn"]] == archive_path(invoice).read_bytes()
        assert structural_problems(held[invoice["ettn"]]) == []
    again = _flow().run_all("run-2", world.billing, world.clients(), world.ledger)
    assert again.sent == 0 and len(world.gib_rows()) == 37  # a rerun sends nothing


def test_answers_lost_after_the_primary_registered_are_found_there_not_sent_again(world):
    set_faults(world.servers[REST].url, [{"mode": "drop_after_apply", "count": 5, "methods": ["POST"]}])
    _flow().run_all("run-1", world.billing, world.clients(), world.ledger)
    carried = _judge(world)
    assert Counter(carried.values()) == {REST: 29, SOAP: 8}
    lost = [i for i in world.register.invoices() if any(a["outcome"] == "no_answer"
                                                        for a in world.register.attempts(i["invoice_id"]))]
    assert len(lost) == 5
    for invoice in lost:  # asked, found, never sent anywhere else
        attempts = [(a["integrator"], a["action"], a["outcome"])
                    for a in world.register.attempts(invoice["invoice_id"])]
        assert attempts == [(REST, "send", "no_answer"), (REST, "status", "accepted")]


def test_a_primary_that_is_down_is_confirmed_empty_then_skipped_and_the_fallback_carries(world):
    clients = world.clients()
    _flow().number(_flow().gate(_flow().extract("warm", world.billing, world.ledger), world.ledger),
                   world.billing, clients[REST], world.ledger)  # GİB's user list cached while REST is up
    world.ledger.end_run_early("warm", "billing_einvoices", "failed", "test: warming the user list")
    world.servers[REST].shutdown()
    world.servers[REST].server_close()
    summary = _flow().run_all("run-1", world.billing, world.clients(), world.ledger)  # no kept-alive connection
    carried = _judge(world)
    assert Counter(carried.values()) == {SOAP: 37} and summary.sent == 37
    attempts = [a for a in world.register.attempts() if a["integrator"] == REST]
    assert {a["outcome"] for a in attempts} == {"not_sent"} and len(attempts) == 3  # then the breaker skips it


def test_a_primary_answering_503_is_asked_and_what_it_never_received_fails_over(world):
    set_faults(world.servers[REST].url, [{"mode": "error", "status": 503, "count": 4, "methods": ["POST"]}])
    _flow(breaker=lambda: Breaker(threshold=10)).run_all("run-1", world.billing, world.clients(), world.ledger)
    carried = _judge(world)
    assert Counter(carried.values()) == {REST: 25, SOAP: 12}
    failed_over = [i for i in world.register.invoices() if i["carrier"] != i["primary_integrator"]]
    assert len(failed_over) == 4 and all(i["not_received_by"] == REST for i in failed_over)
    steps = [(a["integrator"], a["action"], a["outcome"])
             for a in world.register.attempts(failed_over[0]["invoice_id"])]
    assert steps == [(REST, "send", "no_answer"), (REST, "status", "not_received"), (SOAP, "send", "queued"),
                     (SOAP, "status", "accepted")]


def test_a_slow_primary_that_registers_late_keeps_the_invoice_and_gib_sees_it_once(world):
    # Each send answers after 1.8 s, the client gives up after 1 s: the invoice is registered behind our back.
    set_faults(world.servers[REST].url, [{"mode": "latency", "seconds": 1.8, "count": 3, "methods": ["POST"]}])
    _flow(breaker=lambda: Breaker(threshold=10)).run_all("run-1", world.billing, world.clients(), world.ledger)
    carried = _judge(world)
    assert Counter(carried.values()) == {REST: 29, SOAP: 8}  # found at the primary once it settled: no failover


def test_a_primary_that_swallows_sends_is_given_time_then_confirmed_empty(world):
    # "timeout": the stand-in waits, then hangs up without registering anything.
    set_faults(world.servers[REST].url, [{"mode": "timeout", "seconds": 1.2, "count": 2, "methods": ["POST"]}])
    _flow(breaker=lambda: Breaker(threshold=10)).run_all("run-1", world.billing, world.clients(), world.ledger)
    carried = _judge(world)
    assert Counter(carried.values()) == {REST: 27, SOAP: 10}


def test_while_the_primary_cannot_say_the_invoice_waits_in_doubt_and_goes_nowhere_else(world):
    set_faults(world.servers[REST].url, [{"mode": "drop_after_apply", "count": 1, "methods": ["POST"]},
                                         {"mode": "error", "status": 500, "methods": ["GET"], "path": "/v1/invoices/"}])
    with pytest.raises(ReconciliationError, match="in doubt"):
        _flow(breaker=lambda: Breaker(threshold=100)).run_all("run-1", world.billing, world.clients(), world.ledger)
    doubtful = [i for i in world.register.invoices() if i["state"] == IN_DOUBT]
    assert len(doubtful) == 1 and doubtful[0]["in_doubt_at"] == REST
    assert not any(a["integrator"] == SOAP for a in world.register.attempts(doubtful[0]["invoice_id"]))
    set_faults(world.servers[REST].url, [])
    _flow().run_all("run-2", world.billing, world.clients(), world.ledger)  # asks first, finds it at the primary
    assert world.register.invoice(doubtful[0]["invoice_id"])["carrier"] == REST
    _flow().poll_statuses(world.clients(), world.ledger)  # the status DAG: what run 1 left queued
    assert Counter(_judge(world).values()) == {REST: 29, SOAP: 8}
