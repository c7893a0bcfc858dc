"""CRM stand-in: a REST JSON API with bearer tokens, cursor paging, ``updated_since`` and rate limits.

Resources (``RESOURCES``) live under ``/api/v1/<resource>``. Every record carries server-managed fields
``id`` (allocated by the CRM), ``created_at``, ``updated_at`` (ISO 8601 in UTC with microseconds, strictly
increasing across the server, so it is a safe watermark), ``archived``, plus ``external_id`` (the
integrating system's key, unique per resource) and any other JSON fields.

Endpoints (all need ``Authorization: Bearer <token>``; 401 otherwise)::

    GET    /api/v1/<res>?updated_since=<iso>&page_size=N&cursor=<c>&include_archived=true
           -> 200 {"data": [...], "next_cursor": "..." | null}, ordered by (updated_at, id);
              updated_since is inclusive (>=) and needs a zone; archived records only when asked
    POST   /api/v1/<res>                         -> 201 + Location (409 if external_id is taken)
    GET    /api/v1/<res>/<id>                    -> 200 (archived ones too)
    PATCH  /api/v1/<res>/<id>                    -> 200, shallow merge of the fields sent
    DELETE /api/v1/<res>/<id>                    -> 204, removed outright
    GET    /api/v1/<res>/by-external-id/<ext>    -> 200
    PUT    /api/v1/<res>/by-external-id/<ext>    -> 201 created or 200 replaced (free fields replaced whole)
    POST   /api/v1/<res>/<id>/archive            -> 200 (archived=true)
    POST   /api/v1/<res>/<id>/unarchive          -> 200 (archived=false)

Every write bumps ``updated_at``, even one that changes nothing, as most CRMs do: a connector must not
treat its own echo as a change. ``archived`` changes only through archive/unarchive or when a PUT/PATCH
body sets it explicitly.

Errors are ``{"error": {"code": "...", "message": "..."}}``. Each token may make ``rate_limit[0]``
requests per ``rate_limit[1]`` seconds (sliding window); beyond that the answer is 429 with an integer
``Retry-After`` header. The cursor is opaque to clients (base64 of the last seen ``(updated_at, id)``), so a
page sequence stays stable while records change: a record edited mid-paging moves to the end.
"""
from __future__ import annotations

import base64
import binascii
import collections
import hmac
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

from sandbox.httpbase import Response, SandboxHandler, SandboxServer

RESOURCES = ("accounts", "contacts", "owners", "deals", "contract-rates", "products", "billing-figures")
SERVER_FIELDS = ("id", "created_at", "updated_at")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

_PATH = re.compile(
    r"^/api/v1/(?P<res>[a-z-]+)"
    r"(?:/by-external-id/(?P<ext>[^/]+)|/(?P<id>[^/]+)(?:/(?P<action>archive|unarchive))?)?/?$"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    resource    TEXT    NOT NULL,
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    external_id TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    archived    INTEGER NOT NULL DEFAULT 0,
    fields      TEXT    NOT NULL,
    UNIQUE (resource, external_id)
);
CREATE INDEX IF NOT EXISTS records_by_change ON records (resource, updated_at, id);
"""


class CrmError(Exception):
    """An error answered to the client: HTTP status, a stable code and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return Response.json(self.status, {"error": {"code": self.code, "message": self.message}},
                             self.headers)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


class CrmStore:
    """The CRM's records in one SQLite file; every method is thread-safe."""

    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL sync survives a killed process, which is all a stand-in needs; full sync is slow.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT MAX(updated_at) FROM records").fetchone()
        self._last_stamp = datetime.fromisoformat(row[0]) if row[0] else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- helpers; callers hold the lock -------------------------------------------------------------

    def _next_stamp(self) -> str:
        """Now, but strictly after the previous stamp, so ``updated_at`` orders every write."""
        now = datetime.now(timezone.utc)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return _iso(now)

    @staticmethod
    def _to_record(row: sqlite3.Row) -> dict:
        record = json.loads(row["fields"])
        record.update(id=row["id"], external_id=row["external_id"], created_at=row["created_at"],
                      updated_at=row["updated_at"], archived=bool(row["archived"]))
        return record

    def _row(self, resource: str, record_id: int) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM records WHERE resource = ? AND id = ?",
                               (resource, record_id)).fetchone()
        if row is None:
            raise CrmError(404, "not_found", f"no {resource} record with id {record_id}")
        return row

    @staticmethod
    def _split(body: Mapping) -> tuple[str | None, bool | None, dict]:
        """Separate the external id and archived flag from the free fields; server fields are dropped."""
        fields = {k: v for k, v in body.items() if k not in SERVER_FIELDS}
        external_id = fields.pop("external_id", None)
        if external_id is not None and not isinstance(external_id, str | int):
            raise CrmError(400, "invalid_field", "external_id must be a string")
        archived = fields.pop("archived", None)
        if archived is not None and not isinstance(archived, bool):
            raise CrmError(400, "invalid_field", "archived must be true or false")
        return (str(external_id) if external_id is not None else None), archived, fields

    def _insert(self, resource: str, external_id: str | None, archived: bool, fields: dict) -> int:
        stamp = self._next_stamp()
        try:
            cursor = self._db.execute(
                "INSERT INTO records (resource, external_id, created_at, updated_at, archived, fields)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (resource, external_id, stamp, stamp, int(archived), json.dumps(fields, ensure_ascii=False)),
            )
        except sqlite3.IntegrityError as e:
            raise CrmError(409, "external_id_taken",
                           f"{resource} external_id {external_id!r} already exists") from e
        return cursor.lastrowid

    def _update(self, resource: str, record_id: int, external_id: str | None, archived: bool,
                fields: dict) -> None:
        try:
            self._db.execute(
                "UPDATE records SET external_id = ?, updated_at = ?, archived = ?, fields = ?"
                " WHERE resource = ? AND id = ?",
                (external_id, self._next_stamp(), int(archived), json.dumps(fields, ensure_ascii=False),
                 resource, record_id),
            )
        except sqlite3.IntegrityError as e:
            raise CrmError(409, "external_id_taken",
                           f"{resource} external_id {external_id!r} already exists") from e

    # --- operations ----------------------------------------------------------------------------------

    def create(self, resource: str, body: Mapping) -> dict:
        external_id, archived, fields = self._split(body)
        with self._lock:
            record_id = self._insert(resource, external_id, bool(archived), fields)
            return self._to_record(self._row(resource, record_id))

    def get(self, resource: str, record_id: int) -> dict:
        with self._lock:
            return self._to_record(self._row(resource, record_id))

    def get_by_external_id(self, resource: str, external_id: str) -> dict:
        with self._lock:
            row = self._db.execute("SELECT * FROM records WHERE resource = ? AND external_id = ?",
                                   (resource, external_id)).fetchone()
        if row is None:
            raise CrmError(404, "not_found", f"no {resource} record with external_id {external_id!r}")
        return self._to_record(row)

    def upsert(self, resource: str, external_id: str, body: Mapping) -> tuple[dict, bool]:
        """Create or replace the record with this external id; returns (record, created)."""
        body_external_id, archived, fields = self._split(body)
        if body_external_id is not None and body_external_id != external_id:
            raise CrmError(400, "external_id_mismatch",
                           f"body external_id {body_external_id!r} differs from the URL's {external_id!r}")
        with self._lock:
            row = self._db.execute("SELECT * FROM records WHERE resource = ? AND external_id = ?",
                                   (resource, external_id)).fetchone()
            if row is None:
                record_id = self._insert(resource, external_id, bool(archived), fields)
                return self._to_record(self._row(resource, record_id)), True
            keep_archived = bool(row["archived"]) if archived is None else archived
            self._update(resource, row["id"], external_id, keep_archived, fields)
            return self._to_record(self._row(resource, row["id"])), False

    def patch(self, resource: str, record_id: int, body: Mapping) -> dict:
        external_id, archived, fields = self._split(body)
        with self._lock:
            row = self._row(resource, record_id)
            merged = json.loads(row["fields"])
            merged.update(fields)
            self._update(resource, record_id,
                         row["external_id"] if "external_id" not in body else external_id,
                         bool(row["archived"]) if archived is None else archived, merged)
            return self._to_record(self._row(resource, record_id))

    def set_archived(self, resource: str, record_id: int, archived: bool) -> dict:
        with self._lock:
            row = self._row(resource, record_id)
            self._update(resource, record_id, row["external_id"], archived, json.loads(row["fields"]))
            return self._to_record(self._row(resource, record_id))

    def delete(self, resource: str, record_id: int) -> None:
        with self._lock:
            self._row(resource, record_id)
            self._db.execute("DELETE FROM records WHERE resource = ? AND id = ?", (resource, record_id))

    def page(self, resource: str, *, updated_since: str | None, after: tuple[str, int] | None,
             limit: int, include_archived: bool) -> tuple[list[dict], tuple[str, int] | None]:
        """One page ordered by (updated_at, id); returns the records and the key to continue after."""
        sql = ["SELECT * FROM records WHERE resource = ?"]
        args: list = [resource]
        if updated_since is not None:
            sql.append("AND updated_at >= ?")
            args.append(updated_since)
        if after is not None:
            sql.append("AND (updated_at > ? OR (updated_at = ? AND id > ?))")
            args += [after[0], after[0], after[1]]
        if not include_archived:
            sql.append("AND archived = 0")
        sql.append("ORDER BY updated_at, id LIMIT ?")
        args.append(limit + 1)  # one extra row tells whether another page exists
        with self._lock:
            rows = self._db.execute(" ".join(sql), args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = (rows[-1]["updated_at"], rows[-1]["id"]) if more and rows else None
        return [self._to_record(r) for r in rows], last


class SlidingWindowLimiter:
    """At most ``limit`` requests per ``per_seconds`` for each key; thread-safe."""

    def __init__(self, limit: int, per_seconds: float):
        self.limit = limit
        self.per_seconds = per_seconds
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def admit(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it would be admitted."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen[key]
            while seen and seen[0] <= now - self.per_seconds:
                seen.popleft()
            if len(seen) >= self.limit:
                return seen[0] + self.per_seconds - now
            seen.append(now)
            return 0.0


def encode_cursor(after: tuple[str, int]) -> str:
    raw = json.dumps({"u": after[0], "i": after[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return str(data["u"]), int(data["i"])
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        raise CrmError(400, "invalid_cursor", "cursor is not one this server issued") from e


class CrmState:
    """What a CRM server holds: the store, the tokens it accepts and its rate limiter."""

    def __init__(self, store: CrmStore, tokens: Mapping[str, str], limiter: SlidingWindowLimiter):
        self.store = store
        self.tokens = dict(tokens)
        self.limiter = limiter


class CrmHandler(SandboxHandler):
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms (delayed ACK)
    # for every answer.
    disable_nagle_algorithm = True
    server: SandboxServer

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        state: CrmState = self.server.state
        try:
            token = self._authenticate(state)
            wait = state.limiter.admit(token)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                raise CrmError(429, "rate_limited",
                               f"more than {state.limiter.limit} requests in {state.limiter.per_seconds:g} s;"
                               f" retry after {retry_after} s",
                               {"Retry-After": str(retry_after)})
            return self._serve(state.store, method, path, query, body)
        except CrmError as e:
            return e.response()

    def _authenticate(self, state: CrmState) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            for known in state.tokens:
                if hmac.compare_digest(known.encode(), token.encode()):
                    return known
        raise CrmError(401, "unauthorized", "a valid bearer token is required",
                       {"WWW-Authenticate": 'Bearer realm="crm"'})

    def _serve(self, store: CrmStore, method: str, path: str, query: dict[str, list[str]],
               body: bytes) -> Response:
        match = _PATH.match(path)
        if not match or match["res"] not in RESOURCES:
            raise CrmError(404, "not_found", f"no resource at {path}; known: {', '.join(RESOURCES)}")
        resource = match["res"]
        if match["ext"] is not None:
            external_id = unquote(match["ext"])
            if method == "GET":
                return Response.json(200, store.get_by_external_id(resource, external_id))
            if method == "PUT":
                record, created = store.upsert(resource, external_id, _json_object(body))
                return Response.json(201 if created else 200, record, _location(resource, record))
            raise _not_allowed(method, path)
        if match["id"] is None:
            if method == "GET":
                return self._list(store, resource, query)
            if method == "POST":
                record = store.create(resource, _json_object(body))
                return Response.json(201, record, _location(resource, record))
            raise _not_allowed(method, path)
        try:
            record_id = int(match["id"])
        except ValueError as e:
            raise CrmError(404, "not_found", f"no {resource} record with id {match['id']!r}") from e
        if match["action"]:
            if method != "POST":
                raise _not_allowed(method, path)
            return Response.json(200, store.set_archived(resource, record_id, match["action"] == "archive"))
        if method == "GET":
            return Response.json(200, store.get(resource, record_id))
        if method == "PATCH":
            return Response.json(200, store.patch(resource, record_id, _json_object(body)))
        if method == "DELETE":
            store.delete(resource, record_id)
            return Response(204)
        raise _not_allowed(method, path)

    @staticmethod
    def _list(store: CrmStore, resource: str, query: dict[str, list[str]]) -> Response:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        since = None
        if one("updated_since"):
            try:
                moment = datetime.fromisoformat(one("updated_since"))
            except ValueError as e:
                raise CrmError(400, "invalid_parameter",
                               "updated_since must be ISO 8601 with a zone, e.g. 2026-01-31T00:00:00+00:00"
                               " (encode '+' as %2B)") from e
            if moment.tzinfo is None:
                raise CrmError(400, "invalid_parameter",
                               "updated_since needs a zone (e.g. +00:00 or Z); '+' must be sent as %2B")
            since = _iso(moment)
        try:
            page_size = int(one("page_size") or DEFAULT_PAGE_SIZE)
        except ValueError as e:
            raise CrmError(400, "invalid_parameter", "page_size must be an integer") from e
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise CrmError(400, "invalid_parameter", f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        after = decode_cursor(one("cursor")) if one("cursor") else None
        include_archived = (one("include_archived") or "false").lower() in ("true", "1")
        records, last = store.page(resource, updated_since=since, after=after, limit=page_size,
                                   include_archived=include_archived)
        return Response.json(200, {"data": records, "next_cursor": encode_cursor(last) if last else None})


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CrmError(400, "invalid_json", f"body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise CrmError(400, "invalid_json", "body must be a JSON object")
    return data


def _location(resource: str, record: dict) -> dict[str, str]:
    return {"Location": f"/api/v1/{resource}/{quote(str(record['id']))}"}


def _not_allowed(method: str, path: str) -> CrmError:
    return CrmError(405, "method_not_allowed", f"{method} is not allowed on {path}")


def make_server(host: str, port: int, db_path: Path | str,
                tokens: Mapping[str, str] | None = None,
                rate_limit: tuple[int, float] = (20, 1.0)) -> SandboxServer:
    """A CRM server (not yet serving: call ``start_in_thread()`` or ``serve_forever()``).

    ``tokens`` maps each accepted bearer token to the client it belongs to; ``rate_limit`` is
    (requests, per seconds) for each token.
    """
    tokens = tokens if tokens is not None else {"sandbox-crm-token": "ledgerlink"}
    state = CrmState(CrmStore(db_path), tokens, SlidingWindowLimiter(*rate_limit))
    return SandboxServer((host, port), CrmHandler, state=state)


def seed(db_path: Path | str, records: Mapping[str, Iterable[Mapping]]) -> int:
    """Upsert records by external id straight into the CRM's database; returns how many were written.

    ``records`` maps a resource name to its records; each needs an ``external_id``.
    """
    store = CrmStore(db_path)
    written = 0
    try:
        for resource, items in records.items():
            if resource not in RESOURCES:
                raise ValueError(f"unknown CRM resource {resource!r}; known: {', '.join(RESOURCES)}")
            for item in items:
                if item.get("external_id") is None:
                    raise ValueError(f"a seeded {resource} record needs an external_id: {item!r}")
                store.upsert(resource, str(item["external_id"]), item)
                written += 1
    finally:
        store.close()
    return written
