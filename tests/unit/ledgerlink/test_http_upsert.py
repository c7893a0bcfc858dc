"""The idempotent HTTP upsert against an in-memory target that behaves as 1C can: fields it does not keep,
edits racing ours, with If-Match honoured or ignored. And the counterparty mapping by country."""
from __future__ import annotations

import pytest

from ledgerlink.errors import ConflictError, NotStored, RemoteRejected
from ledgerlink.loads.http import CREATED, MAX_CONFLICT_ROUNDS, UNCHANGED, UPDATED, KeyedTarget, upsert
from ledgerlink.onec.counterparties import COUNTRY, LEGAL_ADDRESS, to_counterparty


class FakeTarget:
    """One object store; ``keeps`` filters what a write keeps; ``race`` edits the object before a patch lands."""

    def __init__(self, *, honour_if_match: bool = True, keeps=lambda name, value: value):
        self.objects: dict[str, dict] = {}
        self.version = 0
        self.honour_if_match = honour_if_match
        self.keeps = keeps
        self.races: list[dict] = []
        self.patches = 0

    def _write(self, record: dict, fields: dict) -> dict:
        for name, value in fields.items():
            kept = self.keeps(name, value)
            if kept is not None:
                record[name] = kept
        self.version += 1
        record["DataVersion"] = str(self.version)
        return dict(record)

    def create(self, payload: dict) -> dict:
        if payload["key"] in self.objects:
            raise RemoteRejected("fake", 400, "15", "exists")
        self.objects[payload["key"]] = record = {}
        return self._write(record, payload)

    def patch(self, key: str, changes: dict, version: str | None) -> dict:
        self.patches += 1
        record = self.objects[key]
        if self.races:
            self._write(record, self.races.pop(0))  # someone else wrote between our read and this write
        if self.honour_if_match and version != record["DataVersion"]:
            raise ConflictError("412")
        return self._write(record, changes)

    def target(self) -> KeyedTarget:
        return KeyedTarget(get=lambda key: dict(self.objects[key]) if key in self.objects else None,
                           create=self.create, patch=self.patch, version_of=lambda o: o.get("DataVersion"),
                           is_key_exists=lambda e: e.code == "15", system="fake", entity="thing")


def test_create_then_unchanged():
    fake = FakeTarget()
    assert upsert(fake.target(), "k", {"key": "k", "name": "A"}, believed_new=True, key_field="key") == CREATED
    assert upsert(fake.target(), "k", {"key": "k", "name": "A"}, believed_new=True, key_field="key") == UNCHANGED


def test_a_field_the_target_does_not_keep_is_not_stored_naming_it():
    fake = FakeTarget(keeps=lambda name, value: None if name == "tax" else value[:5] if name == "name" else value)
    with pytest.raises(NotStored) as failure:
        upsert(fake.target(), "k", {"key": "k", "name": "Longer name", "tax": "123"}, believed_new=True, key_field="key")
    assert failure.value.fields == {"name": ("Longer name", "Longe"), "tax": ("123", None)}
    assert "did not keep ['name', 'tax']" in str(failure.value) and isinstance(failure.value, RemoteRejected)


@pytest.mark.parametrize("honour", [True, False])
def test_an_edit_racing_ours_is_reported_and_overwritten(honour):
    fake = FakeTarget(honour_if_match=honour)
    upsert(fake.target(), "k", {"key": "k", "name": "A", "note": "ours"}, believed_new=True, key_field="key")
    fake.races.append({"note": "theirs", "phone": "123"})
    overwritten, raced = [], []
    outcome = upsert(fake.target(), "k", {"key": "k", "name": "B", "note": "ours"}, believed_new=False,
                     key_field="key", on_overwrite=lambda key, changes, current: overwritten.append(
                         {n: (current.get(n), v) for n, v in changes.items()}),
                     on_concurrent_edit=lambda key, moved: raced.append(moved))
    assert outcome == UPDATED
    assert fake.objects["k"]["name"] == "B" and fake.objects["k"]["note"] == "ours" and fake.objects["k"]["phone"] == "123"
    assert overwritten[-1]["note"] == ("theirs", "ours")  # both values, billing's wins
    assert len(raced) == 1 and ("DataVersion" in raced[0] if honour else raced[0]["note"] == ("ours", "theirs"))


def test_an_object_that_keeps_changing_is_left_to_a_retry():
    fake = FakeTarget()
    upsert(fake.target(), "k", {"key": "k", "name": "A"}, believed_new=True, key_field="key")
    fake.races.extend({"name": f"edit {n}"} for n in range(MAX_CONFLICT_ROUNDS))
    with pytest.raises(ConflictError, match="kept changing"):
        upsert(fake.target(), "k", {"key": "k", "name": "B"}, believed_new=False, key_field="key")
    assert fake.patches == MAX_CONFLICT_ROUNDS


def test_each_tax_id_goes_where_1c_keeps_it_for_its_country():
    base = {"customer_id": "C000001", "legal_name": "X", "entity_kind": "company", "address": "Street 1",
            "city": "Ankara"}
    turkish = to_counterparty({**base, "country": "TR", "tax_id": "1234567890", "kpp": None})
    assert (turkish["ИНН"], turkish["КПП"], turkish["НалоговыйНомер"], turkish[COUNTRY]) == ("", "", "1234567890", "TR")
    russian = to_counterparty({**base, "country": "RU", "tax_id": "7701234567", "kpp": "770101001"})
    assert (russian["ИНН"], russian["КПП"], russian["НалоговыйНомер"]) == ("7701234567", "770101001", "")
    assert russian[LEGAL_ADDRESS] == "Street 1, Ankara"
    long_name = to_counterparty({**base, "country": "TR", "tax_id": "1", "kpp": None, "legal_name": "N" * 140})
    assert (len(long_name["Description"]), len(long_name["НаименованиеПолное"])) == (100, 140)
