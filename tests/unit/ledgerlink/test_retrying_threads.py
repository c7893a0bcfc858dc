"""RetryBudget shared by the threads of a session pool: one run's budget, each thread's own attempt count."""
from __future__ import annotations

import threading

import pytest

from ledgerlink.errors import TransientError
from ledgerlink.retrying import RetryBudget


def test_each_thread_sees_its_own_attempts_and_the_run_budget_is_shared():
    budget = RetryBudget(per_item=3, per_run=5, sleep=lambda _: None)
    barrier, in_first_attempt = threading.Barrier(4), threading.Barrier(4, timeout=10)
    seen, failed = {}, []

    def item(number: int) -> None:
        failures = {"left": number % 2 + 1}  # items fail once or twice, then succeed

        def send() -> str:
            if failures["left"] == number % 2 + 1:
                in_first_attempt.wait()  # every thread inside its first attempt at once
            if failures["left"]:
                failures["left"] -= 1
                raise TransientError("503")
            return "created"

        barrier.wait()
        try:
            budget.call(f"item {number}", send)
            seen[number] = budget.attempts_of_last_call
        except TransientError:
            failed.append(number)

    threads = [threading.Thread(target=item, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 6 retries wanted, 5 in the budget: exactly one item is refused its last retry, and none counted twice.
    assert budget.retries == 5 and len(failed) == 1
    assert all(seen[n] == n % 2 + 2 for n in seen)  # each thread's own count, not another thread's
    with pytest.raises(TransientError, match="5 retries this run"):
        budget.call("one more", lambda: (_ for _ in ()).throw(TransientError("503")))
