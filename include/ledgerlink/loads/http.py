"""Idempotent writes to HTTP targets whose keys we derive.

The target key is computed from the source key, so a retry addresses the same object. Create first when we
believe the object is new; "already exists" is success only after checking it holds our content; otherwise
read, compare and change only what differs, guarded by the version we read.

Two habits of real targets shape the rest (1C's, DESIGN §8):

* A write can succeed without keeping what was sent: 1C ignores properties its configuration lacks and cuts a
  string to its attribute's length. So every answer to a create or a change is compared with what was sent,
  and a field that did not stick is a terminal :class:`NotStored` naming it, never a silent loss nor a retry.
* Some bases ignore ``If-Match``. A change is still sent with it (the bases that honour it answer 412 to a stale
  one), and the answer is compared with what we read: a field we did not send that moved in between is someone
  else's edit made between our read and our write. Either way we read again and, the master winning, write
  billing's values over the edit, reporting both through ``on_overwrite``. (An edit between our read and our
  write to a field we are changing anyway is overwritten unseen on a base that ignores ``If-Match``: billing's
  value is the one that must stand, but that edit's value is not reported. No read can close that window; a
  second read just before the write would only move it.)
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ledgerlink.errors import ConflictError, NotStored, RemoteRejected

log = logging.getLogger(__name__)
CREATED, UPDATED, UNCHANGED, DELETED, ALREADY_GONE = "created", "updated", "unchanged", "deleted", "already gone"
# Edits racing ours on the same object, read again and re-applied before the item is left to a later retry.
MAX_CONFLICT_ROUNDS = 3


def _same(value):
    return value


def _as_sent(fields: dict, current: dict | None) -> dict:
    return fields


@dataclass(frozen=True)
class KeyedTarget:
    """The calls an HTTP target offers for one kind of object, plus how it says "key exists".

    ``view`` turns an object as the target answers it into the shape it is compared in (the default: as is);
    ``to_wire`` turns fields of that shape into the body sent, given the object as read (None on create).
    """

    get: Callable[[str], dict | None]
    create: Callable[[dict], dict]
    patch: Callable[[str, dict, str | None], dict]
    version_of: Callable[[dict], str | None]
    is_key_exists: Callable[[RemoteRejected], bool]
    view: Callable[[dict], dict] = _same
    to_wire: Callable[[dict, dict | None], dict] = _as_sent
    system: str = "the target"
    entity: str = "object"


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


def _check_stored(target: KeyedTarget, key: str, sent: dict, answer: dict, key_field: str) -> None:
    """Raise :class:`NotStored` for every sent field the target's answer does not hold."""
    kept = target.view(answer)
    lost = differences(sent, kept, ignore=(key_field,))
    if lost:
        raise NotStored(target.system, target.entity, key,
                        {name: (value, kept.get(name)) for name, value in lost.items()})


def upsert(target: KeyedTarget, key: str, payload: dict, *, believed_new: bool, key_field: str,
           on_overwrite: Callable[[str, dict, dict], None] | None = None,
           on_concurrent_edit: Callable[[str, dict], None] | None = None) -> str:
    """Make the object ``key`` hold ``payload`` (in the ``view`` shape). Returns created / updated / unchanged.

    ``on_overwrite(key, changes, current_view)`` is told each time the target's values are replaced;
    ``on_concurrent_edit(key, {field: (read, then)})`` when the target changed while we wrote (see the module).
    """
    if believed_new:
        try:
            answer = target.create(target.to_wire(payload, None))
        except RemoteRejected as e:
            if not target.is_key_exists(e):
                raise
            log.info("%s already exists (an earlier attempt got through); checking its content", key)
        else:
            _check_stored(target, key, payload, answer, key_field)
            return CREATED
    raced = False
    for _ in range(MAX_CONFLICT_ROUNDS):
        current = target.get(key)
        if current is None:
            answer = target.create(target.to_wire(payload, None))
            _check_stored(target, key, payload, answer, key_field)
            return CREATED
        read = target.view(current)
        changes = differences(payload, read, ignore=(key_field,))
        if not changes:
            return UPDATED if raced else UNCHANGED
        if on_overwrite:
            on_overwrite(key, changes, read)
        try:
            answer = target.patch(key, target.to_wire(changes, current), target.version_of(current))
        except ConflictError:  # the target honours If-Match: the object moved since we read it
            if on_concurrent_edit:
                on_concurrent_edit(key, {"DataVersion": (target.version_of(current), "a newer one (If-Match refused)")})
            raced = True
            continue
        _check_stored(target, key, changes, answer, key_field)
        after = target.view(answer)
        # Fields we did not send cannot have moved by our write: if they did, someone wrote in between.
        moved = {name: (read.get(name), after.get(name)) for name in set(read) | set(after)
                 if name not in changes and name not in (key_field, "DataVersion")
                 and normalise(read.get(name)) != normalise(after.get(name))}
        if not moved:
            return UPDATED
        if on_concurrent_edit:
            on_concurrent_edit(key, moved)
        raced = True
        if not differences(payload, after, ignore=(key_field,)):
            return UPDATED  # the edit was to fields we do not own: theirs stays, ours is written
    raise ConflictError(f"{target.entity} {key} in {target.system} kept changing while Ledgerlink wrote it "
                        f"({MAX_CONFLICT_ROUNDS} rounds); it will be read and written again on retry")
