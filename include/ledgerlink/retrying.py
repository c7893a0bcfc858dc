"""Transient failures retried inside a task, item by item, within a budget per run.

Airflow's task retry reruns a whole step: with one task attempt spent per transient fault, four short outages
in one night failed the run although every one of them healed in seconds. Here each item is retried with
exponential backoff, or after exactly the server's ``Retry-After`` (never sooner: a server that asks for longer
than ``max_wait`` ends the item's retries instead, and Airflow's task retry comes later); the task fails (and Airflow retries it later) only when
one item keeps failing or the run's budget is spent, i.e. when the system stays down.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ledgerlink.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryBudget:
    """``call(what, fn)`` runs ``fn``; a :class:`TransientError` is retried up to ``per_item`` times, at most
    ``per_run`` retries in all. ``attempts_of_last_call`` tells the caller whether an answer may have been lost
    (an earlier attempt of the same item may have reached the target).

    Safe to share between the threads of a session pool: the run's retry count is kept under a lock, and
    ``attempts_of_last_call`` is the calling thread's own last call."""

    def __init__(self, *, per_item: int = 4, per_run: int = 25, first_wait: float = 0.5, max_wait: float = 15.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.per_item = per_item
        self.per_run = per_run
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.sleep = sleep
        self.retries = 0
        self._lock = threading.Lock()
        self._thread = threading.local()

    @property
    def attempts_of_last_call(self) -> int:
        return getattr(self._thread, "attempts", 0)

    @attempts_of_last_call.setter
    def attempts_of_last_call(self, value: int) -> None:
        self._thread.attempts = value

    def call(self, what: str, fn: Callable[[], T], retry_on: tuple[type[TransientError], ...] = (TransientError,)) -> T:
        """``retry_on``: the transient errors worth retrying here (others propagate at once)."""
        self.attempts_of_last_call = 0
        while True:
            self.attempts_of_last_call += 1
            try:
                return fn()
            except retry_on as error:
                told_to_wait_longer = error.retry_after is not None and error.retry_after > self.max_wait
                with self._lock:
                    spent = self.retries >= self.per_run
                    if not spent and not told_to_wait_longer and self.attempts_of_last_call <= self.per_item:
                        self.retries += 1
                if self.attempts_of_last_call > self.per_item or spent or told_to_wait_longer:
                    raise TransientError(
                        f"{what}: {error} (still failing after {self.attempts_of_last_call} attempt(s), "
                        f"{self.retries} retries this run). The system looks down: will retry (Airflow retries "
                        f"the task, then the next run); nothing lost: the ledger keeps it planned, and nothing is "
                        f"sent twice", retry_after=error.retry_after) from error
                wait = error.retry_after if error.retry_after is not None else \
                    min(self.max_wait, self.first_wait * 2 ** (self.attempts_of_last_call - 1))
                log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", what, error, wait,
                            self.attempts_of_last_call + 1, self.per_item + 1)
                self.sleep(wait)
