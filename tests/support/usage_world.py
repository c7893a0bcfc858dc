"""A billing world for usage tests (the sandbox generator, no calls of its own) and CDR files written as each
source's profile says, for the corpus of bad and good files."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import sqlalchemy as sa

from ledgerlink.billing.usage import read_plans
from ledgerlink.usage.profiles import CDR_COLUMNS, FileProfile
from sandbox.generator import generate_billing

PERIOD = "2026-11"


def billing_world(folder: Path, customers: int = 40) -> tuple[sa.Engine, list[str]]:
    """A billing SQLite database (the generator's, without generated usage) and the customers with a contract plan
    in both 2026-10 and 2026-11, sorted."""
    path = folder / "billing.db"
    generate_billing(path, seed=7, customers=customers, usage_rows=0)
    engine = sa.create_engine(f"sqlite:///{path}")
    plans = read_plans(engine)
    active = sorted(c for c in plans.by_customer if plans.for_period(c, "2026-10") and plans.for_period(c, PERIOD))
    return engine, active


def call(number: int, customer: str, started: str = "2026-11-03T10:00:00+03:00", duration="600",
         participants="3", bridge: str = "BR01", **changes) -> dict:
    row = {"call_id": f"{bridge}-{number:05d}", "bridge_id": bridge, "customer_ref": customer,
           "started_at": started, "ended_at": started, "duration_seconds": str(duration),
           "participants": str(participants), "dial_in_number": "+74950000000"}
    row.update(changes)
    return row


def cdr_bytes(rows, *, encoding: str = "utf-8", separator: str = ",", newline: str = "\r\n", bom: bool = False,
              columns=CDR_COLUMNS) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=separator, lineterminator=newline,
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def drop(folder: Path, name: str, data: bytes, *, checksum: bool = True) -> Path:
    """Put a file in the landing folder as a sender does: under a hidden name, renamed when complete, then its
    checksum file."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.part"
    partial.write_bytes(data)
    partial.replace(folder / name)
    if checksum:
        (folder / f"{name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return folder / name


def usage_rows(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
            "SELECT call_id, customer_id, started_at, duration_seconds, participants, source_file FROM usage "
            "WHERE source_file IS NOT NULL"))}


SEMICOLON_DMY = FileProfile("semicolon, comma decimals, DD.MM.YYYY, cp1254", "semi_*.csv", "cp1254", separator=";",
                            decimal=",", date_style="dmy", zone=__import__("ledgerlink.usage", fromlist=["x"]).PERIOD_ZONE)
