"""Billing's invoices → GİB e-invoices (UBL-TR 1.2) through several integrators (flow ``billing_einvoices``).

The run's steps: ``extract`` (billing's invoices not yet final in the register) → ``gate`` (the ``einvoice``
suite: an invoice GİB would refuse is held back by its key) → ``number`` (the e-Fatura user list decides
e-Fatura or e-Arşiv; each new invoice gets its ETTN and its number from its series in one ledger transaction;
the documents are built and checked) → ``send`` once per integrator, twice (each integrator's task moves only the
invoices going to it: first the primaries, then what failed over) → ``reconcile_and_report`` (a status poll, the
summary, the workbook, the run closed). The routing is ``einvoice_routing.yaml``; the failover rules are
:mod:`ledgerlink.einvoice.dispatch`'s.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path

from ledgerlink import settings
from ledgerlink.billing.einvoices import read_einvoice_headers, read_einvoice_lines, read_invoice_dates
from ledgerlink.einvoice.dispatch import Breaker, Dispatcher
from ledgerlink.einvoice.document import (EARSIV, EFATURA, IADE, SATIS, DocumentError, build_ubl, check_document,
                                          document_from_records, ettn_for)
from ledgerlink.einvoice.routing import Routing, load_routing
from ledgerlink.einvoice.users import UserListCache
from ledgerlink.flows.closing import close_run, held_back_rows
from ledgerlink.flows.params import RunParams
from ledgerlink.flows.spec import declared
from ledgerlink.flows.staging import read_frame, read_json, stage_frame, stage_json
from ledgerlink.flows.state import RunState
from ledgerlink.flows.steps import blocked_on_gate_failure, gate_staged
from ledgerlink.errors import TransientError
from ledgerlink.ledger import Ledger
from ledgerlink.ledger.einvoices import (ACCEPTED, FINAL_STATES, IN_DOUBT, QUEUED, REJECTED, UNFINISHED_STATES,
                                         EInvoiceRegister, ToNumber)
from ledgerlink.report import RunSummary
from ledgerlink.retrying import RetryBudget

log = logging.getLogger(__name__)
CARRIED = ("customer_id", "issue_date", "period_start", "period_end", "currency", "net_minor", "vat_minor",
           "gross_minor")
SPEC = declared("billing_einvoices", entity="invoice", source="billing", target="einvoice", carries=CARRIED)
SHOWN = 10
PROVISIONAL_NUMBER = "XXX{year}000000001"  # a well-formed stand-in to check a document before it has its number


def _routing() -> Routing:
    return load_routing(os.environ.get("LEDGERLINK_EINVOICE_ROUTING"))


def archive_path(invoice: dict) -> Path:
    """Where the document sent for an invoice is kept (GİB requires the issuer to archive what it sent)."""
    folder = settings.home() / "einvoice" / "archive" / str(invoice["year"]) / invoice["series"]
    return folder / f"{invoice['number']}.xml"


def _archive(invoice: dict, document: bytes) -> None:
    path = archive_path(invoice)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(document)
    partial.replace(path)


@dataclasses.dataclass
class EInvoiceFlow:
    """The e-invoice flow's steps; ``routing`` is read when a step runs (never at import)."""

    routing: Callable[[], Routing] = _routing
    breaker: Callable[[], Breaker] = Breaker
    retry: Callable[[], RetryBudget] = RetryBudget
    status_tries: int = 3
    settle_seconds: float = 30.0  # how long a silent send may still be on its way (dispatch's rule 3)

    # extract and gate -------------------------------------------------------------------------------------------
    def extract(self, run_id: str, billing, ledger: Ledger, params: RunParams = RunParams()) -> RunState:
        """Billing's invoices from the cut-over on that are not final in the register (a queued or final invoice
        is never sent again). ``params``: one customer's invoices, or those issued in a date range; a dry run
        numbers and sends nothing."""
        ledger.start_run(run_id, SPEC.id)
        routing = self.routing()
        register = EInvoiceRegister(ledger.engine)
        headers = read_einvoice_headers(billing, routing.issued_from.isoformat())
        settled = {r["invoice_id"] for r in register.invoices(states=(QUEUED,) + FINAL_STATES)}
        todo = headers[~headers["invoice_id"].isin(settled)].reset_index(drop=True)
        todo = params.keep(todo, customer_column="customer_id", date_column="issue_date")
        log.info("%s: %d invoice(s) to Turkish customers since %s in billing; %d already at GİB; %d to do%s",
                 SPEC.id, len(headers), routing.issued_from, len(settled), len(todo),
                 f" ({params.describe()})" if params.partial or params.dry_run else "")
        return RunState(run_id=run_id, read=len(todo), source_keys=len(headers), params=params.as_dict(),
                        batch=[stage_frame(SPEC.id, run_id, "invoices", todo)])

    def gate(self, state: RunState, ledger: Ledger) -> RunState:
        with blocked_on_gate_failure(ledger, SPEC, state.run_id):
            return gate_staged(state, ledger, SPEC, max_rows=SPEC.volume_total)

    # number -----------------------------------------------------------------------------------------------------
    def number(self, state: RunState, billing, user_list_client, ledger: Ledger) -> RunState:
        """Decide each new invoice's kind and series, check its document, number the sound ones (ETTN and number
        in one ledger transaction, in issue order), and build every unfinished invoice's document."""
        run_id, routing = state.run_id, self.routing()
        ledger.hold_lease(SPEC.id, run_id)
        if RunParams.of(state.params).dry_run:
            # A number, once taken, is used for good: a dry run takes none, builds nothing and sends nothing.
            waiting = read_frame(state.batch[0])
            log.info("dry run: %d invoice(s) would be numbered and sent: %s", len(waiting),
                     list(waiting["invoice_id"])[:SHOWN])
            return dataclasses.replace(state, new=len(waiting), documents=None)
        register = EInvoiceRegister(ledger.engine)
        passed = read_frame(state.batch[0])
        headers = {r["invoice_id"]: r for r in passed.to_dict("records")}
        lines = read_einvoice_lines(billing, list(headers))
        known = {r["invoice_id"]: r for r in register.invoices(invoice_ids=list(headers))}
        registered = UserListCache(settings.home() / "einvoice" / "gib_users.json",
                                   user_list_client.registered_users).registered() if headers else frozenset()
        returned_dates = read_invoice_dates(billing, sorted({str(h["credits_invoice_id"]) for h in headers.values()
                                                             if h["gross_minor"] < 0 and h["credits_invoice_id"]}))
        returned_numbers = {r["invoice_id"]: r["number"] for r in register.invoices(invoice_ids=list(returned_dates))}

        def returned(header: dict) -> tuple[str, date] | None:
            if header["gross_minor"] >= 0:
                return None
            credited = str(header["credits_invoice_id"])
            if credited not in returned_numbers or credited not in returned_dates:
                raise DocumentError(header["invoice_id"], "credits_invoice_id",
                                    f"the returned invoice {credited} has no e-invoice number in the ledger")
            return returned_numbers[credited], date.fromisoformat(returned_dates[credited])

        to_number, held = [], []
        for invoice_id, header in headers.items():
            if invoice_id in known:
                continue
            document = EFATURA if header["tax_id"] in registered else EARSIV
            series = routing.series_for(document, IADE if header["gross_minor"] < 0 else SATIS)
            ettn = ettn_for(routing.supplier.tax_id, invoice_id)
            year = int(str(header["issue_date"])[:4])
            try:
                draft = document_from_records(header, lines.get(invoice_id, []), supplier=routing.supplier,
                                              number=PROVISIONAL_NUMBER.format(year=year), ettn=ettn,
                                              profile=series.profile, type_code=series.type_code,
                                              returned_invoice=returned(header))
                problems = check_document(draft)
                if problems:
                    raise DocumentError(invoice_id, problems[0][0], "; ".join(p for _, p in problems))
            except DocumentError as e:
                held.append((invoice_id, [str(e)], {k: str(v) for k, v in header.items()}))
                continue
            to_number.append(ToNumber(invoice_id, series.code, year, ettn, document, series.profile,
                                      series.type_code, str(header["tax_id"]), str(header["currency"]),
                                      draft.payable, series.primary, series.fallback))
        # Held back before a number is taken: a number is only ever given to a document that can be sent.
        ledger.quarantine(run_id, SPEC.id, SPEC.entity, held)
        numbered = register.number(to_number, run_id)
        log.info("%s: %d invoice(s) numbered now (%s); %d held back", SPEC.id, len(numbered),
                 dict(Counter(t.series for t in to_number if t.invoice_id in set(numbered))), len(held))

        documents, totals = {}, Counter()
        for invoice in register.invoices(states=UNFINISHED_STATES, invoice_ids=list(headers)):
            header = headers[invoice["invoice_id"]]
            try:
                doc = document_from_records(header, lines.get(invoice["invoice_id"], []), supplier=routing.supplier,
                                            number=invoice["number"], ettn=invoice["ettn"], profile=invoice["profile"],
                                            type_code=invoice["type_code"], returned_invoice=returned(header))
                documents[invoice["invoice_id"]] = build_ubl(doc).decode("utf-8")
            except DocumentError as e:  # numbered earlier, changed in billing since: finance must look
                ledger.quarantine(run_id, SPEC.id, SPEC.entity, [(invoice["invoice_id"], [str(e)], {})])
                held.append((invoice["invoice_id"], [str(e)], {}))
                continue
            for rate, taxable, tax in doc.tax_subtotals():
                totals[(doc.currency, f"{rate:f}", "net")] += taxable
                totals[(doc.currency, f"{rate:f}", "vat")] += tax
        sent_totals = {}
        for (currency, rate, kind), amount in sorted(totals.items()):
            sent_totals.setdefault((currency, rate), {"currency": currency, "vat_rate": rate})[kind] = str(amount)
        return dataclasses.replace(state, new=len(numbered), quarantined=state.quarantined + len(held),
                                   documents=stage_json(SPEC.id, run_id, "documents", documents),
                                   sent_totals=list(sent_totals.values()))

    # send -------------------------------------------------------------------------------------------------------
    def send(self, state: RunState, integrator: str, clients: Mapping[str, object], ledger: Ledger) -> dict:
        """Move the unfinished invoices whose next integrator is ``integrator`` (its Airflow pool bounds the
        calls); ``clients`` holds every integrator of the routes (a status question may go to the one an invoice
        is in doubt at). Returns the states they ended in."""
        ledger.hold_lease(SPEC.id, state.run_id)
        if RunParams.of(state.params).dry_run:
            return {}
        register = EInvoiceRegister(ledger.engine)
        documents: dict[str, str] = read_json(state.documents) if state.documents else {}
        going = [i for i in register.invoices(states=UNFINISHED_STATES, invoice_ids=list(documents))
                 if Dispatcher.next_hop(i) == integrator]
        dispatcher = Dispatcher(register, clients, run_id=state.run_id, retry=self.retry(), breaker=self.breaker(),
                                status_tries=self.status_tries, settle_seconds=self.settle_seconds)

        def document_of(invoice: dict) -> bytes:
            document = documents[invoice["invoice_id"]].encode("utf-8")
            _archive(invoice, document)
            return document

        outcomes = dispatcher.dispatch(going, document_of, only=integrator)
        log.info("%s via %s: %d invoice(s) going there: %s", SPEC.id, integrator, len(going), dict(outcomes))
        return dict(outcomes)

    # reconcile and report ---------------------------------------------------------------------------------------
    def reconcile_and_report(self, state: RunState, clients: Mapping[str, object], ledger: Ledger) -> RunSummary:
        """One status poll of what this run queued, then the summary: where each invoice went, what GİB said, what
        waits (in doubt) and what was refused, with both codes. Fails the run on a refusal or an invoice still
        waiting, so finance sees it."""
        run_id = state.run_id
        ledger.hold_lease(SPEC.id, run_id)
        if RunParams.of(state.params).dry_run:
            held = ledger.quarantined(flow=SPEC.id, run_id=run_id)
            return close_run(ledger, RunSummary(
                flow=SPEC.id, run_id=run_id, entity=SPEC.entity,
                target="GİB e-invoices via " + ", ".join(sorted(self.routing().integrators)), sent=state.new,
                created=state.new, quarantined=len(held), changes=state.new + len(held), dry_run=True,
                reconciliation_detail="not compared: a dry run numbers and sends nothing",
                gate_report=state.gate_report, held_back=held_back_rows(held)))
        register = EInvoiceRegister(ledger.engine)
        documents: dict[str, str] = read_json(state.documents) if state.documents else {}
        this_run = register.invoices(invoice_ids=list(documents))
        queued = [i for i in this_run if i["state"] == QUEUED]
        if queued:
            Dispatcher(register, clients, run_id=run_id, status_tries=self.status_tries).poll(queued)
            this_run = register.invoices(invoice_ids=list(documents))
        states = Counter(i["state"] for i in this_run)
        carriers = Counter((i["carrier"], i["primary_integrator"] != i["carrier"]) for i in this_run
                           if i["state"] in (QUEUED, ACCEPTED))
        rejected = [{"source_key": i["invoice_id"],
                     "last_error": f"{i['number']} refused by {i['carrier']}: integrator code {i['integrator_code']}, "
                                   f"GİB {i['gib_status']}: {i['message']} (the number stays used; billing must "
                                   f"issue a new invoice)"} for i in this_run if i["state"] == REJECTED]
        waiting = [i for i in this_run if i["state"] not in (QUEUED, ACCEPTED, REJECTED)]
        differences = []
        if waiting:
            in_doubt = [f"{i['invoice_id']} at {i['in_doubt_at']}" for i in waiting if i["state"] == IN_DOUBT]
            differences.append(
                f"{len(waiting)} invoice(s) not at GİB yet ({len(in_doubt)} in doubt: the integrator may hold them "
                f"and is asked again next run before anything goes elsewhere: {in_doubt[:SHOWN]}; the rest could "
                f"not be sent: {[i['invoice_id'] for i in waiting if i['state'] != IN_DOUBT][:SHOWN]})")
        orphans = [i["invoice_id"] for i in register.invoices(states=UNFINISHED_STATES) if i["invoice_id"] not in documents]
        if orphans:
            differences.append(
                f"{len(orphans)} numbered invoice(s) no longer in billing as e-invoices (cancelled, deleted or "
                f"held back since they were numbered): their numbers are used; issue them or cancel them: "
                f"{orphans[:SHOWN]}")
        held = ledger.quarantined(flow=SPEC.id, run_id=run_id)
        sent = states[QUEUED] + states[ACCEPTED]
        detail = (f"at GİB: accepted {states[ACCEPTED]}, queued {states[QUEUED]}; carried by "
                  + ", ".join(f"{carrier}{' (failover)' if failover else ''} {n}"
                              for (carrier, failover), n in sorted(carriers.items()))
                  + f"; numbered this run {state.new}")
        summary = RunSummary(
            flow=SPEC.id, run_id=run_id, entity=SPEC.entity,
            target="GİB e-invoices via " + ", ".join(sorted(self.routing().integrators)),
            sent=sent, created=sent, rejected=len(rejected), quarantined=len(held),
            changes=sent + len(rejected) + len(held), totals=state.sent_totals, reconciliation=differences,
            reconciliation_detail=detail, gate_report=state.gate_report,
            held_back=[{"key": q["source_key"], "status": "quarantined", "reasons": q["reasons"], "row": q["row"]}
                       for q in held] + [{"key": r["source_key"], "status": "rejected", "reasons": r["last_error"],
                                          "row": ""} for r in rejected])
        return close_run(ledger, summary, rejected=rejected)

    # wiring -----------------------------------------------------------------------------------------------------
    def run_all(self, run_id: str, billing, clients: Mapping[str, object], ledger: Ledger,
                params: RunParams = RunParams()) -> RunSummary:
        """The whole run in one call (the CLI, tests, the bench); the DAG runs the same steps as tasks."""
        routing = self.routing()
        state = self.gate(self.extract(run_id, billing, ledger, params), ledger)
        state = self.number(state, billing, clients[routing.user_list], ledger)
        for _wave in ("primaries", "failovers"):
            for integrator in sorted(routing.integrators):
                self.send(state, integrator, clients, ledger)
        return self.reconcile_and_report(state, clients, ledger)

    def poll_statuses(self, clients: Mapping[str, object], ledger: Ledger, integrator: str | None = None) -> dict:
        """The status DAG's step: every queued invoice (carried by ``integrator``) asked until GİB's answer is
        final."""
        register = EInvoiceRegister(ledger.engine)
        queued = [i for i in register.invoices(states=(QUEUED,)) if integrator is None or i["carrier"] == integrator]
        counted = Dispatcher(register, clients, run_id=None, status_tries=self.status_tries).poll(queued)
        log.info("status poll%s: %d queued invoice(s) asked: %s", f" via {integrator}" if integrator else "",
                 len(queued), dict(counted))
        return dict(counted)


FLOW = EInvoiceFlow()


def check_target(ledger: Ledger, clients: Mapping[str, object] | None = None) -> tuple[str, bool]:
    """For ``ledgerlink summary --check-targets``: each e-invoice the ledger has as accepted, asked of the
    integrator that carried it now; they agree when every one is accepted there."""
    if clients is None:
        from ledgerlink import tasks

        clients = tasks.einvoice_clients()
    register = EInvoiceRegister(ledger.engine)
    accepted = register.invoices(states=(ACCEPTED,))
    held = 0
    for invoice in accepted:
        try:
            held += clients[invoice["carrier"]].status(invoice["ettn"]).outcome == "accepted"
        except TransientError as e:
            return f"check: {invoice['carrier']} could not be asked ({e})", False
    agrees = held == len(accepted)
    return (f"check: the integrators hold {held} e-invoices accepted by GİB; the ledger has {len(accepted)} "
            f"accepted: {'they agree' if agrees else 'THEY DIFFER'}"), agrees


def daily_summary(ledger: Ledger, day: date | None = None) -> str:
    """Finance's daily e-invoice summary: where every invoice stands at GİB, per integrator and series (with the
    numbers' gaplessness checked), every refusal with the integrator's and GİB's codes; logged, and written as
    an XLSX workbook. Returns the text."""
    from openpyxl import Workbook

    day = day or datetime.now(timezone.utc).date()
    register = EInvoiceRegister(ledger.engine)
    invoices = register.invoices()
    states = Counter(i["state"] for i in invoices)
    today = [i for i in invoices if i["updated_at"] and _as_utc(i["updated_at"]).date() == day]
    lines = [f"===== Ledgerlink: e-invoices, {day.isoformat()} =====",
             f"at GİB: accepted {states[ACCEPTED]}, queued {states[QUEUED]} | refused {states[REJECTED]} | "
             f"not at GİB yet {sum(states[s] for s in UNFINISHED_STATES)} (in doubt {states[IN_DOUBT]}) | "
             f"changed today {len(today)}"]
    carried = Counter((i["carrier"], i["carrier"] != i["primary_integrator"]) for i in invoices
                      if i["state"] in (QUEUED, ACCEPTED))
    lines.append("carried by: " + (", ".join(f"{c}{' as fallback' if f else ''} {n}"
                                              for (c, f), n in sorted(carried.items())) or "-"))
    by_series: dict[tuple[str, int], list[int]] = {}
    for invoice in invoices:
        by_series.setdefault((invoice["series"], invoice["year"]), []).append(invoice["sequence"])
    counters = register.series_counters()
    for (series, year), sequences in sorted(by_series.items()):
        last = counters.get((series, year), 0)
        gapless = sorted(sequences) == list(range(1, last + 1))
        lines.append(f"series {series} {year}: {len(sequences)} numbers used, last {series}{year}{last:09d}, "
                     f"{'gapless' if gapless else 'GAPS OR DOUBLES: tell the ledger owner'}")
    refused = [i for i in invoices if i["state"] == REJECTED]
    if refused:
        lines.append("refused (the number stays used; billing must issue a new invoice):")
        lines += [f"  {i['invoice_id']} {i['number']} via {i['carrier']}: integrator code {i['integrator_code']}, "
                  f"GİB {i['gib_status']}: {i['message']}" for i in refused]
    text = "\n".join(lines)
    # The same workbook conventions as a run's (ledgerlink.report): money as exact numbers with #,##0.00, a frozen
    # header, widths and a filter, streamed.
    from ledgerlink.report import sheet_for

    workbook = Workbook(write_only=True)
    columns = ["invoice_id", "number", "ettn", "document", "type_code", "state", "carrier", "primary_integrator",
               "gib_status", "integrator_code", "message", "payable", "currency", "updated_at"]
    widths = {"ettn": 38, "message": 50, "invoice_id": 14, "number": 18, "updated_at": 26}
    sheet = sheet_for(workbook, "invoices", columns, [widths.get(c, 14) for c in columns],
                      money_columns={columns.index("payable")})
    for invoice in invoices:
        sheet.append([invoice[c] if c == "payable" else (str(invoice[c]) if invoice[c] is not None else "")
                      for c in columns])
    sheet.close()
    summary_sheet = sheet_for(workbook, "summary", [f"generated at {datetime.now(timezone.utc).isoformat(timespec='seconds')}"],
                              [120])
    for line in lines:
        summary_sheet.append([line])
    summary_sheet.close()
    path = settings.home() / "reports" / "einvoices" / f"summary_{day.isoformat()}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    log.info("\n%s\nworkbook: %s", text, path)
    return text


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
