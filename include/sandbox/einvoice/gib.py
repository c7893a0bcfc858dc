"""A simulated GİB (Turkish Revenue Administration) register of e-invoices, kept in one SQLite file.

What it checks on ``submit`` (a UBL-TR 1.2 ``Invoice`` document, parsed with defusedxml):

* the XML parses and is a UBL ``Invoice`` with ``cbc:UUID`` (a valid UUID, the ETTN), ``cbc:ID``,
  ``cbc:CustomizationID`` = ``TR1.2``, ``cbc:ProfileID`` in ``PROFILES`` and a known ``cbc:InvoiceTypeCode``;
  otherwise status 1150 (schematron failure);
* the number (``cbc:ID``) matches ``^[A-Z0-9]{3}20\\d{2}\\d{9}$`` (series, year, sequence); otherwise 1150;
* the UUID was never registered, through any integrator; otherwise 1163 (already registered);
* the number was never used by the same supplier (VKN/TCKN from ``AccountingSupplierParty``); otherwise
  1150 with a message saying so. It is not 1163 on purpose: 1163 tells a client "this very invoice is in",
  a reused number with another UUID is a different invoice and a terminal error.

GİB also keeps the register of e-Fatura users (``register_user``, ``users``): a recipient on it gets e-Fatura
(TEMELFATURA, TICARIFATURA); anyone else an e-Arşiv invoice. Integrators hand that list to their clients.

An accepted invoice is queued (1000); a later status query moves it to 1300 (done) after
``queued_polls`` queries that still answer 1000, so clients have to poll. Several integrator processes
may share one database file: registration is one SQLite transaction guarded by the UNIQUE constraints.
UUIDs are compared case-insensitively and answered in lower case.
"""
from __future__ import annotations

import re
import sqlite3
import threading
import uuid as uuid_lib
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

UBL_INVOICE = "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS = {"cbc": CBC, "cac": CAC}

STATUS_QUEUED = 1000
STATUS_SCHEMA_ERROR = 1150
STATUS_ALREADY_REGISTERED = 1163
STATUS_DONE = 1300
MESSAGES = {
    STATUS_QUEUED: "ZARF KUYRUĞA EKLENDİ",
    STATUS_SCHEMA_ERROR: "SCHEMATRON KONTROL SONUCU HATALI",
    STATUS_ALREADY_REGISTERED: "GÖNDERİLEN ZARF SİSTEMDE DAHA ÖNCE KAYITLI OLAN BİR FATURAYI İÇERMEKTEDİR",
    STATUS_DONE: "BAŞARIYLA TAMAMLANDI",
}

PROFILES = frozenset({"TEMELFATURA", "TICARIFATURA", "EARSIVFATURA"})
INVOICE_TYPE_CODES = frozenset({
    "SATIS", "IADE", "TEVKIFAT", "TEVKIFATIADE", "ISTISNA", "OZELMATRAH", "IHRACKAYITLI", "SGK",
    "KOMISYONCU", "KONAKLAMAVERGISI",
})
INVOICE_NUMBER = re.compile(r"^[A-Z0-9]{3}20\d{2}\d{9}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invoices (
    uuid         TEXT PRIMARY KEY,
    supplier_id  TEXT NOT NULL,
    number       TEXT NOT NULL,
    profile      TEXT NOT NULL,
    type_code    TEXT NOT NULL,
    integrator   TEXT NOT NULL,
    sender       TEXT NOT NULL,
    status       INTEGER NOT NULL,
    polls        INTEGER NOT NULL DEFAULT 0,
    received_at  TEXT NOT NULL,
    document     BLOB NOT NULL,
    UNIQUE (supplier_id, number)
);
CREATE TABLE IF NOT EXISTS users (
    identifier   TEXT PRIMARY KEY,
    alias        TEXT NOT NULL,
    title        TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid         TEXT,
    number       TEXT,
    integrator   TEXT NOT NULL,
    code         INTEGER NOT NULL,
    message      TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
"""


class GibRejection(Exception):
    """GİB refused the invoice: ``code`` is the GİB status (1150, 1163), ``uuid`` when it was readable."""

    def __init__(self, code: int, message: str, uuid: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.uuid = uuid


@dataclass(frozen=True)
class GibStatus:
    uuid: str
    number: str
    status: int
    message: str
    integrator: str
    sender: str


@dataclass(frozen=True)
class _Invoice:
    uuid: str
    number: str
    profile: str
    type_code: str
    supplier_id: str


def _text(root: Element, path: str) -> str:
    node = root.find(path, NS)
    return (node.text or "").strip() if node is not None else ""


def read_invoice(ubl: bytes) -> _Invoice:
    """The fields GİB checks, or ``GibRejection(1150)`` saying what is wrong."""
    try:
        root = fromstring(ubl)
    except (ParseError, DefusedXmlException) as e:
        raise GibRejection(STATUS_SCHEMA_ERROR, f"{MESSAGES[STATUS_SCHEMA_ERROR]}: XML okunamadı ({e})") from e
    if root.tag != UBL_INVOICE:
        raise GibRejection(STATUS_SCHEMA_ERROR, f"{MESSAGES[STATUS_SCHEMA_ERROR]}: kök eleman {root.tag}, "
                                                f"beklenen {UBL_INVOICE}")
    invoice_uuid = _text(root, "cbc:UUID")
    problems = []
    for name in ("UUID", "ID", "CustomizationID", "ProfileID", "InvoiceTypeCode"):
        if not _text(root, f"cbc:{name}"):
            problems.append(f"cbc:{name} eksik")
    if invoice_uuid:
        try:
            uuid_lib.UUID(invoice_uuid)
        except ValueError:
            problems.append(f"cbc:UUID geçersiz: {invoice_uuid!r}")
    customization = _text(root, "cbc:CustomizationID")
    if customization and customization != "TR1.2":
        problems.append(f"cbc:CustomizationID TR1.2 olmalı, gelen {customization!r}")
    profile = _text(root, "cbc:ProfileID")
    if profile and profile not in PROFILES:
        problems.append(f"cbc:ProfileID geçersiz: {profile!r} (izin verilen: {', '.join(sorted(PROFILES))})")
    type_code = _text(root, "cbc:InvoiceTypeCode")
    if type_code and type_code not in INVOICE_TYPE_CODES:
        problems.append(f"cbc:InvoiceTypeCode geçersiz: {type_code!r}")
    number = _text(root, "cbc:ID")
    if number and not INVOICE_NUMBER.match(number):
        problems.append(f"cbc:ID {number!r} ABC2009123456789 formatında olmalıdır")
    if problems:
        raise GibRejection(STATUS_SCHEMA_ERROR, f"{MESSAGES[STATUS_SCHEMA_ERROR]}: {'; '.join(problems)}",
                           invoice_uuid or None)
    supplier_id = ""
    for node in root.findall("cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID", NS):
        if node.get("schemeID") in ("VKN", "TCKN") and (node.text or "").strip():
            supplier_id = node.text.strip()
            break
    return _Invoice(invoice_uuid.lower(), number, profile, type_code, supplier_id)


class Gib:
    """The register shared by every integrator; thread-safe, and safe across processes on one file."""

    def __init__(self, db_path: Path | str, queued_polls: int = 0):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.queued_polls = queued_polls
        self._lock = threading.Lock()
        with self._lock, closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        # WAL with NORMAL sync survives a killed process, which is all a stand-in needs; full sync is slow.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def submit(self, ubl: bytes, *, integrator: str, sender: str) -> GibStatus:
        """Register one invoice; returns its status (1000) or raises ``GibRejection``."""
        try:
            invoice = read_invoice(ubl)
        except GibRejection as e:
            self._log_rejection(e, None, integrator)
            raise
        now = datetime.now(timezone.utc).isoformat()
        with self._lock, closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM invoices WHERE uuid = ?", (invoice.uuid,)).fetchone():
                    raise GibRejection(STATUS_ALREADY_REGISTERED, MESSAGES[STATUS_ALREADY_REGISTERED],
                                       invoice.uuid)
                if db.execute("SELECT 1 FROM invoices WHERE supplier_id = ? AND number = ?",
                              (invoice.supplier_id, invoice.number)).fetchone():
                    raise GibRejection(STATUS_SCHEMA_ERROR,
                                       f"{MESSAGES[STATUS_SCHEMA_ERROR]}: fatura numarası {invoice.number} "
                                       "daha önce kullanılmış", invoice.uuid)
                db.execute(
                    "INSERT INTO invoices (uuid, supplier_id, number, profile, type_code, integrator, sender,"
                    " status, received_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (invoice.uuid, invoice.supplier_id, invoice.number, invoice.profile, invoice.type_code,
                     integrator, sender, STATUS_QUEUED, now, ubl),
                )
                db.execute("COMMIT")
            except GibRejection as e:
                db.execute("ROLLBACK")
                self._record_rejection(db, e, invoice.number, integrator)
                raise
        return GibStatus(invoice.uuid, invoice.number, STATUS_QUEUED, MESSAGES[STATUS_QUEUED], integrator, sender)

    def status(self, invoice_uuid: str, *, integrator: str | None = None,
               sender: str | None = None) -> GibStatus | None:
        """The invoice's status as that integrator (and sender) sees it; a query moves it along.

        ``None`` when unknown, or when it was registered through another integrator or sender.
        """
        key = invoice_uuid.strip().lower()
        with self._lock, closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM invoices WHERE uuid = ?", (key,)).fetchone()
            if row is None or (integrator is not None and row["integrator"] != integrator) \
                    or (sender is not None and row["sender"] != sender):
                db.execute("ROLLBACK")
                return None
            status = row["status"]
            if status == STATUS_QUEUED:
                if row["polls"] >= self.queued_polls:
                    status = STATUS_DONE
                db.execute("UPDATE invoices SET status = ?, polls = polls + 1 WHERE uuid = ?", (status, key))
            db.execute("COMMIT")
        return GibStatus(row["uuid"], row["number"], status, MESSAGES[status], row["integrator"], row["sender"])

    def peek(self, invoice_uuid: str) -> GibStatus | None:
        """The stored status without moving it along (for tests and demos)."""
        with self._lock, closing(self._connect()) as db:
            row = db.execute("SELECT * FROM invoices WHERE uuid = ?", (invoice_uuid.strip().lower(),)).fetchone()
        if row is None:
            return None
        return GibStatus(row["uuid"], row["number"], row["status"], MESSAGES[row["status"]], row["integrator"],
                         row["sender"])

    def register_user(self, identifier: str, title: str, alias: str | None = None) -> None:
        """Put a VKN/TCKN on the e-Fatura user list (again: nothing changes)."""
        with self._lock, closing(self._connect()) as db:
            db.execute("INSERT OR IGNORE INTO users (identifier, alias, title, registered_at) VALUES (?, ?, ?, ?)",
                       (identifier, alias or f"urn:mail:defaultpk@{identifier}.sandbox", title,
                        datetime.now(timezone.utc).isoformat()))

    def users(self) -> list[dict]:
        """The e-Fatura user list: identifier (VKN/TCKN), alias, title, registered_at."""
        with self._lock, closing(self._connect()) as db:
            return [dict(r) for r in db.execute("SELECT * FROM users ORDER BY identifier")]

    def rejections(self) -> list[dict]:
        """Every rejected submission, oldest first."""
        with self._lock, closing(self._connect()) as db:
            return [dict(r) for r in db.execute("SELECT * FROM rejections ORDER BY seq")]

    def _log_rejection(self, rejection: GibRejection, number: str | None, integrator: str) -> None:
        with self._lock, closing(self._connect()) as db:
            self._record_rejection(db, rejection, number, integrator)

    @staticmethod
    def _record_rejection(db: sqlite3.Connection, rejection: GibRejection, number: str | None,
                          integrator: str) -> None:
        db.execute("INSERT INTO rejections (uuid, number, integrator, code, message, received_at)"
                   " VALUES (?, ?, ?, ?, ?, ?)",
                   (rejection.uuid, number, integrator, rejection.code, rejection.message,
                    datetime.now(timezone.utc).isoformat()))
