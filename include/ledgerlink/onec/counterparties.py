"""Billing customers as 1C counterparties (``Catalog_Контрагенты``): keys, mapping, and the idempotent load."""
from __future__ import annotations

import logging
import uuid

import pandas as pd

from ledgerlink.errors import RemoteRejected
from ledgerlink.loads.http import ALREADY_GONE, DELETED, KeyedTarget, differences, upsert
from ledgerlink.onec.client import CODE_KEY_EXISTS, ODataClient

log = logging.getLogger(__name__)
ENTITY_SET = "Catalog_Контрагенты"
# Fixed namespace: Ref_Keys derived from it must never change, or every counterparty would be created twice.
LEDGERLINK_NAMESPACE = uuid.UUID("6f1c2a1e-4a57-5b1e-9d2c-6c6564676572")
COMMENT_PREFIX = "Ledgerlink: billing customer "
# What 1C's counterparty holds of a billing customer (the exchange map's fields for this flow): a change in
# any of these travels; a change elsewhere (e-mail, segment) has nothing to write in 1C and does not.
# The customer fields :func:`to_counterparty` reads (the key aside): checked against the exchange map, which
# says what the flow carries.
CARRIED = ("legal_name", "country", "entity_kind", "tax_id", "kpp", "address", "city")


def ref_key(customer_id: str) -> str:
    """The counterparty's ``Ref_Key``: uuid5 of the billing key, the same on every run and machine."""
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/customer/{customer_id}"))


def to_counterparty(row: dict) -> dict:
    """One billing customer as the 1C catalog object (the fields we own)."""
    address = ", ".join(p for p in (row.get("address"), row.get("city")) if p)
    return {
        "Ref_Key": ref_key(row["customer_id"]),
        "Code": row["customer_id"],
        "Description": str(row["legal_name"])[:100],
        "НаименованиеПолное": row["legal_name"],
        "ИНН": row["tax_id"],
        "КПП": row.get("kpp") or "",
        "ЮридическоеФизическоеЛицо": "ЮридическоеЛицо" if row.get("entity_kind") == "company" else "ФизическоеЛицо",
        "СтранаРегистрации": row["country"],
        "ЮридическийАдрес": address,
        "Комментарий": f"{COMMENT_PREFIX}{row['customer_id']}",
        "DeletionMark": False,
    }


def keyed_target(client: ODataClient) -> KeyedTarget:
    return KeyedTarget(
        get=lambda key: client.get(ENTITY_SET, key),
        create=lambda payload: client.create(ENTITY_SET, payload),
        patch=lambda key, changes, version: client.patch(ENTITY_SET, key, changes, if_match=version),
        version_of=lambda current: current.get("DataVersion"),
        is_key_exists=lambda e: e.code == CODE_KEY_EXISTS,
    )


def upsert_counterparty(client: ODataClient, row: dict, *, believed_new: bool) -> tuple[str, str]:
    """Create or bring up to date one counterparty; returns (outcome, Ref_Key)."""
    payload = to_counterparty(row)

    def log_overwrite(key: str, changes: dict, current: dict) -> None:
        # Master wins (exchange map): billing's values replace edits made in 1C. Say so, field by field.
        for field, value in changes.items():
            log.info("counterparty %s (%s): 1C has %r, billing (master) sets %r", row["customer_id"], key,
                     current.get(field), value)

    outcome = upsert(keyed_target(client), payload["Ref_Key"], payload, believed_new=believed_new,
                     key_field="Ref_Key", on_overwrite=log_overwrite)
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
    """Every counterparty Ledgerlink owns in 1C, for reconciliation: the Ref_Keys we derived (``known_keys``)
    and any other still carrying our comment marker.

    Ownership is decided here rather than by a ``$filter`` range on the comment: an accountant can edit the
    comment, and 1C's collation need not order it as a byte range would.
    """
    rows = [row for row in client.list(ENTITY_SET)
            if row.get("Ref_Key") in known_keys or str(row.get("Комментарий") or "").startswith(COMMENT_PREFIX)]
    return pd.DataFrame(rows)


def content_mismatches(expected: dict, actual: dict) -> dict:
    return differences(expected, actual, ignore=("Ref_Key",))
