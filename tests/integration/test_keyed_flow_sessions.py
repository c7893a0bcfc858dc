"""KeyedFlow's session pool: records travel through N sessions at once, the ledger stays exact on SQLite and
PostgreSQL, and the result is the sequential path's: same target, same ledger, same counts; refusals, a target
that stays down and refused credentials behave as with one session; waves keep referenced records first.

The target is an in-process table shared by its sessions, each answering after a short sleep (the target's own
time), so several requests are in flight at once only if the framework really sends them concurrently. What is
tested is the framework; 1C's own pool runs against the stand-in in test_onec_session_pool.py."""
from __future__ import annotations

import copy
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
import yaml

from ledgerlink.billing.extract import read_customers
from ledgerlink.errors import AuthenticationFailed, RemoteRejected, TerminalError, TransientError
from ledgerlink.exchange_map import DEFAULT_MAP_PATH, parse_exchange_map
from ledgerlink.flows.keyed import KeyedFlow
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import ACKNOWLEDGED, PLANNED, REJECTED, SENT, Ledger
from ledgerlink.retrying import RetryBudget
from sandbox.generator import generate_billing
from tests.support.pg import create_database, run_postgres

FLOW_ID = "billing_customer_emails_to_crm"
CUSTOMERS = 24
ANSWER_SECONDS = 0.01


class SharedContacts:
    """The target's data, shared by every session; counts requests in flight."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.refuse: set[str] = set()
        self.down_after: int | None = None  # answer "down" to every request after this many
        self.wrong_password = False
        self.requests = 0
        self.finished: list[tuple[int, str]] = []  # (wave, key), in the order writes completed
        self.started: list[tuple[int, str]] = []


class ContactSession:
    """One session's adapter: a connection to ``SharedContacts`` used by one thread at a time, or it says so."""

    system = "CRM"
    name = "CRM contacts"

    def __init__(self, shared: SharedContacts, waves: bool):
        self.shared, self.waves, self.busy = shared, waves, threading.Lock()
        self.overlapping_use = False

    def target_key(self, customer_id: str) -> str:
        return f"contact-{customer_id}"

    def wave_of(self, customer_id: str) -> int:
        return int(customer_id[-1]) % 3 if self.waves else 0

    def _request(self, key: str, write):
        if not self.busy.acquire(blocking=False):
            self.overlapping_use = True  # two threads in one session at once: the pool's bug
            self.busy.acquire()
        shared = self.shared
        try:
            with shared.lock:
                shared.requests += 1
                number = shared.requests
                shared.in_flight += 1
                shared.most_in_flight = max(shared.most_in_flight, shared.in_flight)
                shared.started.append((self.wave_of(key), key))
            try:
                time.sleep(ANSWER_SECONDS)
                if shared.wrong_password:
                    raise AuthenticationFailed("CRM", 401, "crm_default", "wrong password")
                if shared.down_after is not None and number > shared.down_after:
                    raise TransientError("CRM answered HTTP 503")
                with shared.lock:
                    outcome = write()
                    shared.finished.append((self.wave_of(key), key))
                return outcome
            finally:
                with shared.lock:
                    shared.in_flight -= 1
        finally:
            self.busy.release()

    def upsert(self, customer: dict, *, believed_new: bool) -> str:
        customer_id = customer["customer_id"]
        key = self.target_key(customer_id)

        def write():
            if customer_id in self.shared.refuse:
                raise RemoteRejected("CRM", 422, "invalid", f"contact {key} refused")
            wanted = {"email": customer["email"], "active": True}
            if self.shared.rows.get(key) == wanted:
                return "unchanged"
            outcome = "updated" if key in self.shared.rows else "created"
            self.shared.rows[key] = wanted
            return outcome

        return self._request(customer_id, write)

    def mark_deleted(self, target_key: str) -> str:
        def write():
            self.shared.rows[target_key]["active"] = False
            return "deleted"

        return self._request(target_key.removeprefix("contact-"), write)

    def read_ours(self, target_keys: set[str]) -> dict[str, dict]:
        return {key: row for key, row in self.shared.rows.items() if row["active"]}

    def mismatches(self, customer: dict, held: dict) -> dict:
        return {} if held["email"] == customer["email"] else {"email": (held["email"], customer["email"])}


class WavedContactSession(ContactSession):
    def wave(self, customer_id: str, record: dict | None) -> int:
        return self.wave_of(customer_id)


class ContactsConnection:
    """A connection offering ``sessions`` sessions (a ``SessionSource``); remembers every session it opened."""

    def __init__(self, shared: SharedContacts, sessions: int):
        self.shared, self.sessions = shared, sessions
        self.opened: list[ContactsConnection] = []
        self.closed = False

    def open_session(self) -> "ContactsConnection":
        session = ContactsConnection(self.shared, 1)
        self.opened.append(session)
        return session

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        yield info


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    def new(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        test = request.node.name.replace("[", "_").replace("]", "").replace("-", "_").lower()[:40]
        return str(create_database(request.getfixturevalue("postgres"), f"{test}_{name}").url)

    return new


def make_world(tmp_path, ledger_url, name: str, *, sessions: int, waves: bool = False) -> dict:
    document = copy.deepcopy(yaml.safe_load(DEFAULT_MAP_PATH.read_text(encoding="utf-8")))
    document["entities"]["customer"]["flows"].append(
        {"id": FLOW_ID, "from": "billing", "to": "crm", "schedule": "@hourly", "mode": "api", "gate": "customer",
         "fields": ["email"], "status": "live"})
    spec = declared(FLOW_ID, entity="customer", source="billing", target="crm", carries=("email",),
                    exchange_map=parse_exchange_map(document))
    shared = SharedContacts()
    adapters: list[ContactSession] = []
    adapter_class = WavedContactSession if waves else ContactSession

    def target(_connection):
        adapters.append(adapter_class(shared, waves))
        return adapters[-1]

    billing = tmp_path / f"billing-{name}.db"
    generate_billing(billing, seed=5, customers=CUSTOMERS)
    return {"flow": KeyedFlow(spec, read=lambda engine: read_customers(engine, None), target=target),
            "shared": shared, "adapters": adapters, "db": billing,
            "connection": ContactsConnection(shared, sessions),
            "billing": sa.create_engine(f"sqlite:///{billing}"), "ledger": Ledger.migrated(ledger_url(name))}


def run(world, run_id: str, retry: RetryBudget | None = None):
    flow, ledger, connection = world["flow"], world["ledger"], world["connection"]
    state = flow.gate(flow.extract(run_id, world["billing"], ledger), ledger)
    state = flow.load(state, connection, ledger, retry=retry)
    return flow.reconcile_and_report(state, world["billing"], connection, ledger)


def items(world, run_id: str) -> dict[str, tuple]:
    return {i["source_key"]: (i["status"], i["operation"], i["attempts"])
            for i in world["ledger"].items(flow=FLOW_ID, run_id=run_id)}


def change_billing(world) -> None:
    with sqlite3.connect(world["db"]) as db:
        keys = [k for (k,) in db.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
        for key in keys[:5]:
            db.execute("UPDATE customers SET email = ? WHERE customer_id = ?", (f"new-{key}@example.com", key))
        gone = keys[-1]
        db.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT invoice_id FROM invoices "
                   "WHERE customer_id = ?)", (gone,))
        db.execute("DELETE FROM invoices WHERE customer_id = ?", (gone,))
        db.execute("DELETE FROM customers WHERE customer_id = ?", (gone,))


def test_records_travel_through_every_session_at_once_and_each_session_serves_one_thread(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "pool", sessions=4)
    summary = run(world, "run-1")
    shared = world["shared"]
    assert summary.created == CUSTOMERS and summary.reconciliation == []
    assert shared.most_in_flight > 1, "nothing was sent concurrently"
    assert shared.most_in_flight <= 4, "more requests at once than the connection's sessions"
    # one adapter per session for the load, one for reconciliation; sessions beyond the first are closed
    assert len(world["connection"].opened) == 3 and all(s.closed for s in world["connection"].opened)
    assert not any(adapter.overlapping_use for adapter in world["adapters"])
    assert set(items(world, "run-1").values()) == {(ACKNOWLEDGED, "create", 1)}


def test_the_pool_ends_exactly_where_one_session_ends(tmp_path, ledger_url):
    """Same target, same ledger items and snapshot, same counts, on a first load and on changes + a deletion."""
    results = {}
    for sessions in (1, 4):
        world = make_world(tmp_path, ledger_url, f"s{sessions}", sessions=sessions)
        first = run(world, "run-1")
        change_billing(world)
        second = run(world, "run-2")
        rerun = run(world, "run-3")
        results[sessions] = {
            "target": world["shared"].rows,
            "summaries": [(s.created, s.updated, s.deleted, s.unchanged, s.rejected, s.reconciliation)
                          for s in (first, second, rerun)],
            "items": [items(world, run_id) for run_id in ("run-1", "run-2", "run-3")],
            "snapshot": world["ledger"].snapshot(FLOW_ID),
            "most_in_flight": world["shared"].most_in_flight}
    one, four = results[1], results[4]
    assert one["most_in_flight"] == 1 and four["most_in_flight"] > 1
    assert four["target"] == one["target"] and four["snapshot"] == one["snapshot"]
    assert four["summaries"] == one["summaries"] and four["items"] == one["items"]
    assert one["summaries"][1][:3] == (0, 5, 1) and one["summaries"][2][:4] == (0, 0, 0, CUSTOMERS - 1)


def test_a_refusal_rejects_only_that_record_while_the_others_travel(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "refused", sessions=4)
    refused = sorted(read_customers(world["billing"], None)["customer_id"])[7]
    world["shared"].refuse = {refused}
    with pytest.raises(TerminalError, match=f"CRM contacts refused 1 customer record.*{refused}"):
        run(world, "run-1")
    statuses = {key: status for key, (status, _, _) in items(world, "run-1").items()}
    assert statuses.pop(refused) == REJECTED and set(statuses.values()) == {ACKNOWLEDGED}
    world["shared"].refuse = set()
    assert run(world, "run-2").created == 1


def test_a_target_that_stays_down_stops_the_pool_and_the_next_attempt_finishes(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "down", sessions=4)
    world["shared"].down_after = 10
    flow, ledger = world["flow"], world["ledger"]
    state = flow.gate(flow.extract("run-1", world["billing"], ledger), ledger)
    with pytest.raises(TransientError, match="still failing after 2 attempt"):
        flow.load(state, world["connection"], ledger, retry=RetryBudget(per_item=1, first_wait=0.001))
    before = items(world, "run-1")
    done = {key for key, (status, _, _) in before.items() if status == ACKNOWLEDGED}
    assert {status for status, _, _ in before.values()} <= {ACKNOWLEDGED, SENT, PLANNED}, "nothing refused"
    assert len(done) == len(world["shared"].rows) == 10, "every answered write is acknowledged, no other"
    # Every attempt the ledger counts reached the target: one marked ahead of its send that never left, because
    # the pool stopped first, is planned again.
    requested = [key for _, key in world["shared"].started]
    assert {key: attempts for key, (_, _, attempts) in before.items() if attempts} == \
        {key: requested.count(key) for key in requested}
    assert all(attempts == 0 for status, _, attempts in before.values() if status == PLANNED)
    assert world["shared"].requests < CUSTOMERS, "the pool stopped handing out records"

    world["shared"].down_after = None  # Airflow's retry of the task
    state = flow.load(state, world["connection"], ledger)
    assert state.outcomes.created == CUSTOMERS and state.outcomes.already_in_target == 0
    assert flow.reconcile_and_report(state, world["billing"], world["connection"], ledger).reconciliation == []
    assert {status for status, _, _ in items(world, "run-1").values()} == {ACKNOWLEDGED}


def test_refused_credentials_stop_the_pool_as_one_error_refusing_nothing(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "auth", sessions=4)
    world["shared"].wrong_password = True
    flow, ledger = world["flow"], world["ledger"]
    state = flow.gate(flow.extract("run-1", world["billing"], ledger), ledger)
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        flow.load(state, world["connection"], ledger)
    assert {status for status, _, _ in items(world, "run-1").values()} <= {PLANNED, SENT}
    assert world["shared"].rows == {} and world["shared"].requests <= 4 + 4, "stopped after the first answers"


def test_waves_send_what_later_records_reference_first_and_delete_it_last(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "waves", sessions=4, waves=True)
    assert run(world, "run-1").created == CUSTOMERS
    shared = world["shared"]
    started, finished = [wave for wave, _ in shared.started], [wave for wave, _ in shared.finished]
    assert started == sorted(started) and finished == sorted(finished), "a wave began before the last one ended"
    assert set(started) == {0, 1, 2} and shared.most_in_flight > 1
    # Deletions: the highest wave first (what references goes before what it references).
    keys = sorted(read_customers(world["billing"], None)["customer_id"])
    gone = {next(k for k in keys if int(k[-1]) % 3 == wave) for wave in (0, 1, 2)}
    with sqlite3.connect(world["db"]) as db:
        for key in gone:
            db.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT invoice_id FROM invoices "
                       "WHERE customer_id = ?)", (key,))
            db.execute("DELETE FROM invoices WHERE customer_id = ?", (key,))
            db.execute("DELETE FROM customers WHERE customer_id = ?", (key,))
    shared.started.clear()
    assert run(world, "run-2").deleted == 3
    assert [wave for wave, _ in shared.started] == [2, 1, 0]


def test_a_ledger_failing_mid_load_stops_the_pool_and_nothing_unanswered_counts_as_sent(tmp_path, ledger_url):
    world = make_world(tmp_path, ledger_url, "ledgerdies", sessions=4)
    flow, ledger = world["flow"], world["ledger"]
    state = flow.gate(flow.extract("run-1", world["billing"], ledger), ledger)
    real_mark_sent, blocks = ledger.mark_sent, []

    def dies_on_the_third_block(ids, *args, **kwargs):
        blocks.append(list(ids))
        if len(blocks) == 3:
            raise OSError("disk full")
        return real_mark_sent(ids, *args, **kwargs)

    ledger.mark_sent = dies_on_the_third_block
    with pytest.raises(OSError, match="disk full"):
        flow.load(state, world["connection"], ledger)
    ledger.mark_sent = real_mark_sent
    requested = [key for _, key in world["shared"].started]
    assert len(requested) == len(set(requested)) <= len(blocks[0]) + len(blocks[1]) < CUSTOMERS
    before = items(world, "run-1")
    # Every answered write that the ledger took is acknowledged; what never left is not counted as sent.
    assert {key for key, (status, _, _) in before.items() if status == ACKNOWLEDGED} <= set(requested)
    assert all(attempts == 0 for status, _, attempts in before.values() if status == PLANNED)
    state = flow.load(state, world["connection"], ledger)  # the next attempt finishes the job
    assert (state.outcomes.created, state.outcomes.already_in_target) == (CUSTOMERS, 0)  # lost answers: ours
    assert flow.reconcile_and_report(state, world["billing"], world["connection"], ledger).reconciliation == []
