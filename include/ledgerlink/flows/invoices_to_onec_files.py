"""Billing's month-end closing documents → 1C by file exchange over SFTP (for 1C bases whose OData is not published).

Each run, for the month before its logical date:

1. **1C's answers first**: every ``out/Message_<1C>_<BILLING>*.xml`` is read through the safe parser; its
   ``ReceivedNo`` acknowledges, in the ledger, the items of every message of ours up to that number
   (:class:`~ledgerlink.delivery.MessageDelivery`), and its ``MessageNo`` is what our next header confirms.
2. **The message**: the period's issued (or since paid) and cancelled invoices with their lines, streamed from
   billing, and earlier documents this exchange sent before that changed since (an October invoice cancelled in
   November goes with November's message; one that never went through the exchange is not created now: 1C may
   hold it from before); a document that cannot go as it is (no contract, a VAT rate 1C does not know, lines that do not add
   up to the header) is held back in the quarantine naming the field. Each document's content hash is the
   SHA-256 of its bytes: one whose content 1C acknowledged is not sent again; one an earlier message carried
   without a confirmation is in this one again, with the same bytes, under the new number. Written as a
   stream with the XLSX register of the same documents.
3. **Upload** through the SFTP provider with the host key pinned: the register to ``registers/``, then the
   manifest ``<name>.sha256`` and the message to ``in/``, each under a temporary name renamed when complete.
4. **The answer**: 1C is given ``ack_wait_seconds`` (the connection's extra) to answer; what it has not
   confirmed by then waits in the ledger (``ledgerlink planned``) and the next run reads the answer first.
   A message 1C refused (moved to ``error/`` with its reason) fails the run with that reason.
5. **Reconcile and report**: the message read back as a stream gives the documents and money per currency it
   carries, compared with billing's figures for the same documents; the run closes through ``close_run``.

Connection ``onec_exchange_sftp`` (type ``sftp``): the host key pinned, extra ``remote_root`` (the exchange
folder), ``node`` (our code in 1C's exchange plan, default ``BILLING``), ``peer`` (1C's, default ``1C``),
``exchange_plan`` (default ``Ledgerlink``), ``organisation_inn`` (the 1C organisation that issues the documents;
required) and ``ack_wait_seconds`` (default 0: read the answer next run).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath
import re
import stat
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from ledgerlink import settings as ledgerlink_settings
from ledgerlink.billing.closing import closing_documents, period_bounds
from ledgerlink.delivery import MessageDelivery
from ledgerlink.errors import BadFileError, ConfigurationError, RemoteRejected
from ledgerlink.flows.closing import close_run, held_back_rows
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import CREATE, UPDATE, Ledger, PlannedChange
from ledgerlink.onec import enterprise_data as ed
from ledgerlink.report import RunSummary
from ledgerlink.sftp import tuned_sftp_put

log = logging.getLogger(__name__)

SPEC = declared("billing_invoices_to_onec_files", entity="invoice", source="billing", target="onec_files",
                carries=("number", "customer_id", "issue_date", "period_start", "period_end", "currency",
                         "net_minor", "vat_minor", "gross_minor", "status"))
CONN_ID = "onec_exchange_sftp"
RECEIVED_NO = "received_no"  # the ledger watermark: the last number of 1C's messages we have read
MAX_ANSWER_BYTES = 16 << 20
BATCH = 1_000  # documents whose acknowledged hashes are asked of the ledger at once


@dataclasses.dataclass(frozen=True)
class ExchangeSettings:
    root: str
    organisation_inn: str
    node: str = "BILLING"
    peer: str = "1C"
    exchange_plan: str = "Ledgerlink"
    ack_wait_seconds: float = 0.0
    poll_seconds: float = 2.0

    @classmethod
    def from_extra(cls, extra: dict, conn_id: str = CONN_ID) -> ExchangeSettings:
        if not extra.get("organisation_inn"):
            raise ConfigurationError(f"connection {conn_id!r} needs extra organisation_inn: the ИНН of the 1C "
                                     f"organisation that issues the documents")
        return cls(root=str(extra.get("remote_root") or "/").rstrip("/") or "/",
                   organisation_inn=str(extra["organisation_inn"]), node=str(extra.get("node") or "BILLING"),
                   peer=str(extra.get("peer") or "1C"), exchange_plan=str(extra.get("exchange_plan") or "Ledgerlink"),
                   ack_wait_seconds=float(extra.get("ack_wait_seconds") or 0),
                   poll_seconds=float(extra.get("poll_seconds") or 2))

    def folder(self, name: str) -> str:
        return posixpath.join(self.root, name)


def _delivery(ledger: Ledger, run_id: str) -> MessageDelivery:
    return MessageDelivery(ledger, flow=SPEC.id, run_id=run_id, target=SPEC.target, entity=SPEC.entity)


# 1. 1C's answers --------------------------------------------------------------------------------------------------
def read_answers(sftp, cfg: ExchangeSettings, ledger: Ledger, delivery: MessageDelivery) -> dict:
    """Read every answer of 1C in ``out/`` and acknowledge what it confirms. Returns {"received_no": the highest
    ReceivedNo seen, "acknowledged": items acknowledged now, "answers": files read}."""
    highest, acknowledged, files = 0, 0, []
    last_sent = ledger.last_message_no(SPEC.id)
    for answer in answers_in(sftp, cfg):
        if answer.received_no > last_sent:
            # 1C cannot have received a message we never sent: its counter and the ledger disagree (a ledger
            # restored from an older backup, another sender under our node's code). Acknowledging would close
            # documents 1C never saw; a person decides.
            raise BadFileError(answer.file, f"1C says it has received our messages up to {answer.received_no}, but "
                                            f"the last message the ledger sent is {last_sent}: the ledger and 1C's "
                                            f"exchange node disagree; nothing was acknowledged", field="ReceivedNo")
        acknowledged += delivery.acknowledge_up_to(answer.received_no)
        highest = max(highest, answer.received_no)
        files.append(answer.file)
        current = int(ledger.watermark(SPEC.id, RECEIVED_NO) or 0)
        if answer.message_no > current:
            ledger.set_watermark(SPEC.id, RECEIVED_NO, str(answer.message_no))
    if acknowledged:
        log.info("1C confirmed our messages up to %s: %d document(s) acknowledged", highest, acknowledged)
    return {"received_no": highest, "acknowledged": acknowledged, "answers": files}


def answers_in(sftp, cfg: ExchangeSettings) -> list[ed.Answer]:
    """1C's answers to us in ``out/``, each read through the safe parser and checked to be from 1C's node to ours
    in our exchange plan (read only: nothing is acknowledged here)."""
    out = cfg.folder("out")
    prefix = f"Message_{cfg.peer}_{cfg.node}"
    try:
        entries = sftp.listdir_attr(out)
    except FileNotFoundError:
        entries = []
    answers = []
    for entry in sorted(entries, key=lambda e: e.filename):
        name = entry.filename
        if not (name.startswith(prefix) and name.endswith(".xml")) or not stat.S_ISREG(entry.st_mode or 0):
            continue
        if (entry.st_size or 0) > MAX_ANSWER_BYTES:
            raise BadFileError(name, f"{entry.st_size} bytes: an answer is a header, at most {MAX_ANSWER_BYTES}")
        with sftp.open(posixpath.join(out, name), "rb") as handle:
            data = handle.read(MAX_ANSWER_BYTES + 1)
        answer = ed.read_answer(data, name)
        if (answer.exchange_plan.removeprefix("ExchangePlan_"), answer.sender, answer.recipient) != \
                (cfg.exchange_plan, cfg.peer, cfg.node):
            raise BadFileError(name, f"an answer of exchange plan {answer.exchange_plan!r} from {answer.sender!r} to "
                                     f"{answer.recipient!r}; expected {cfg.exchange_plan!r} from {cfg.peer!r} to "
                                     f"{cfg.node!r}", field="Header")
        answers.append(answer)
    return answers


# 2-3. the message ----------------------------------------------------------------------------------------------
def send_period(run_id: str, period: str, billing, sftp, cfg: ExchangeSettings, ledger: Ledger,
                now: datetime | None = None) -> dict:
    """Read 1C's answers, write the period's message and register, upload them. Returns the run's state."""
    ledger.start_run(run_id, SPEC.id)
    delivery = _delivery(ledger, run_id)
    answers = read_answers(sftp, cfg, ledger, delivery)
    ledger.clear_quarantine(run_id, SPEC.id)
    message_no = delivery.next_message_no()
    name = ed.message_name(cfg.node, cfg.peer, message_no)
    work = ledgerlink_settings.reports_dir(SPEC.id, run_id)
    message_path, register_path = work / name, work / name.replace(".xml", ".register.xlsx")
    header = ed.MessageHeader(cfg.exchange_plan, cfg.node, cfg.peer, message_no,
                              int(ledger.watermark(SPEC.id, RECEIVED_NO) or 0), now or datetime.now(timezone.utc))
    register = ed.RegisterWriter(register_path, message_no)
    changes: list[PlannedChange] = []
    held: list[tuple[str, list[str], dict]] = []
    counts = {"read": 0, "unchanged": 0, "cancelled": 0, "earlier_not_ours": 0}
    totals: dict[tuple[str, str], list[Decimal]] = {}
    by_currency: dict[str, Decimal] = {}

    waiting = set(delivery.waiting_keys())
    period_start = period_bounds(period)[0]

    def wanted():
        """The documents to send, as their bytes, in billing's order; everything else counted on the way."""
        batch = []
        for doc in closing_documents(billing, period, also=waiting):
            batch.append(doc)
            if len(batch) >= BATCH:
                yield from changed(batch)
                batch = []
        yield from changed(batch)

    def changed(batch):
        acknowledged = ledger.snapshot_hashes(SPEC.id, [d.invoice_id for d in batch])
        for doc in batch:
            counts["read"] += 1
            if doc.issue_date < period_start and doc.invoice_id not in acknowledged and \
                    doc.invoice_id not in waiting:
                # An earlier period's document changed since, that never went through this exchange: 1C may hold
                # it from before (typed in by hand); it is not ours to create now.
                counts["earlier_not_ours"] += 1
                continue
            reasons = ed.problems(doc)
            if reasons:
                held.append((doc.invoice_id, reasons, {"number": doc.number, "issue_date": doc.issue_date,
                                                       "status": doc.status, "gross": str(doc.gross)}))
                continue
            blob = ed.document_bytes(doc, cfg.organisation_inn)
            digest = hashlib.sha256(blob).hexdigest()
            if acknowledged.get(doc.invoice_id) == digest:
                counts["unchanged"] += 1
                continue
            changes.append(PlannedChange(doc.invoice_id, ed.document_ref(doc.invoice_id), digest,
                                         UPDATE if doc.invoice_id in acknowledged else CREATE))
            register.add(doc)
            code = ed.CURRENCY_CODES[doc.currency]
            by_currency[code] = by_currency.get(code, Decimal(0)) + doc.gross
            if doc.cancelled:
                counts["cancelled"] += 1
            else:
                for line in doc.lines:
                    sums = totals.setdefault((doc.currency, line.vat_rate), [Decimal(0)] * 3)
                    sums[0] += line.net
                    sums[1] += line.vat
                    sums[2] += line.gross
            yield blob

    digest, size = ed.write_message(message_path, header, wanted())
    register.close()
    ledger.quarantine(run_id, SPEC.id, SPEC.entity, held)
    for key, reasons, _ in held:
        log.warning("Held back invoice %s: %s", key, "; ".join(reasons))
    to_send = delivery.open(changes)
    state = {"run_id": run_id, "period": period, "message_no": None, "message": None, "local_message": None,
             "documents": len(to_send), "created": delivery.outcomes["created"],
             "updated": delivery.outcomes["updated"], "resent": delivery.resent, "quarantined": len(held),
             "acknowledged_before": answers["acknowledged"], **counts,
             "sent_by_currency": {k: str(v) for k, v in by_currency.items()},
             "totals": [{"currency": c, "vat_rate": r, "net": str(n), "vat": str(v), "gross": str(g)}
                        for (c, r), (n, v, g) in sorted(totals.items())]}
    if not to_send:
        log.info("Nothing to send for %s: every closing document is acknowledged by 1C as billing holds it", period)
        message_path.unlink(missing_ok=True)  # an empty message is never sent, and its number never taken
        register_path.unlink(missing_ok=True)
        return state

    def upload() -> None:
        manifest = message_path.with_name(name + ".sha256")
        manifest.write_text(f"{digest}  {name}\n", encoding="ascii")
        for folder in (cfg.root, cfg.folder("in"), cfg.folder("registers")):
            _ensure_folder(sftp, folder)
        _remove_stale_partials(sftp, cfg)
        tuned_sftp_put(sftp, register_path, posixpath.join(cfg.folder("registers"), register_path.name))
        # The manifest lands first: 1C checks a message against the manifest beside it when it takes the message.
        tuned_sftp_put(sftp, manifest, posixpath.join(cfg.folder("in"), manifest.name))
        tuned_sftp_put(sftp, message_path, posixpath.join(cfg.folder("in"), name))

    delivery.send(message_no, to_send, upload)
    log.info("Message %s sent to 1C (%s): %d document(s), %d re-sent from unconfirmed messages, %d bytes, sha256 %s",
             message_no, posixpath.join(cfg.folder("in"), name), len(to_send), delivery.resent, size, digest)
    return {**state, "message_no": message_no, "message": name, "local_message": str(message_path),
            "sha256": digest, "bytes": size}


def _remove_stale_partials(sftp, cfg: ExchangeSettings) -> None:
    """Temporary files of our earlier uploads that never completed (the connection dropped): 1C never takes
    them, and their documents are in this message under a new number."""
    ours = re.compile(rf"^\.Message_{re.escape(cfg.node)}_{re.escape(cfg.peer)}_\d+\.xml(\.sha256)?\.part$")
    for folder in (cfg.folder("in"), cfg.folder("registers")):
        for name in sftp.listdir(folder):
            if ours.match(name) or (folder.endswith("registers") and name.endswith(".register.xlsx.part")):
                log.info("Removing %s/%s: an upload of ours that never completed", folder, name)
                sftp.remove(posixpath.join(folder, name))


def _ensure_folder(sftp, path: str) -> None:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        sftp.mkdir(path)


# 4. the answer -------------------------------------------------------------------------------------------------
def await_answer(state: dict, sftp, cfg: ExchangeSettings, ledger: Ledger, wait_seconds: float | None = None) -> dict:
    """Give 1C ``wait_seconds`` (the connection's ``ack_wait_seconds``) to confirm the message; a message 1C
    moved to ``error/`` fails the run with 1C's reason. Unconfirmed at the end is not an error: the ledger keeps
    the items waiting and the next run reads the answer first."""
    run_id = state["run_id"]
    ledger.hold_lease(SPEC.id, run_id)
    delivery = _delivery(ledger, run_id)
    wait = cfg.ack_wait_seconds if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    acknowledged = 0
    while True:
        answers = read_answers(sftp, cfg, ledger, delivery)
        acknowledged += answers["acknowledged"]
        if state["message_no"] is None or answers["received_no"] >= state["message_no"]:
            break
        _raise_if_refused(sftp, cfg, state["message"])
        if time.monotonic() >= deadline:
            log.info("1C has not confirmed message %s within %s s: its documents wait for the next run",
                     state["message_no"], wait)
            break
        time.sleep(cfg.poll_seconds)
    return {**state, "acknowledged_now": acknowledged, "received_no": answers["received_no"]}


def _raise_if_refused(sftp, cfg: ExchangeSettings, name: str) -> None:
    reason_file = posixpath.join(cfg.folder("error"), f"{name}.error.txt")
    try:
        with sftp.open(reason_file, "rb") as handle:
            reason = handle.read(4000).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return
    raise RemoteRejected("1C", 0, None, f"1C refused message {name}: {reason}")


# 5. reconcile and report ------------------------------------------------------------------------------------------
def reconcile_and_report(state: dict, ledger: Ledger) -> RunSummary:
    """Compare what the message carries (read back) with billing's figures for the same documents; close the run."""
    run_id = state["run_id"]
    ledger.hold_lease(SPEC.id, run_id)
    differences = []
    if state.get("local_message"):
        count, carried = ed.message_totals(Path(state["local_message"]))
        expected = {k: Decimal(v) for k, v in state["sent_by_currency"].items()}
        if count != state["documents"] or carried != expected:
            differences.append(f"message {state['message_no']} carries {count} document(s), {_money(carried)}; "
                               f"billing's {state['documents']} document(s) amount to {_money(expected)}")
    waiting = ledger.awaiting_acknowledgement(SPEC.id)
    awaiting = sum(waiting.values())
    acknowledged = state.get("acknowledged_before", 0) + state.get("acknowledged_now", 0)
    message = (f"message {state['message_no']} ({state['message']}) for {state['period']}: {state['documents']} "
               f"document(s), {state['resent']} re-sent from unconfirmed messages, {state['cancelled']} cancelled "
               f"(unposted, marked for deletion)" if state.get("message_no")
               else f"no message for {state['period']}: nothing new or changed")
    held = ledger.quarantined(flow=SPEC.id, run_id=run_id)
    summary = RunSummary(
        flow=SPEC.id, run_id=run_id, entity=SPEC.entity, target="1C EnterpriseData message (SFTP)",
        sent=state["documents"], created=state["created"], updated=state["updated"], unchanged=state["unchanged"],
        quarantined=state["quarantined"], changes=state["created"] + state["updated"] + state["quarantined"],
        totals=state["totals"], reconciliation=differences, message=message, acknowledged=acknowledged,
        awaiting_acknowledgement=awaiting,
        reconciliation_detail=(f"billing {state['read']} closing document(s) read"
                               + (f" ({state['earlier_not_ours']} of earlier periods changed since but never sent "
                                  f"by this exchange: left to 1C)" if state.get("earlier_not_ours") else "")
                               + "; the message carries what was "
                               f"sent, to the kopek per currency; 1C confirmed up to message "
                               f"{state.get('received_no', 0)}"
                               + (f"; waiting: {', '.join(f'message {n}: {c}' for n, c in sorted(waiting.items()))}"
                                  if waiting else "")),
        held_back=held_back_rows(held))
    return close_run(ledger, summary)


def _money(totals: dict) -> str:
    return ", ".join(f"{code} {amount}" for code, amount in sorted(totals.items())) or "nothing"


# the DAG's tasks --------------------------------------------------------------------------------------------------
def _connect(conn_id: str):
    from ledgerlink.sftp import TunedSFTPHook

    hook = TunedSFTPHook(conn_id)
    return hook, ExchangeSettings.from_extra(hook.get_connection(conn_id).extra_dejson, conn_id)


def check_target(ledger: Ledger, conn_id: str = CONN_ID) -> tuple[str, bool]:
    """For ``ledgerlink summary --check-targets``: what 1C's answer in the exchange folder confirms now, beside
    what the ledger holds acknowledged and waiting. They agree when nothing 1C has confirmed still waits."""
    hook, cfg = _connect(conn_id)
    with hook.get_managed_conn() as sftp:
        confirmed = max((a.received_no for a in answers_in(sftp, cfg)), default=0)
    waiting = ledger.awaiting_acknowledgement(SPEC.id)
    behind = sum(n for number, n in waiting.items() if number <= confirmed)
    acknowledged = len(ledger.snapshot(SPEC.id))
    return (f"check: 1C's answer confirms our messages up to {confirmed} (the last sent: "
            f"{ledger.last_message_no(SPEC.id)}); the ledger has {acknowledged} document(s) acknowledged, "
            f"{sum(waiting.values())} waiting"
            + (": they agree" if not behind else f": {behind} confirmed by 1C still wait (run the flow to read "
                                                 f"the answer)")), not behind


def closing_period(logical_date: datetime) -> str:
    """The month before the one the run's logical date falls in (the run on 1 December closes November)."""
    from ledgerlink.usage.profiles import previous_period

    return previous_period(f"{logical_date.astimezone(timezone.utc):%Y-%m}")


def send_task(run_id: str, logical_date: datetime, conn_id: str = CONN_ID) -> dict:
    from ledgerlink import tasks

    hook, cfg = _connect(conn_id)
    with hook.get_managed_conn() as sftp:
        return send_period(run_id, closing_period(logical_date), tasks.billing_engine(), sftp, cfg, tasks.ledger())


def await_task(state: dict, conn_id: str = CONN_ID) -> dict:
    from ledgerlink import tasks

    hook, cfg = _connect(conn_id)
    with hook.get_managed_conn() as sftp:
        return await_answer(state, sftp, cfg, tasks.ledger())


def report_task(state: dict) -> dict:
    from ledgerlink import tasks

    return reconcile_and_report(state, tasks.ledger()).as_dict()
