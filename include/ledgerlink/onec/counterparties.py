"""Billing customers as 1C counterparties (``Catalog_Контрагенты``): keys, mapping, and the idempotent load.

The counterparty is shaped as a real Бухгалтерия предприятия 3.0 base holds it (DESIGN §8):

* the country is a reference, ``СтранаРегистрации_Key``, to ``Catalog_СтраныМира``, whose items a base picks
  from the classifier with a Ref_Key of its own: we find billing's ISO alpha-2 country by ``КодАльфа2``, once
  per client (:func:`lookups`);
* the legal address is a row of the ``КонтактнаяИнформация`` tabular part of the predefined kind
  ``ЮрАдресКонтрагента`` (``Catalog_ВидыКонтактнойИнформации``, found by ``PredefinedDataName``), written as
  its presentation; rows of other kinds (phones an accountant typed in) are kept, since a PATCH carrying a
  tabular part replaces it whole;
* each tax id goes where 1C keeps it for its country: a Russian one in ``ИНН``/``КПП``, any other in
  ``НалоговыйНомер`` with ``ИНН``/``КПП`` empty (1C checks ``ИНН`` as a Russian number).

We compare in a *view* of the object (:func:`comparable`) where those two references are named by their natural
keys (``COUNTRY``, ``LEGAL_ADDRESS``): billing's side needs no call to 1C, and a second run finds nothing to send.
"""
from __future__ import annotations

import logging
import uuid
import weakref
from dataclasses import dataclass, field

import pandas as pd

from ledgerlink.errors import MissingReference, RemoteRejected, ValueDoesNotFit
from ledgerlink.loads.http import ALREADY_GONE, DELETED, KeyedTarget, differences, upsert
from ledgerlink.onec.client import CODE_KEY_EXISTS, ODataClient

log = logging.getLogger(__name__)
ENTITY_SET = "Catalog_Контрагенты"
COUNTRIES = "Catalog_СтраныМира"
CONTACT_KINDS = "Catalog_ВидыКонтактнойИнформации"
LEGAL_ADDRESS_KIND = "ЮрАдресКонтрагента"  # the predefined kind's name in БП 3.0
CONTACT_INFORMATION = "КонтактнаяИнформация"
EMPTY_REF = "00000000-0000-0000-0000-000000000000"
# Fields of the compared view that stand for a reference, named as an OData navigation path would name them.
COUNTRY = "СтранаРегистрации/КодАльфа2"
LEGAL_ADDRESS = f"{CONTACT_INFORMATION}/{LEGAL_ADDRESS_KIND}/Представление"
# The attribute lengths of БП 3.0 for what we write: 1C would cut a longer value without a word. Description,
# 1C's short working name, is cut here on purpose (the full legal name travels whole in НаименованиеПолное);
# any other value too long is refused before sending (ValueDoesNotFit).
DESCRIPTION_LENGTH = 100
LENGTHS = {"Code": 9, "ИНН": 12, "КПП": 9, "НалоговыйНомер": 50, LEGAL_ADDRESS: 500}
# Fixed namespace: Ref_Keys derived from it must never change, or every counterparty would be created twice.
LEDGERLINK_NAMESPACE = uuid.UUID("6f1c2a1e-4a57-5b1e-9d2c-6c6564676572")
COMMENT_PREFIX = "Ledgerlink: billing customer "
# What 1C's counterparty holds of a billing customer (the exchange map's fields for this flow): a change in
# any of these travels; a change elsewhere (e-mail, segment) has nothing to write in 1C and does not.
# The customer fields :func:`to_counterparty` reads (the key aside): checked against the exchange map, which
# says what the flow carries.
CARRIED = ("legal_name", "country", "entity_kind", "tax_id", "kpp", "address", "city")
RUSSIA = "RU"


def ref_key(customer_id: str) -> str:
    """The counterparty's ``Ref_Key``: uuid5 of the billing key, the same on every run and machine."""
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/customer/{customer_id}"))


def to_counterparty(row: dict) -> dict:
    """One billing customer as the fields of the 1C counterparty we own, in the compared view."""
    russian = row["country"] == RUSSIA
    tax_id = row["tax_id"] or ""
    return {
        "Ref_Key": ref_key(row["customer_id"]),
        "Code": row["customer_id"],
        "Description": str(row["legal_name"])[:DESCRIPTION_LENGTH],
        "НаименованиеПолное": row["legal_name"],
        "ЮридическоеФизическоеЛицо": "ЮридическоеЛицо" if row.get("entity_kind") == "company" else "ФизическоеЛицо",
        COUNTRY: row["country"],
        "ИНН": tax_id if russian else "",
        "КПП": (row.get("kpp") or "") if russian else "",
        "НалоговыйНомер": "" if russian else tax_id,
        LEGAL_ADDRESS: ", ".join(p for p in (row.get("address"), row.get("city")) if p),
        "Комментарий": f"{COMMENT_PREFIX}{row['customer_id']}",
        "DeletionMark": False,
    }


@dataclass
class Lookups:
    """1C's own keys for the references we write, read once per client (they change only by hand in 1C)."""

    country_by_alpha2: dict[str, dict] = field(default_factory=dict)  # "TR" -> the Catalog_СтраныМира item
    alpha2_by_ref: dict[str, str] = field(default_factory=dict)
    legal_address_kind: str | None = None

    def country(self, alpha2: str) -> dict:
        try:
            return self.country_by_alpha2[alpha2]
        except KeyError:
            raise MissingReference(
                "1C", COUNTRIES, f"country with КодАльфа2 {alpha2!r}",
                "add it from the classifier (Справочник «Страны мира» → Подобрать из ОКСМ)") from None


_LOOKUPS: "weakref.WeakKeyDictionary[ODataClient, Lookups]" = weakref.WeakKeyDictionary()


def lookups(client: ODataClient, *, refresh: bool = False) -> Lookups:
    """The countries and the legal address kind of this 1C base, cached per client."""
    found = _LOOKUPS.get(client)
    if found is not None and not refresh:
        return found
    found = Lookups()
    for country in client.list(COUNTRIES, select=["Ref_Key", "Code", "Description", "КодАльфа2", "DeletionMark"]):
        alpha2 = str(country.get("КодАльфа2") or "").upper()
        found.alpha2_by_ref[country["Ref_Key"]] = alpha2
        if alpha2 and not country.get("DeletionMark"):
            found.country_by_alpha2[alpha2] = country
    kinds = list(client.list(CONTACT_KINDS, filter=f"PredefinedDataName eq '{LEGAL_ADDRESS_KIND}'",
                             select=["Ref_Key", "PredefinedDataName"]))
    found.legal_address_kind = kinds[0]["Ref_Key"] if kinds else None
    _LOOKUPS[client] = found
    return found


def _view(known: Lookups, counterparty: dict) -> dict:
    """A counterparty as 1C answers it, in the compared view (see the module docstring)."""
    view = {name: value for name, value in counterparty.items()
            if name not in ("СтранаРегистрации_Key", CONTACT_INFORMATION) and not name.endswith("@navigationLinkUrl")}
    country_key = counterparty.get("СтранаРегистрации_Key") or EMPTY_REF
    view[COUNTRY] = "" if country_key == EMPTY_REF else known.alpha2_by_ref.get(country_key, f"?{country_key}")
    legal = [row for row in counterparty.get(CONTACT_INFORMATION) or []
             if known.legal_address_kind and row.get("Вид_Key") == known.legal_address_kind]
    view[LEGAL_ADDRESS] = legal[0].get("Представление", "") if legal else ""
    return view


def comparable(client: ODataClient, counterparty: dict) -> dict:
    """A counterparty as 1C answers it, with its country and legal address named as :func:`to_counterparty`
    names them, so the two compare field by field."""
    known = lookups(client)
    key = counterparty.get("СтранаРегистрации_Key") or EMPTY_REF
    if key != EMPTY_REF and key not in known.alpha2_by_ref:
        known = lookups(client, refresh=True)  # a country added in 1C since we read the catalog
    return _view(known, counterparty)


def _to_wire(client: ODataClient, fields: dict, current: dict | None) -> dict:
    """Fields of the compared view as the body 1C takes: references by key, the address as its row."""
    known = lookups(client)
    if fields.get(COUNTRY) and fields[COUNTRY] not in known.country_by_alpha2:
        known = lookups(client, refresh=True)  # added in 1C since we read the catalog?
    body = {name: value for name, value in fields.items() if name not in (COUNTRY, LEGAL_ADDRESS)}
    if COUNTRY in fields:
        body["СтранаРегистрации_Key"] = known.country(fields[COUNTRY])["Ref_Key"] if fields[COUNTRY] else EMPTY_REF
    if LEGAL_ADDRESS in fields:
        if known.legal_address_kind is None:
            raise MissingReference("1C", CONTACT_KINDS, f"predefined kind {LEGAL_ADDRESS_KIND}",
                                   "update the configuration (the kind is predefined in БП 3.0)")
        others = [{name: value for name, value in row.items() if name not in ("Ref_Key", "LineNumber")}
                  for row in (current or {}).get(CONTACT_INFORMATION) or []
                  if row.get("Вид_Key") != known.legal_address_kind]
        rows = []
        if fields[LEGAL_ADDRESS]:
            alpha2 = fields.get(COUNTRY) or known.alpha2_by_ref.get((current or {}).get("СтранаРегистрации_Key"), "")
            country = known.country_by_alpha2.get(alpha2)
            rows.append({"Тип": "Адрес", "Вид_Key": known.legal_address_kind, "Представление": fields[LEGAL_ADDRESS],
                         "Страна": country["Description"] if country else ""})
        body[CONTACT_INFORMATION] = rows + others
    return body


def _check_fits(customer_id: str, payload: dict) -> None:
    for name, limit in LENGTHS.items():
        value = payload.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise ValueDoesNotFit("1C", "customer", customer_id, name, value, limit)


def keyed_target(client: ODataClient) -> KeyedTarget:
    return KeyedTarget(
        get=lambda key: client.get(ENTITY_SET, key),
        create=lambda payload: client.create(ENTITY_SET, payload),
        patch=lambda key, changes, version: client.patch(ENTITY_SET, key, changes, if_match=version),
        version_of=lambda current: current.get("DataVersion"),
        is_key_exists=lambda e: e.code == CODE_KEY_EXISTS,
        view=lambda counterparty: comparable(client, counterparty),
        to_wire=lambda fields, current: _to_wire(client, fields, current),
        system="1C", entity=ENTITY_SET,
    )


def upsert_counterparty(client: ODataClient, row: dict, *, believed_new: bool) -> tuple[str, str]:
    """Create or bring up to date one counterparty; returns (outcome, Ref_Key)."""
    payload = to_counterparty(row)
    _check_fits(row["customer_id"], payload)
    customer = row["customer_id"]

    def log_overwrite(key: str, changes: dict, current: dict) -> None:
        # Master wins (exchange map): billing's values replace edits made in 1C. Say so, field by field.
        for name, value in changes.items():
            log.info("counterparty %s (%s): 1C has %r, billing (master) sets %r", customer, key,
                     current.get(name), value)

    def log_concurrent_edit(key: str, moved: dict) -> None:
        # Someone changed the object in 1C between our read and our write (seen by a 412, or in the answer of
        # a base that ignores If-Match): it is read again, and billing's values are written over the edit.
        log.warning("counterparty %s (%s) was changed in 1C while Ledgerlink wrote it: %s", customer, key,
                    "; ".join(f"{name}: read {before!r}, then {after!r}"
                              for name, (before, after) in sorted(moved.items())))

    outcome = upsert(keyed_target(client), payload["Ref_Key"], payload, believed_new=believed_new,
                     key_field="Ref_Key", on_overwrite=log_overwrite, on_concurrent_edit=log_concurrent_edit)
    return outcome, payload["Ref_Key"]


def mark_deleted(client: ODataClient, key: str) -> str:
    """A customer gone from billing is marked for deletion in 1C (1C's own way; removal stays a person's call)."""
    current = client.get(ENTITY_SET, key)
    if current is None:
        return ALREADY_GONE
    if current.get("DeletionMark") is True:
        return DELETED
    try:
        client.patch(ENTITY_SET, key, {"DeletionMark": True}, if_match=current.get("DataVersion"))
    except RemoteRejected as e:
        if e.status == 404:
            return ALREADY_GONE
        raise
    return DELETED


def read_ours(client: ODataClient, known_keys: set[str] = frozenset()) -> pd.DataFrame:
    """Every counterparty Ledgerlink owns in 1C, for reconciliation, in the compared view: the Ref_Keys we
    derived (``known_keys``) and any other still carrying our comment marker.

    Ownership is decided here rather than by a ``$filter`` range on the comment: an accountant can edit the
    comment, and 1C's collation need not order it as a byte range would.
    """
    rows = [comparable(client, row) for row in client.list(ENTITY_SET)
            if row.get("Ref_Key") in known_keys or str(row.get("Комментарий") or "").startswith(COMMENT_PREFIX)]
    return pd.DataFrame(rows)


def content_mismatches(expected: dict, actual: dict) -> dict:
    """Fields of :func:`to_counterparty`'s view that differ in ``actual`` (a :func:`comparable` view)."""
    return differences(expected, actual, ignore=("Ref_Key",))
