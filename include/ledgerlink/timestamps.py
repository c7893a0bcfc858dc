"""ISO 8601 timestamps as moments: what watermarks and source ``updated_at`` values are compared by.

Light on purpose (no pandas): the ledger and change tracking both read it.
"""
from __future__ import annotations

from datetime import datetime, timezone


def moment(value: str) -> datetime:
    """An ISO timestamp as an aware datetime; a naive one is UTC, as the sources store it. ValueError if it is
    not one."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
