"""Sending numbered invoices through their route of integrators, with failover that never registers twice.

The rules, per invoice (its ETTN is fixed in the ledger before the first send, so every integrator and GİB see
the same identity):

1. Every request is recorded in the ledger before it leaves, with its answer (or its absence) after.
2. An invoice goes to the first integrator of its route (primary, then fallback) that has not said "not
   received". Sending the same ETTN to the *same* integrator again is always safe: GİB answers 1163 for a UUID
   it holds, and we then ask who holds it.
3. A send without an answer (timeout, dropped connection, 5xx) leaves the invoice *in doubt* at that
   integrator: it may have taken it ("accepted but response lost"). Nothing else is tried until that
   integrator, asked for the ETTN's status, answers: it holds it (the invoice is carried there) or definitely
   not (then, and only then, the next integrator of the route may carry it). While it cannot answer, the
   invoice waits, in doubt, for the next pass or run. "Not received" is definite only once the request cannot
   still be on its way: after an HTTP answer (even a 5xx), at once; after silence (a timeout, a dropped
   connection), only ``settle_seconds`` after the send began, so a slow integrator that registers late is
   found holding the invoice instead of racing the fallback to GİB.
4. A request that never left (connection refused, 429) is definitely not received.
5. An integrator that keeps failing is skipped for a while for invoices that never went to it (for those,
   "not received" is certain from our own record), so a down primary costs one failed call, not one per
   invoice.

GİB itself refuses a second registration of a UUID (1163): even a slow integrator that registers late cannot
make an invoice count twice, and the late one's 1163 is what we see, never a second invoice.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ledgerlink.einvoice.clients import (ACCEPTED, DUPLICATE, NOT_RECEIVED, QUEUED, REJECTED, Answer, RateLimited,
                                         Unanswered)
from ledgerlink.errors import TransientError
from ledgerlink.ledger.einvoices import (ACCEPTED as S_ACCEPTED, IN_DOUBT, NUMBERED, QUEUED as S_QUEUED,
                                         REJECTED as S_REJECTED, EInvoiceRegister)
from ledgerlink.retrying import RetryBudget

log = logging.getLogger(__name__)
STATE_OF = {QUEUED: S_QUEUED, ACCEPTED: S_ACCEPTED}
HANDED_OVER, WAITING = "handed_over", "waiting"


@dataclass
class Breaker:
    """An integrator that failed ``threshold`` times in a row is skipped for ``cooldown`` seconds."""

    threshold: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failures: Counter = field(default_factory=Counter)
    _open_until: dict = field(default_factory=dict)

    def is_open(self, integrator: str) -> bool:
        return self._open_until.get(integrator, 0.0) > self.clock()

    def failed(self, integrator: str) -> None:
        self._failures[integrator] += 1
        if self._failures[integrator] >= self.threshold:
            if not self.is_open(integrator):
                log.warning("%s failed %d times in a row: skipped for %.0f s for invoices never sent to it",
                            integrator, self._failures[integrator], self.cooldown)
            self._open_until[integrator] = self.clock() + self.cooldown

    def answered(self, integrator: str) -> None:
        self._failures[integrator] = 0
        self._open_until.pop(integrator, None)


class Dispatcher:
    """Moves invoices of the register along their routes. ``clients``: integrator name → client (send, status);
    ``document_of(invoice_row)`` → the UBL bytes. Outcomes are counted in ``outcomes``."""

    def __init__(self, register: EInvoiceRegister, clients: Mapping[str, object], *, run_id: str | None,
                 retry: RetryBudget | None = None, breaker: Breaker | None = None, status_tries: int = 3,
                 status_wait: float = 0.2, settle_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep):
        self.register, self.clients, self.run_id = register, clients, run_id
        self.retry = retry or RetryBudget()
        self.breaker = breaker or Breaker()
        self.status_tries, self.status_wait, self.sleep = status_tries, status_wait, sleep
        self.settle_seconds = settle_seconds
        self.outcomes: Counter = Counter()

    # one call, recorded ------------------------------------------------------------------------------------------
    def _call(self, invoice: dict, integrator: str, action: str, call: Callable[[], Answer]) -> Answer:
        """One request, in the ledger before it leaves and with its answer after; 429 retried after its
        Retry-After (the request never reached the integrator's logic). Raises Unanswered."""
        def attempt() -> Answer:
            attempt_id = self.register.begin_attempt(invoice["invoice_id"], integrator, action, self.run_id)
            try:
                answer = call()
            except Unanswered as e:
                self.register.finish_attempt(attempt_id, "rate_limited" if isinstance(e, RateLimited) else
                                             "no_answer" if e.reached else "not_sent", http_status=e.http_status,
                                             message=str(e))
                if not isinstance(e, RateLimited):
                    self.breaker.failed(integrator)
                raise
            self.breaker.answered(integrator)
            self.register.finish_attempt(attempt_id, answer.outcome, http_status=answer.http_status,
                                         integrator_code=answer.code, gib_status=answer.gib_status,
                                         message=answer.message)
            return answer

        what = f"invoice {invoice['invoice_id']} ({invoice['number']}) {action} via {integrator}"
        return self.retry.call(what, attempt, retry_on=(RateLimited,))

    # status -----------------------------------------------------------------------------------------------------
    def ask(self, invoice: dict, integrator: str) -> Answer | None:
        """The integrator's answer about the invoice's ETTN, asked up to ``status_tries`` times; None when it
        cannot say."""
        client = self.clients[integrator]
        for attempt in range(1, self.status_tries + 1):
            try:
                return self._call(invoice, integrator, "status", lambda: client.status(invoice["ettn"]))
            except Unanswered as e:
                log.info("invoice %s: %s cannot say yet whether it holds %s (%s)", invoice["invoice_id"], integrator,
                         invoice["ettn"], e)
                if attempt < self.status_tries:
                    self.sleep(self.status_wait * attempt)
        return None

    def _carried(self, invoice: dict, integrator: str, answer: Answer) -> str:
        state = STATE_OF[answer.outcome]
        self.register.update(invoice["invoice_id"], state=state, carrier=integrator, in_doubt_at=None,
                             gib_status=answer.gib_status, integrator_code=answer.code, message=answer.message)
        log.info("invoice %s (%s) is at GİB through %s: %s %s", invoice["invoice_id"], invoice["number"],
                 integrator, answer.gib_status, answer.message)
        return state

    def _rejected(self, invoice: dict, integrator: str, answer: Answer, message: str | None = None) -> str:
        text = message or answer.message
        self.register.update(invoice["invoice_id"], state=S_REJECTED, carrier=integrator, in_doubt_at=None,
                             gib_status=answer.gib_status, integrator_code=answer.code, message=text)
        log.warning("invoice %s (%s) REJECTED through %s: integrator code %s, GİB %s: %s. Its number is used; "
                    "billing must issue a new invoice.", invoice["invoice_id"], invoice["number"], integrator,
                    answer.code, answer.gib_status, text)
        return S_REJECTED

    def _holder(self, invoice: dict, route: list[str]) -> tuple[str, Answer] | None:
        """After a 1163: which integrator of the route holds the ETTN (None when none says so)."""
        for integrator in route:
            answer = self.ask(invoice, integrator)
            if answer is not None and answer.outcome in (QUEUED, ACCEPTED):
                return integrator, answer
        return None

    # the state machine ------------------------------------------------------------------------------------------
    @staticmethod
    def next_hop(invoice: dict) -> str:
        """The integrator an unfinished invoice goes to next: where it is in doubt, else the first of its route
        that has not said "not received" (the primary again once all have)."""
        if invoice["in_doubt_at"]:
            return invoice["in_doubt_at"]
        not_received = {i for i in invoice["not_received_by"].split(",") if i}
        route = [i for i in (invoice["primary_integrator"], invoice["fallback_integrator"]) if i]
        return next((i for i in route if i not in not_received), route[0])

    # ----------------------------------------------------------------------------------------
    def advance(self, invoice: dict, document_of: Callable[[dict], bytes], only: str | None = None) -> str:
        """Move one unfinished invoice as far as it goes now; returns its state, or ``HANDED_OVER`` when its next
        integrator is not ``only`` (each integrator's task moves only the invoices going to it, so two tasks
        never move one invoice at once)."""
        invoice_id = invoice["invoice_id"]
        route = [i for i in (invoice["primary_integrator"], invoice["fallback_integrator"]) if i]
        not_received = {i for i in invoice["not_received_by"].split(",") if i}
        in_doubt = invoice["in_doubt_at"]
        while True:
            if only is not None and (in_doubt or self.next_hop({**invoice, "in_doubt_at": None,
                                                                "not_received_by": ",".join(not_received)})) != only:
                return HANDED_OVER
            if in_doubt:
                answer = self.ask(invoice, in_doubt)
                if answer is None:
                    self.register.update(invoice_id, state=IN_DOUBT, in_doubt_at=in_doubt,
                                         not_received_by=",".join(sorted(not_received)))
                    return IN_DOUBT
                if answer.outcome in (QUEUED, ACCEPTED):
                    return self._carried(invoice, in_doubt, answer)
                unsettled = self._unsettled(invoice_id, in_doubt)
                if unsettled > 0:  # a silent send may still be on its way: ask again once it cannot be
                    self.sleep(unsettled)
                    continue
                not_received.add(in_doubt)  # definite: only now may another integrator carry it
                log.info("invoice %s: %s confirms it never received %s", invoice_id, in_doubt, invoice["ettn"])
                in_doubt = None
                self.register.update(invoice_id, state=NUMBERED, in_doubt_at=None,
                                     not_received_by=",".join(sorted(not_received)))
            candidates = [i for i in route if i not in not_received]
            if not candidates:
                # Every integrator of the route said "not received" this time round: start over next pass.
                self.register.update(invoice_id, state=NUMBERED, not_received_by="")
                return NUMBERED
            target = candidates[0]
            if self.breaker.is_open(target) and len(candidates) > 1 \
                    and not self._ever_sent(invoice_id, target, reached_only=True):
                # Never sent there (our record says so before any request leaves): certainly not received.
                not_received.add(target)
                self.register.update(invoice_id, not_received_by=",".join(sorted(not_received)))
                continue
            try:
                answer = self._call(invoice, target, "send",
                                    lambda: self.clients[target].send(invoice["ettn"], invoice["number"],
                                                                      document_of(invoice)))
            except Unanswered as e:
                if e.reached:
                    in_doubt = target  # accepted but the answer lost? ask before anything else
                    self.register.update(invoice_id, state=IN_DOUBT, in_doubt_at=target)
                elif not self._ever_sent(invoice_id, target, reached_only=True):
                    not_received.add(target)
                    self.register.update(invoice_id, not_received_by=",".join(sorted(not_received)))
                else:
                    in_doubt = target  # an earlier attempt there may have landed
                continue
            if answer.outcome in (QUEUED, ACCEPTED):
                return self._carried(invoice, target, answer)
            if answer.outcome == DUPLICATE:
                found = self._holder(invoice, [target] + [i for i in route if i != target])
                if found is not None:
                    return self._carried(invoice, *found)
                return self._rejected(invoice, target, answer,
                                      f"GİB holds ETTN {invoice['ettn']} (1163) but no integrator of the route "
                                      f"says it sent it: check at GİB before anything is sent again")
            if answer.outcome == REJECTED:
                return self._rejected(invoice, target, answer)
            raise AssertionError(f"unexpected answer {answer}")

    def _unsettled(self, invoice_id: str, integrator: str) -> float:
        """Seconds until the last send to the integrator can no longer be on its way (0 after an HTTP answer)."""
        sends = [a for a in self.register.attempts(invoice_id)
                 if a["integrator"] == integrator and a["action"] == "send"]
        if not sends or sends[-1]["http_status"] is not None:
            return 0.0
        started = sends[-1]["started_at"]
        started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
        return max(0.0, self.settle_seconds - (datetime.now(timezone.utc) - started).total_seconds())

    def _ever_sent(self, invoice_id: str, integrator: str, reached_only: bool = False) -> bool:
        """Whether any send of the invoice to the integrator may have reached it (our own record)."""
        return any(a["integrator"] == integrator and a["action"] == "send"
                   and (not reached_only or a["outcome"] not in ("not_sent", "rate_limited"))
                   for a in self.register.attempts(invoice_id))

    def dispatch(self, invoices: list[dict], document_of: Callable[[dict], bytes], only: str | None = None) -> Counter:
        """Advance each invoice (those going to ``only``, when given); counts the states they end in."""
        for invoice in invoices:
            try:
                state = self.advance(invoice, document_of, only)
            except TransientError as e:  # a rate limit that outlasts the run's budget: the next pass goes on
                log.warning("invoice %s waits: %s", invoice["invoice_id"], e)
                state = WAITING
            self.outcomes[state] += 1
        return self.outcomes

    def poll(self, invoices: list[dict]) -> Counter:
        """Ask each queued invoice's carrier for its status until GİB's answer is final."""
        counted: Counter = Counter()
        for invoice in invoices:
            answer = self.ask(invoice, invoice["carrier"])
            if answer is None:
                counted["no answer"] += 1
            elif answer.outcome == ACCEPTED:
                self._carried(invoice, invoice["carrier"], answer)
                counted[S_ACCEPTED] += 1
            elif answer.outcome == QUEUED:
                counted[S_QUEUED] += 1
            elif answer.outcome == REJECTED:
                self._rejected(invoice, invoice["carrier"], answer)
                counted[S_REJECTED] += 1
            else:  # the carrier no longer knows an invoice it took: a person must look
                self.register.update(invoice["invoice_id"], message=f"{invoice['carrier']} answered "
                                     f"{answer.outcome} for an invoice it took: {answer.message}")
                counted["lost by carrier"] += 1
        return counted
