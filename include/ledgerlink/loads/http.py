"""Idempotent writes to HTTP targets whose keys we derive.

The target key is computed from the source key, so a retry addresses the same object. Create first when we
believe the object is new; "already exists" is success only after checking it holds our content; otherwise
read, compare and change only what differs, guarded by the version we read.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ledgerlink.errors import RemoteRejected

log = logging.getLogger(__name__)
CREATED, UPDATED, UNCHANGED, DELETED, ALREADY_GONE = "created", "updated", "unchanged", "deleted", "already gone"


@dataclass(frozen=True)
class KeyedTarget:
    """The four calls an HTTP target offers for one kind of object, plus how it says "key exists"."""

    get: Callable[[str], dict | None]
    create: Callable[[dict], dict]
    patch: Callable[[str, dict, str | None], dict]
    version_of: Callable[[dict], str | None]
    is_key_exists: Callable[[RemoteRejected], bool]


def normalise(value):
    """Compare values as the target stores them: numbers by value, everything else as text."""
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    if value is None:
        return ""
    return value


def differences(wanted: dict, current: dict, ignore: tuple[str, ...] = ()) -> dict:
    """Fields of ``wanted`` whose value differs in ``current``."""
    return {k: v for k, v in wanted.items() if k not in ignore and normalise(current.get(k)) != normalise(v)}


def upsert(target: KeyedTarget, key: str, payload: dict, *, believed_new: bool,
           key_field: str, on_overwrite: Callable[[str, dict, dict], None] | None = None) -> str:
    """Make the object ``key`` hold ``payload``. Returns created / updated / unchanged."""
    if believed_new:
        try:
            target.create(payload)
            return CREATED
        except RemoteRejected as e:
            if not target.is_key_exists(e):
                raise
            log.info("%s already exists (an earlier attempt got through); checking its content", key)
    current = target.get(key)
    if current is None:
        target.create(payload)
        return CREATED
    changes = differences(payload, current, ignore=(key_field,))
    if not changes:
        return UNCHANGED
    if on_overwrite:
        on_overwrite(key, changes, current)
    target.patch(key, changes, target.version_of(current))
    return UPDATED
