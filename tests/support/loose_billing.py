"""A billing SQLite database whose tables declare no keys (many real ones do): duplicates and orphans can happen."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def drop_keys(billing_db: Path, tables=("invoice_lines", "invoices")) -> None:
    """Rebuild these tables without primary keys or NOT NULL constraints, rows kept."""
    with sqlite3.connect(billing_db) as db:
        for table in tables:
            db.execute(f"CREATE TABLE {table}_loose AS SELECT * FROM {table}")
            db.execute(f"DROP TABLE {table}")
            db.execute(f"ALTER TABLE {table}_loose RENAME TO {table}")
