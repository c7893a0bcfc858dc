"""GİB's e-Fatura user list, as an integrator serves it, cached for the day: a recipient on it gets e-Fatura,
anyone else e-Arşiv. The list changes slowly and is large in real life; asking once a day is what integrators
expect."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

from ledgerlink.errors import TransientError

log = logging.getLogger(__name__)


class UserListCache:
    """The list's identifiers (VKN/TCKN) in a JSON file, fetched again when it is not from today (UTC)."""

    def __init__(self, path: Path, fetch: Callable[[], list[dict]], today: Callable[[], date] | None = None):
        self.path = path
        self.fetch = fetch
        self.today = today or (lambda: datetime.now(timezone.utc).date())

    def registered(self) -> frozenset[str]:
        cached = self._read()
        if cached is not None and cached["fetched_on"] == self.today().isoformat():
            return frozenset(cached["identifiers"])
        try:
            identifiers = sorted({str(u["identifier"]).strip() for u in self.fetch()})
        except TransientError as e:
            if cached is None:
                raise
            # Yesterday's list beats no e-invoices today: registrations change slowly, and a recipient who joined
            # since gets an e-Arşiv invoice, which GİB accepts; the next run fetches again.
            log.warning("GİB e-Fatura user list not refreshed (%s): using the list of %s", e, cached["fetched_on"])
            return frozenset(cached["identifiers"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"fetched_on": self.today().isoformat(), "identifiers": identifiers}),
                           encoding="utf-8")
        os.replace(partial, self.path)  # a reader never sees half a file
        log.info("GİB e-Fatura user list fetched: %d registered users (cached for %s)", len(identifiers),
                 self.today())
        return frozenset(identifiers)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
