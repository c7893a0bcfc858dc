"""The billing customers → 1C counterparties flow against the 1C stand-in over real HTTP (no mocks).

Each test gets a fresh billing copy, a fresh 1C infobase on a free port, its own ledger and LEDGERLINK_HOME,
and runs twice: against a base that honours ``If-Match`` (the guide) and one that ignores it (some real bases).
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from ledgerlink import settings
from ledgerlink.errors import (
    AuthenticationFailed, GateFailed, MissingReference, ReconciliationError, TerminalError, TransientError,
    ValueDoesNotFit,
)
from ledgerlink.flows import customers_to_onec as flow
from ledgerlink.ledger import ACKNOWLEDGED, PLANNED, REJECTED, SENT
from ledgerlink.onec import counterparties
from ledgerlink.onec.counterparties import LEGAL_ADDRESS, content_mismatches, ref_key, to_counterparty
from ledgerlink.retrying import RetryBudget
from ledgerlink.taxids import is_valid_tax_id
from ledgerlink.tracking import WATERMARK_OVERLAP
from sandbox.generator import generate_billing
from sandbox.onec import schema
from tests.support.onec_flow import PASSWORD, USER, OneCWorld, content_differences

CUSTOMERS = 20


@pytest.fixture(scope="module")
def seed_billing(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("billing-seed") / "billing.db"
    generate_billing(path, seed=11, customers=CUSTOMERS)
    return path


@pytest.fixture(params=[True, False], ids=["if-match-honoured", "if-match-ignored"])
def world(request, tmp_path, monkeypatch, seed_billing):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEDGERLINK_LEDGER_URL", raising=False)
    shutil.copy(seed_billing, tmp_path / "billing.db")
    w = OneCWorld(tmp_path, tmp_path / "billing.db", honour_if_match=request.param).start()
    yield w
    w.close()


def items_of(world: OneCWorld, run_id: str) -> list[dict]:
    return world.ledger.items(flow=flow.FLOW, run_id=run_id)


def later(stamp: str, **delta) -> str:
    return (datetime.fromisoformat(stamp) + timedelta(**delta)).isoformat()


def staged(world: OneCWorld, run_id: str) -> dict:
    """extract and gate: the meta the load task receives."""
    return flow.gate(flow.extract(run_id, world.billing, world.ledger), world.ledger)


def load_until_done(world: OneCWorld, meta: dict, attempts: int) -> tuple[dict, list[TransientError]]:
    """Airflow's retries of the load task, with the same meta each time."""
    errors = []
    for _ in range(attempts):
        try:
            return flow.load(meta, world.client, world.ledger), errors
        except TransientError as e:
            errors.append(e)
    raise AssertionError(f"load did not converge in {attempts} attempts: {errors}")


# 1. first run and an idle rerun ------------------------------------------------------------------------
def test_first_run_creates_each_customer_once_and_a_rerun_sends_nothing(world):
    customers = world.customers()
    assert len(customers) == CUSTOMERS

    first = world.run("run-1")

    assert (first.sent, first.created, first.updated, first.deleted) == (CUSTOMERS, CUSTOMERS, 0, 0)
    assert first.reconciliation == [] and first.quarantined == first.rejected == 0
    objects = world.dump()
    assert sorted(o["Code"] for o in objects) == sorted(customers)  # each customer once, by Code
    by_ref = {o["Ref_Key"]: o for o in objects}
    assert set(by_ref) == {ref_key(k) for k in customers}  # and by the derived Ref_Key
    for key, row in customers.items():
        obj = by_ref[ref_key(key)]
        assert obj["Code"] == key
        expected = to_counterparty(row)
        assert {field: obj[field] for field in expected} == expected
        assert content_mismatches(expected, obj) == {}
    assert set(world.snapshot()) == set(customers)
    assert {i["status"] for i in items_of(world, "run-1")} == {ACKNOWLEDGED}
    versions = {o["Ref_Key"]: o["DataVersion"] for o in objects}

    second = world.run("run-2")

    assert second.sent == second.created == second.updated == second.deleted == 0
    assert second.unchanged == CUSTOMERS and second.reconciliation == []
    assert [i for i in items_of(world, "run-2") if i["status"] == ACKNOWLEDGED] == []
    assert {o["Ref_Key"]: o["DataVersion"] for o in world.dump()} == versions  # nothing written in 1C
    assert [r["status"] for r in world.ledger.runs(flow=flow.FLOW)] == ["succeeded", "succeeded"]


# 2. deletions -----------------------------------------------------------------------------------------
def test_a_customer_deleted_in_billing_is_marked_for_deletion_in_1c(world):
    world.run("run-1")
    victim = sorted(world.customers())[3]
    world.sql("DELETE FROM customers WHERE customer_id = :key", key=victim)

    summary = world.run("run-2")

    assert summary.deleted == 1 and summary.sent == 0 and summary.reconciliation == []
    in_onec = world.by_ref()
    assert len(in_onec) == CUSTOMERS  # marked, not removed: removal stays a person's call in 1C
    assert in_onec[ref_key(victim)]["DeletionMark"] is True
    assert [o["Code"] for o in in_onec.values() if o["DeletionMark"]] == [victim]
    assert victim not in world.snapshot() and len(world.snapshot()) == CUSTOMERS - 1
    assert [(i["source_key"], i["operation"], i["status"]) for i in items_of(world, "run-2")] == [
        (victim, "delete", ACKNOWLEDGED)]
    assert content_differences(world) == []

    third = world.run("run-3")  # the deletion is not repeated
    assert third.deleted == 0 and items_of(world, "run-3") == []


# 3. change tracking: the watermark and its overlap -------------------------------------------------------
def test_changes_after_the_watermark_and_late_commits_within_the_overlap_are_sent(world):
    world.run("run-1")
    customers = world.customers()
    watermark = world.watermark()
    assert watermark == max(row["updated_at"] for row in customers.values())
    first, second = sorted(customers)[1], sorted(customers)[5]

    # An e-mail change alone has nothing to write in 1C (the map carries no e-mail there): it does not travel.
    email_at = later(watermark, minutes=2)
    world.sql("UPDATE customers SET email = 'finance@example.org', updated_at = :at WHERE customer_id = :key",
              at=email_at, key=first)
    versions = {o["Ref_Key"]: o["DataVersion"] for o in world.dump()}
    quiet = world.run("run-2a")
    assert items_of(world, "run-2a") == [] and quiet.sent == 0
    assert {o["Ref_Key"]: o["DataVersion"] for o in world.dump()} == versions

    # A change made after the watermark was read: it travels on the next run.
    changed_at = later(watermark, minutes=5)
    world.sql("UPDATE customers SET city = 'Kazan', updated_at = :at WHERE customer_id = :key",
              at=changed_at, key=first)
    summary = world.run("run-2")

    assert [(i["source_key"], i["operation"], i["status"]) for i in items_of(world, "run-2")] == [
        (first, "update", ACKNOWLEDGED)]
    assert summary.reconciliation == [] and summary.updated == 1
    assert world.by_ref()[ref_key(first)][LEGAL_ADDRESS].endswith("Kazan")
    assert world.watermark() == changed_at
    rerun = world.run("run-2b")  # acknowledged: the new content's hash is in the snapshot
    assert items_of(world, "run-2b") == [] and rerun.sent == 0

    # A transaction that committed late: its updated_at is OLDER than the stored watermark, within the overlap
    late = later(changed_at, minutes=-3)
    assert timedelta(minutes=3) < WATERMARK_OVERLAP and late < world.watermark()
    world.sql("UPDATE customers SET email = 'late@example.org', address = 'Moved Street 7', updated_at = :at "
              "WHERE customer_id = :key", at=late, key=second)
    summary = world.run("run-3")

    assert [(i["source_key"], i["operation"], i["status"]) for i in items_of(world, "run-3")] == [
        (second, "update", ACKNOWLEDGED)]
    assert summary.updated == 1 and summary.reconciliation == []
    obj = world.by_ref()[ref_key(second)]
    assert obj[LEGAL_ADDRESS].startswith("Moved Street 7")
    assert content_differences(world) == []
    assert world.watermark() == changed_at  # never moved back by the late row, never moved to "now"


# 4. faults: dropped answers, 503s, timeouts ---------------------------------------------------------------
def test_a_dropped_answer_to_a_create_is_retried_without_a_duplicate(world):
    meta = staged(world, "run-1")
    first_key = sorted(world.customers())[0]
    world.faults([{"mode": "drop_after_apply", "count": 1, "methods": ["POST"]}])

    meta = flow.load(meta, world.client, world.ledger)  # the customer is retried inside the task

    # 1C applied the first POST and never answered; the retry found our content there: that customer was
    # created by this run, not "unchanged" (issue 18, fault 8), and every change is counted once.
    assert (meta.outcomes.created, meta.outcomes.already_in_target, meta.outcomes.rejected) == (CUSTOMERS, 0, 0)
    codes = [o["Code"] for o in world.dump()]
    assert sorted(codes) == sorted(world.customers()) and len(set(codes)) == len(codes)
    items = items_of(world, "run-1")
    assert len(items) == CUSTOMERS  # the retry continued the open item, it did not plan a second one
    item = next(i for i in items if i["source_key"] == first_key)
    assert (item["status"], item["attempts"], item["last_error"]) == (ACKNOWLEDGED, 2, None)
    summary = flow.reconcile_and_report(meta, world.billing, world.client, world.ledger)
    assert summary.reconciliation == [] and content_differences(world) == []
    assert summary.counts_add_up() and summary.changes == CUSTOMERS


def test_a_lost_answer_in_one_task_attempt_counts_as_what_it_did_in_the_next(world):
    """1C applied a PATCH, the answer was lost and 1C then stayed down past the task's budget: Airflow's retry of
    the task finds the change applied and counts it as an update (13 + 296 = 309 of 310 before the fix)."""
    world.run("run-1")
    changed = sorted(world.customers())[2]
    world.sql("UPDATE customers SET legal_name = legal_name || ' (renamed)', updated_at = :at "
              "WHERE customer_id = :a", at=later(world.watermark(), hours=1), a=changed)
    meta = staged(world, "run-2")
    world.faults([{"mode": "drop_after_apply", "count": 1, "methods": ["PATCH"]},
                  {"mode": "error", "status": 503, "count": 50}])
    quick = RetryBudget(per_item=1, first_wait=0.01)
    with pytest.raises(TransientError, match="still failing after 2 attempt") as outage:
        flow.load(meta, world.client, world.ledger, retry=quick)
    # What a person reads: the status, the URL decoded, the customer by key and name, and that nothing is lost.
    message = str(outage.value)
    assert "HTTP 503" in message and "Catalog_Контрагенты" in message and "%D0" not in message
    assert changed in message and "(renamed)" in message, "the customer named, not only its GUID"
    assert "will retry" in message and "nothing lost" in message
    world.faults([])
    meta = flow.load(meta, world.client, world.ledger)  # Airflow's retry of the task
    assert (meta.outcomes.updated, meta.outcomes.already_in_target) == (1, 0)
    summary = flow.reconcile_and_report(meta, world.billing, world.client, world.ledger)
    assert summary.counts_add_up() and (summary.changes, summary.updated) == (1, 1)


def test_short_503_outages_are_retried_item_by_item_within_one_task_attempt(world):
    """Four transient faults in one run once cost four task attempts and failed the run (issue 18, fault 7)."""
    world.run("run-1")
    changed = sorted(world.customers())[2:6]
    world.sql("UPDATE customers SET legal_name = legal_name || ' (renamed)', updated_at = :at "
              "WHERE customer_id IN (:a, :b, :c, :d)", at=later(world.watermark(), hours=1), a=changed[0],
              b=changed[1], c=changed[2], d=changed[3])
    meta = staged(world, "run-2")
    world.faults([{"mode": "error", "status": 503, "count": 4}])

    meta = flow.load(meta, world.client, world.ledger, retry=RetryBudget(first_wait=0.05))

    assert meta.outcomes.updated == 4
    summary = flow.reconcile_and_report(meta, world.billing, world.client, world.ledger)
    assert summary.reconciliation == []
    in_onec = world.by_ref()
    assert all(in_onec[ref_key(k)]["Description"].endswith("(renamed)") for k in changed)
    assert content_differences(world) == []


def test_1c_staying_down_fails_the_task_and_the_next_attempt_continues(world):
    meta = staged(world, "run-1")
    world.faults([{"mode": "error", "status": 503, "count": 1000}])
    with pytest.raises(TransientError, match="still failing"):
        flow.load(meta, world.client, world.ledger, retry=RetryBudget(per_item=2, first_wait=0.01))
    world.faults([])
    meta, errors = load_until_done(world, meta, attempts=1)
    assert meta.outcomes.created == CUSTOMERS and errors == []
    assert flow.reconcile_and_report(meta, world.billing, world.client, world.ledger).reconciliation == []


def test_a_timeout_is_transient_and_the_retry_converges(world):
    meta = staged(world, "run-1")
    world.client.timeout = 0.5
    world.faults([{"mode": "timeout", "seconds": 2, "count": 1, "methods": ["POST"]}])

    meta = flow.load(meta, world.client, world.ledger)

    assert meta.outcomes.created == CUSTOMERS
    codes = [o["Code"] for o in world.dump()]
    assert len(codes) == len(set(codes)) == CUSTOMERS
    assert flow.reconcile_and_report(meta, world.billing, world.client, world.ledger).reconciliation == []


def test_a_wrong_password_stops_the_run_as_one_error(world):
    """A 401 was recorded as 1C refusing each customer, and the load task succeeded (issue 18, fault 8)."""
    meta = staged(world, "run-1")
    world.client.session.auth = (USER, "wrong password")
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        flow.load(meta, world.client, world.ledger)
    items = items_of(world, "run-1")
    assert [i["status"] for i in items if i["status"] not in (PLANNED, SENT)] == [], "nothing refused, all open"
    assert world.dump() == []


# 5. gates ------------------------------------------------------------------------------------------------
def test_a_malformed_kpp_is_held_back_and_the_rest_reconciles(world):
    customers = world.customers()
    bad = sorted(k for k, row in customers.items() if row["country"] == "RU" and row["entity_kind"] == "company")[0]
    good_kpp = customers[bad]["kpp"]
    world.sql("UPDATE customers SET kpp = '77-01' WHERE customer_id = :key", key=bad)

    summary = world.run("run-1")

    reason = "KPP is 9 digits for a Russian company"
    assert summary.quarantined == 1 and summary.created == CUSTOMERS - 1 and summary.reconciliation == []
    assert ref_key(bad) not in world.by_ref() and len(world.dump()) == CUSTOMERS - 1
    held = world.ledger.quarantined(flow=flow.FLOW)
    assert [(q["run_id"], q["source_key"], q["reasons"]) for q in held] == [("run-1", bad, reason)]
    sheet = openpyxl.load_workbook(summary.workbook, read_only=True)["Held back"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Key", "Status", "Reasons")
    assert [r[:3] for r in rows[1:]] == [(bad, "quarantined", reason)]
    assert rows[1][rows[0].index("kpp")] == "77-01", "the held-back row's fields as readable columns"

    # Fixed in billing: the held-back customer is read again and sent.
    world.sql("UPDATE customers SET kpp = :kpp, updated_at = :at WHERE customer_id = :key",
              kpp=good_kpp, at=later(world.watermark(), minutes=1), key=bad)
    summary = world.run("run-2")
    assert summary.created == 1 and summary.quarantined == 0 and summary.reconciliation == []
    assert content_differences(world) == []


def test_an_invalid_tax_id_blocks_the_whole_batch(world):
    world.run("run-1")
    versions = {o["Ref_Key"]: o["DataVersion"] for o in world.dump()}
    customers = world.customers()
    bad, good = sorted(customers)[4], sorted(customers)[6]
    tax_id = customers[bad]["tax_id"]
    broken = tax_id[:-1] + str((int(tax_id[-1]) + 1) % 10)
    assert not is_valid_tax_id(customers[bad]["country"], broken)
    at = later(world.watermark(), hours=1)
    world.sql("UPDATE customers SET tax_id = :t, updated_at = :at WHERE customer_id = :key", t=broken, at=at, key=bad)
    world.sql("UPDATE customers SET legal_name = 'Valid Change Ltd', updated_at = :at WHERE customer_id = :key",
              at=at, key=good)

    meta = flow.extract("run-2", world.billing, world.ledger)
    assert meta.read == CUSTOMERS  # the gate sees every customer, not only the changed ones
    with pytest.raises(GateFailed) as failure:
        flow.gate(meta, world.ledger)

    assert "tax id check digits valid" in str(failure.value) and bad in str(failure.value)
    assert {o["Ref_Key"]: o["DataVersion"] for o in world.dump()} == versions  # nothing at all reached 1C
    assert items_of(world, "run-2") == []
    report_dir = settings.reports_dir(flow.FLOW, "run-2")
    assert (report_dir / "gate_customer.html").is_file() and (report_dir / "gate_customer.json").is_file()
    assert failure.value.report_path == str(report_dir / "gate_customer.html")
    validation = world.ledger.validations(flow=flow.FLOW)[-1]
    assert (validation["run_id"], validation["success"]) == ("run-2", False)
    assert "tax id check digits valid" in json.loads(validation["failed_blocking"])
    with pytest.raises(GateFailed):  # the whole flow stops at the same step
        world.run("run-3")
    assert {o["Ref_Key"]: o["DataVersion"] for o in world.dump()} == versions


# 6. 1C refuses an item ----------------------------------------------------------------------------------
def test_an_item_1c_refuses_is_rejected_reported_and_sent_next_run(world):
    refused = sorted(world.customers())[0]  # the first POST of the run
    world.faults([{"mode": "error", "status": 400, "count": 1, "methods": ["POST"]}])

    with pytest.raises(TerminalError) as failure:
        world.run("run-1")

    assert not isinstance(failure.value, ReconciliationError)  # everything else reconciled
    assert refused in str(failure.value) and "HTTP 400" in str(failure.value)
    item = next(i for i in items_of(world, "run-1") if i["source_key"] == refused)
    assert item["status"] == REJECTED and "HTTP 400" in item["last_error"]
    assert ref_key(refused) not in world.by_ref() and len(world.dump()) == CUSTOMERS - 1
    assert world.ledger.runs(flow=flow.FLOW)[-1]["status"] == "failed"

    summary = world.run("run-2")  # no fault now

    assert summary.created == 1 and summary.rejected == 0 and summary.reconciliation == []
    assert [(i["source_key"], i["status"]) for i in items_of(world, "run-2")] == [(refused, ACKNOWLEDGED)]
    assert content_differences(world) == []


# 7. a 1C user edits one of ours: reported, then billing (the master) wins -------------------------------
def test_an_edit_in_1c_is_reported_and_the_next_run_restores_billing(world):
    world.run("run-1")
    customers = sorted(world.customers())
    edited, marked = customers[7], customers[9]
    world.edit(ref_key(edited), {"Description": "Исправлено бухгалтером", "КПП": "999999999"})
    world.edit(ref_key(marked), {"DeletionMark": True})

    with pytest.raises(ReconciliationError) as failure:
        world.run("run-2")

    message = str(failure.value)
    assert f"customer {edited}: 1C differs in ['Description', 'КПП']" in message
    assert marked in message and "marked for deletion" in message
    assert "the next run re-sends 2 customer(s)" in message
    assert edited not in world.snapshot() and marked not in world.snapshot()
    assert world.by_ref()[ref_key(edited)]["Description"] == "Исправлено бухгалтером"  # not yet repaired
    assert world.ledger.runs(flow=flow.FLOW)[-1]["status"] == "failed"

    summary = world.run("run-3")

    assert summary.updated == 2 and summary.reconciliation == []
    assert sorted((i["source_key"], i["status"]) for i in items_of(world, "run-3")) == [
        (edited, ACKNOWLEDGED), (marked, ACKNOWLEDGED)]
    assert world.by_ref()[ref_key(marked)]["DeletionMark"] is False
    assert content_differences(world) == []
    assert world.run("run-4").sent == 0


def test_a_counterparty_whose_comment_an_accountant_edited_is_still_ours(world):
    """Ownership is by derived Ref_Key, not by the editable comment: the edit is drift, not a lost record."""
    world.run("run-1")
    key = sorted(world.customers())[4]
    world.edit(ref_key(key), {"Комментарий": "checked by accounting, 2026-11"})
    with pytest.raises(ReconciliationError) as caught:
        world.run("run-2")
    assert f"customer {key}: 1C differs in ['Комментарий']" in str(caught.value)
    assert "missing" not in str(caught.value) and "in 1C only" not in str(caught.value)
    restored = world.run("run-3")
    assert restored.updated == 1 and restored.reconciliation == []


def test_a_customer_changed_after_the_run_read_it_is_left_to_the_next_run(world):
    world.run("run-1")
    key = sorted(world.customers())[6]
    meta = flow.load(flow.gate(flow.extract("run-2", world.billing, world.ledger), world.ledger), world.client,
                     world.ledger)
    # billing changes between this run's read and its reconciliation
    world.sql("UPDATE customers SET city = 'Samara', updated_at = :at WHERE customer_id = :key",
              at=later(world.watermark(), minutes=30), key=key)
    summary = flow.reconcile_and_report(meta, world.billing, world.client, world.ledger)
    assert summary.reconciliation == []
    nxt = world.run("run-3")
    assert nxt.updated == 1 and world.by_ref()[ref_key(key)][LEGAL_ADDRESS].endswith("Samara")


# 8. the live check (`ledgerlink summary --check-targets`) ---------------------------------------------
def test_the_live_check_counts_the_active_counterparties_1c_holds_of_ours(world):
    world.run("run-1")
    count = flow.COUNTERPARTY_FLOW.count_in_target(lambda: world.client)
    assert count(world.ledger.snapshot(flow.FLOW)) == (CUSTOMERS, "1C holds")
    world.sql("DELETE FROM customers WHERE customer_id = :key", key=sorted(world.customers())[0])
    world.run("run-2")
    assert count(world.ledger.snapshot(flow.FLOW)) == (CUSTOMERS - 1, "1C holds"), "marked for deletion: not held"


# 9. 1C as it really is: БП 3.0 shapes, lengths, unique codes, properties that do not stick, racing edits ------
class Recorded(logging.Handler):
    """The connector's log records (the tests run without pytest's logging plugin)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def connector_log():
    logger = logging.getLogger(counterparties.__name__)
    handler, level = Recorded(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def by_country(world: OneCWorld, country: str, kind: str = "company") -> str:
    return sorted(k for k, row in world.customers().items() if row["country"] == country and row["entity_kind"] == kind)[0]


def older_configuration(world: OneCWorld, change) -> None:
    """Publish a counterparty catalog changed by ``change`` (an older or narrower configuration)."""
    configuration = copy.deepcopy(schema.CONFIGURATION)
    change(configuration[schema.COUNTERPARTIES]["fields"])
    world.server.infobase.entity_sets = schema.build_schema(configuration)


def test_turkish_and_russian_customers_land_in_the_real_bp30_fields(world):
    turkish, russian = by_country(world, "TR"), by_country(world, "RU")
    customers = world.customers()
    world.run("run-1")

    raw = {o["Ref_Key"]: o for o in world.raw_dump()}
    countries = {c["КодАльфа2"]: c for c in world.raw_dump(schema.COUNTRIES)}
    [legal_kind] = [k["Ref_Key"] for k in world.raw_dump(schema.CONTACT_KINDS)
                    if k["PredefinedDataName"] == "ЮрАдресКонтрагента"]
    tr = raw[ref_key(turkish)]
    assert (tr["ИНН"], tr["КПП"], tr["НалоговыйНомер"]) == ("", "", customers[turkish]["tax_id"])
    assert tr["СтранаРегистрации_Key"] == countries["TR"]["Ref_Key"] and countries["TR"]["Code"] == "792"
    ru = raw[ref_key(russian)]
    assert (ru["ИНН"], ru["КПП"], ru["НалоговыйНомер"]) == (customers[russian]["tax_id"], customers[russian]["kpp"], "")
    assert ru["СтранаРегистрации_Key"] == countries["RU"]["Ref_Key"]
    [address] = tr["КонтактнаяИнформация"]
    assert (address["Тип"], address["Вид_Key"], address["Страна"]) == ("Адрес", legal_kind, "ТУРЦИЯ")
    assert address["Представление"] == f"{customers[turkish]['address']}, {customers[turkish]['city']}"
    # No Turkish VKN/TCKN in ИНН anywhere: 1C checks ИНН as a Russian number.
    assert all(o["ИНН"] == "" for o in raw.values() if o["СтранаРегистрации_Key"] != countries["RU"]["Ref_Key"])

    versions = {o["Ref_Key"]: o["DataVersion"] for o in world.raw_dump()}
    assert world.run("run-2").sent == 0 and content_differences(world) == []
    assert {o["Ref_Key"]: o["DataVersion"] for o in world.raw_dump()} == versions  # country and address compare equal


def test_a_moved_address_keeps_the_phone_an_accountant_typed_in(world):
    world.run("run-1")
    key = sorted(world.customers())[1]
    phone = {"Тип": "Телефон", "Представление": "+90 312 000 00 00", "НомерТелефона": "+903120000000"}
    current = world.by_ref()[ref_key(key)]
    rows = [r for o in world.raw_dump() if o["Ref_Key"] == ref_key(key) for r in o["КонтактнаяИнформация"]]
    world.edit(ref_key(key), {"КонтактнаяИнформация": rows + [phone]})
    world.sql("UPDATE customers SET address = 'Yeni Sokak 5', updated_at = :at WHERE customer_id = :key",
              at=later(world.watermark(), minutes=5), key=key)

    summary = world.run("run-2")

    assert summary.updated == 1 and summary.reconciliation == []
    [raw] = [o for o in world.raw_dump() if o["Ref_Key"] == ref_key(key)]
    assert [r["Тип"] for r in raw["КонтактнаяИнформация"]] == ["Адрес", "Телефон"]
    assert raw["КонтактнаяИнформация"][0]["Представление"].startswith("Yeni Sokak 5")
    assert world.by_ref()[ref_key(key)][LEGAL_ADDRESS] != current[LEGAL_ADDRESS]
    assert world.run("run-3").sent == 0  # the phone row is not ours: nothing to put back


def test_a_legal_name_longer_than_description_travels_whole_in_the_full_name(world):
    key = sorted(world.customers())[2]
    long_name = ("Anadolu Bulut Bilişim Telekomünikasyon Yazılım Danışmanlık Sanayi ve Ticaret "
                 "Anonim Şirketi İstanbul Şubesi Merkez")
    assert 100 < len(long_name) <= 150  # what the gate lets through
    world.sql("UPDATE customers SET legal_name = :name WHERE customer_id = :key", name=long_name, key=key)

    summary = world.run("run-1")

    assert summary.created == CUSTOMERS and summary.rejected == 0 and summary.reconciliation == []
    obj = world.by_ref()[ref_key(key)]
    assert (obj["Description"], obj["НаименованиеПолное"]) == (long_name[:100], long_name)
    assert world.run("run-2").sent == 0  # what 1C kept is what we meant: no PATCH every night


def test_a_duplicate_code_is_refused_by_1c_and_reported(world):
    taken = sorted(world.customers())[5]
    # An accountant entered the customer by hand before the first exchange, under the same code.
    api = world.client
    api.create(schema.COUNTERPARTIES, {"Code": taken, "Description": "Введён вручную"})

    with pytest.raises(TerminalError) as failure:
        world.run("run-1")

    assert not isinstance(failure.value, ReconciliationError)
    assert taken in str(failure.value) and 'Значение поля "Код" не уникально' in str(failure.value)
    item = next(i for i in items_of(world, "run-1") if i["source_key"] == taken)
    assert item["status"] == REJECTED and item["attempts"] == 1  # terminal: not retried
    assert ref_key(taken) not in world.by_ref()


@pytest.mark.parametrize("change, field, affects", [
    # A base without the attribute: every Turkish customer's tax number would be lost.
    (lambda fields: fields.pop("НалоговыйНомер"), "НалоговыйНомер", lambda row: row["country"] == "TR"),
    # A base with a shorter full name: every longer legal name would be cut.
    (lambda fields: fields.update(НаименованиеПолное=(schema.STRING, 12)), "НаименованиеПолное",
     lambda row: len(row["legal_name"]) > 12),
])
def test_a_field_that_does_not_stick_is_a_terminal_refusal_naming_it(world, change, field, affects):
    older_configuration(world, change)
    customers = world.customers()
    affected = {k for k, row in customers.items() if affects(row)}
    assert 0 < len(affected) < len(customers)

    with pytest.raises(TerminalError) as failure:
        world.run("run-1")

    assert not isinstance(failure.value, ReconciliationError) and field in str(failure.value)
    rejected = {i["source_key"]: i for i in items_of(world, "run-1") if i["status"] == REJECTED}
    assert set(rejected) == affected
    assert all(f"did not keep ['{field}']" in i["last_error"] and i["attempts"] == 1 for i in rejected.values())
    assert {i["source_key"] for i in items_of(world, "run-1") if i["status"] == ACKNOWLEDGED} == set(customers) - affected

    again = pytest.raises(TerminalError)  # the next run refuses them again: never a silent loss
    with again:
        world.run("run-2")
    assert {i["source_key"] for i in items_of(world, "run-2") if i["status"] == REJECTED} == affected


def test_an_accountants_edit_between_our_read_and_our_write_is_caught_and_billing_wins(world, connector_log):
    """Whether 1C honours If-Match (a 412) or ignores it (seen in its answer), the edit is reported with both
    values and billing's value stands; the accountant's edit of a field we do not own is kept."""
    world.run("run-1")
    key = sorted(world.customers())[3]
    ours = f"{counterparties.COMMENT_PREFIX}{key}"
    world.sql("UPDATE customers SET legal_name = legal_name || ' (renamed)', updated_at = :at "
              "WHERE customer_id = :key", at=later(world.watermark(), minutes=5), key=key)
    real_patch, edited = world.client.patch, []

    def accountant_edits_first(entity_set, ref, changes, *, if_match=None):
        if ref == ref_key(key) and not edited:  # after our GET, before our PATCH
            edited.append(world.edit(ref, {"Комментарий": "проверено бухгалтером",
                                           "РегистрационныйНомер": "1234567890123"}))
        return real_patch(entity_set, ref, changes, if_match=if_match)

    world.client.patch = accountant_edits_first
    summary = world.run("run-2")

    assert edited and summary.updated == 1 and summary.rejected == 0 and summary.reconciliation == []
    obj = world.by_ref()[ref_key(key)]
    assert obj["Description"].endswith("(renamed)") and obj["Комментарий"] == ours  # billing (master) wins
    assert obj["РегистрационныйНомер"] == "1234567890123"  # not ours: the accountant's value stays
    raced = [m for m in connector_log if f"counterparty {key}" in m and "changed in 1C while Ledgerlink wrote it" in m]
    # Honoured: 1C refused our stale If-Match. Ignored: its answer showed fields we did not send had moved.
    expected = "DataVersion" if world.honour_if_match else "Комментарий: read"
    assert len(raced) == 1 and expected in raced[0], raced
    assert f"counterparty {key} ({ref_key(key)}): 1C has 'проверено бухгалтером', billing (master) sets '{ours}'" \
        in connector_log
    assert world.run("run-3").sent == 0 and content_differences(world) == []


def test_a_value_1c_would_cut_is_refused_before_sending(world):
    key = sorted(world.customers())[0]
    row = {**world.customers()[key], "tax_id": "1" * 60}
    with pytest.raises(ValueDoesNotFit, match="НалоговыйНомер has 60 characters, 1C keeps at most 50"):
        counterparties.upsert_counterparty(world.client, {**row, "country": "TR"}, believed_new=True)
    assert world.raw_dump() == []


def test_a_country_missing_from_1c_is_a_refusal_saying_what_to_add(world):
    key = sorted(world.customers())[0]
    row = {**world.customers()[key], "country": "DE", "tax_id": "DE123456789"}
    with pytest.raises(MissingReference, match="country with КодАльфа2 'DE'.*Подобрать из ОКСМ"):
        counterparties.upsert_counterparty(world.client, row, believed_new=True)
