"""What the Exchange ledger page reads: plain functions over the ledger's engine, each answering one page.

Every list is a page: a limit (at most ``MAX_PAGE``) and a keyset cursor (the last id or time seen), served by
an index (revision ``ledger_page_indexes``); nothing reads a table whole. Money leaves here in major units as
text (``Decimal``), never minor units, never floats. Nothing here reads a connection's secret: the billing
lookups get an engine from :mod:`ledgerlink.ui.sources` and only its rows come back.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from ledgerlink.exchange_map import ExchangeMap
from ledgerlink.ledger import (ACKNOWLEDGED, OPEN_STATUSES, QUARANTINED, REJECTED, SENT, SUCCEEDED, Chunk,
                               Flow, Item, QuarantinedRow, Run, Snapshot, deliveries)
from ledgerlink.ledger.einvoices import EInvoice, EInvoiceAttempt
from ledgerlink.ledger.usage_files import UsageFile
from ledgerlink.reconcile import to_major

MAX_PAGE = 200
SEARCH_CAP = 200  # journey steps one search answers (the page says when there were more)
# The task whose log tells each kind of step, in the DAGs `spine.exchange_dag` builds (others: the run's page).
TASK_FOR = {"item": "load", "line": "load", "held back": "gate", "run": "reconcile_and_report",
            "einvoice": "reconcile_and_report"}
TASK_OVERRIDES = {"bridge_usage_to_billing": {"run": "take_files", "usage file": "take_files"}}


def dag_id_of(flow: str) -> str:
    """The DAG a ledger flow belongs to: a flow's internal sub-flows (``flow:invoice_headers``) are its own."""
    return flow.split(":", 1)[0]


def links(flow: str, run_id: str | None, kind: str) -> dict:
    """Where Airflow's UI shows the step: its DAG run and the log of the task that did it (paths under the UI's
    base URL; the page resolves them against it)."""
    if not run_id:
        return {}
    dag = dag_id_of(flow)
    from urllib.parse import quote

    run = f"dags/{quote(dag, safe='')}/runs/{quote(run_id, safe='')}"
    task = TASK_OVERRIDES.get(dag, {}).get(kind, TASK_FOR.get(kind))
    return {"dag_run": run, "task_log": f"{run}/tasks/{task}" if task else run}


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:  # SQLite hands back naive datetimes; the ledger writes UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _page(limit: int | None) -> int:
    return max(1, min(int(limit or 50), MAX_PAGE))


def _like(text: str) -> str:
    """``text`` inside a LIKE pattern, its own ``%`` and ``_`` meaning themselves (escaped with ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _key_match(column, text: str):
    """The key itself, or keys it heads (an invoice number finds its lines ``IN…-0001``): two index ranges."""
    return sa.or_(column == text, sa.and_(column >= text + "-", column < text + "."))


# ----------------------------------------------------------------------------------------------- search

def search(engine: sa.Engine, text: str, *, billing=None) -> dict:
    """Where is ``text``: a line id, an invoice number, a customer key, a customer's name or tax id.

    Ledger keys first (items, lines in the snapshot and their history, held-back rows, e-invoices, usage files);
    ``billing`` (a callable giving billing's engine, or None) turns a name, a tax id or billing's invoice
    number into keys, and gives each step's amounts. Answers {"query", "matches", "steps", "more", "notes"}.
    """
    text = text.strip()
    notes: list[str] = []
    matches: list[dict] = []
    keys = [text]
    billing_engine = None
    if billing is not None:
        try:
            billing_engine = billing()
        except Exception as e:  # the page still answers from the ledger; only the error's kind is shown
            notes.append(f"billing could not be asked ({type(e).__name__}): names, tax ids and amounts not shown")
    if billing_engine is not None:
        try:
            matches = _billing_matches(billing_engine, text)
        except sa.exc.SQLAlchemyError as e:
            notes.append(f"billing could not be asked ({type(e).__name__}): names, tax ids and amounts not shown")
            billing_engine = None
        for match in matches:
            keys += [match["key"]] + match.get("invoices", [])
    keys = list(dict.fromkeys(k for k in keys if k))[:60]
    steps = _ledger_steps(engine, keys)
    more = len(steps) > SEARCH_CAP
    steps = steps[:SEARCH_CAP]
    if billing_engine is not None and steps:
        try:
            _add_amounts(billing_engine, steps)
        except sa.exc.SQLAlchemyError as e:
            notes.append(f"billing amounts not shown ({type(e).__name__})")
    steps.sort(key=lambda s: (s["key"], s["when"] or ""))
    return {"query": text, "matches": matches, "steps": steps, "more": more, "notes": notes}


def _billing_matches(billing: sa.Engine, text: str) -> list[dict]:
    """Customers whose name holds ``text`` or whose tax id is it, and the invoice billing numbers ``text``;
    each customer with its latest invoices (their lines are found by prefix)."""
    found: list[dict] = []
    with billing.connect() as conn:
        for row in conn.execute(sa.text(
                "SELECT invoice_id, customer_id FROM invoices WHERE number = :t OR invoice_id = :t LIMIT 5"),
                {"t": text}):
            found.append({"kind": "invoice", "key": row.invoice_id, "customer": row.customer_id})
        customers = conn.execute(sa.text(
            "SELECT customer_id, legal_name, tax_id FROM customers WHERE tax_id = :t OR customer_id = :t"
            # SQLite's lower() folds ASCII only: a Cyrillic or Turkish name is also matched as typed
            " OR lower(legal_name) LIKE :like ESCAPE '\\' OR legal_name LIKE :typed ESCAPE '\\'"
            " ORDER BY customer_id LIMIT 10"),
            {"t": text, "like": f"%{_like(text.lower())}%", "typed": f"%{_like(text)}%"}).all() \
            if len(text) >= 3 else []
        for row in customers:
            invoices = [r.invoice_id for r in conn.execute(sa.text(
                "SELECT invoice_id FROM invoices WHERE customer_id = :c ORDER BY issue_date DESC, invoice_id DESC"
                " LIMIT 12"), {"c": row.customer_id})]
            found.append({"kind": "customer", "key": row.customer_id, "name": row.legal_name,
                          "tax_id": row.tax_id, "invoices": invoices})
    return found


def _ledger_steps(engine: sa.Engine, keys: list[str]) -> list[dict]:
    steps: list[dict] = []
    with engine.connect() as conn:
        for key in keys:
            steps += _item_steps(conn, key)
            steps += _line_steps(conn, key)
            steps += _held_steps(conn, key)
            steps += _einvoice_steps(conn, key)
            steps += _usage_file_steps(conn, key)
            if len(steps) > SEARCH_CAP:
                break
    return steps


def _item_steps(conn, key: str) -> list[dict]:
    rows = conn.execute(sa.select(Item).where(_key_match(Item.source_key, key)).order_by(Item.id)
                        .limit(SEARCH_CAP + 1)).mappings()
    out = []
    for r in rows:
        status = r["status"]
        result = {SENT: "sent, not yet confirmed by the target", ACKNOWLEDGED: "confirmed by the target",
                  REJECTED: f"refused: {r['last_error'] or ''}".strip(), QUARANTINED: "held back"}.get(status, status)
        out.append({"kind": "item", "key": r["source_key"], "flow": r["flow"], "system": r["target"],
                    "run_id": r["run_id"], "when": _iso(r["acknowledged_at"] or r["sent_at"] or r["planned_at"]),
                    "operation": r["operation"], "status": status, "result": result,
                    "target_key": r["target_key"], "attempts": r["attempts"],
                    "links": links(r["flow"], r["run_id"], "item")})
    return out


def _line_steps(conn, key: str) -> list[dict]:
    """A chunked load's lines: the latest delivery is the snapshot row, earlier ones are in ``deliveries``;
    the chunk names the run, the target and the time."""
    # The snapshot's key is (flow_id, source_key): naming the (few) flows lets each probe its primary key.
    flow_ids = list(conn.scalars(sa.select(Flow.id)))
    latest = (sa.select(Flow.name.label("flow"), Snapshot.source_key, Snapshot.operation, Snapshot.chunk_id,
                        sa.literal(True).label("latest"))
              .join(Flow, Flow.id == Snapshot.flow_id)
              .where(Snapshot.flow_id.in_(flow_ids), Snapshot.chunk_id.is_not(None),
                     _key_match(Snapshot.source_key, key)))
    earlier = (sa.select(Chunk.flow, deliveries.c.source_key, deliveries.c.operation, deliveries.c.chunk_id,
                         sa.literal(False).label("latest"))
               .join(Chunk, Chunk.id == deliveries.c.chunk_id)
               .where(_key_match(deliveries.c.source_key, key)))
    out = []
    for query in (earlier, latest):
        for r in conn.execute(query.limit(SEARCH_CAP + 1)).mappings():
            chunk = conn.execute(sa.select(Chunk).where(Chunk.id == r["chunk_id"])).mappings().first()
            if chunk is None:
                continue
            out.append({"kind": "line", "key": r["source_key"], "flow": r["flow"], "system": chunk["target"],
                        "run_id": chunk["run_id"], "when": _iso(chunk["acknowledged_at"] or chunk["sent_at"]),
                        "operation": r["operation"], "status": chunk["status"],
                        "result": (f"in chunk {chunk['chunk_index']} ({chunk['lines']} lines), "
                                   f"{'confirmed' if chunk['status'] == ACKNOWLEDGED else chunk['status']}"
                                   + ("" if r["latest"] else "; superseded by a later delivery")),
                        "links": links(r["flow"], chunk["run_id"], "line")})
    return out


def _held_steps(conn, key: str) -> list[dict]:
    rows = conn.execute(sa.select(QuarantinedRow).where(_key_match(QuarantinedRow.source_key, key))
                        .order_by(QuarantinedRow.id).limit(SEARCH_CAP + 1)).mappings()
    return [{"kind": "held back", "key": r["source_key"], "flow": r["flow"], "system": None,
             "run_id": r["run_id"], "when": _iso(r["created_at"]), "operation": None, "status": QUARANTINED,
             "result": f"held back: {r['reasons']}", "values": readable_row(r["row"]),
             "links": links(r["flow"], r["run_id"], "held back")} for r in rows]


def _einvoice_steps(conn, key: str) -> list[dict]:
    invoice = conn.execute(sa.select(EInvoice).where(sa.or_(EInvoice.invoice_id == key, EInvoice.number == key,
                                                            EInvoice.ettn == key))).mappings().first()
    if invoice is None:
        return []
    out = [{"kind": "einvoice", "key": invoice["invoice_id"], "flow": "billing_einvoices",
            "system": invoice["carrier"] or invoice["primary_integrator"], "run_id": invoice["run_id"],
            "when": _iso(invoice["final_at"] or invoice["updated_at"]), "operation": invoice["document"],
            "status": invoice["state"],
            "result": f"e-invoice {invoice['number']} ({invoice['document']}, ETTN {invoice['ettn']}): "
                      f"{invoice['state']}" + (f" — {invoice['message']}" if invoice["message"] else ""),
            "amounts": {"currency": invoice["currency"], "payable": str(invoice["payable"])},
            "links": links("billing_einvoices", invoice["run_id"], "einvoice")}]
    for a in conn.execute(sa.select(EInvoiceAttempt).where(EInvoiceAttempt.invoice_id == invoice["invoice_id"])
                          .order_by(EInvoiceAttempt.id).limit(50)).mappings():
        out.append({"kind": "einvoice attempt", "key": invoice["invoice_id"], "flow": "billing_einvoices",
                    "system": a["integrator"], "run_id": a["run_id"], "when": _iso(a["finished_at"] or a["started_at"]),
                    "operation": a["action"], "status": a["outcome"],
                    "result": " ".join(str(x) for x in (a["outcome"], a["http_status"] and f"HTTP {a['http_status']}",
                                                        a["gib_status"] and f"GİB {a['gib_status']}",
                                                        a["message"]) if x),
                    "links": links("billing_einvoices", a["run_id"], "einvoice")})
    return out


def _usage_file_steps(conn, key: str) -> list[dict]:
    rows = conn.execute(sa.select(UsageFile).where(sa.or_(UsageFile.name == key, UsageFile.sha256 == key))
                        .order_by(UsageFile.id).limit(20)).mappings()
    return [{"kind": "usage file", "key": r["name"], "flow": r["flow"], "system": "billing", "run_id": r["run_id"],
             "when": _iso(r["taken_at"]), "operation": "load", "status": r["status"],
             "result": f"{r['status']}: {r['rows_loaded']} calls loaded, {r['rows_held_back']} held back"
                       + (f" — {r['reason']}" if r["reason"] else ""),
             "links": links(r["flow"], r["run_id"], "usage file")} for r in rows]


def _add_amounts(billing: sa.Engine, steps: list[dict]) -> None:
    """Each line's and invoice's amounts from billing, in major units."""
    keys = sorted({s["key"] for s in steps if s["kind"] in ("line", "item", "held back")})
    if not keys:
        return
    amounts: dict[str, dict] = {}
    with billing.connect() as conn:
        for part in range(0, len(keys), 500):
            batch = keys[part:part + 500]
            for table, key in (("invoice_lines", "line_id"), ("invoices", "invoice_id")):
                query = sa.text(f"SELECT {key} AS k, currency, net_minor, vat_minor, gross_minor FROM {table} "
                                f"WHERE {key} IN :keys").bindparams(sa.bindparam("keys", expanding=True))
                for r in conn.execute(query, {"keys": batch}):
                    amounts[r.k] = {"currency": r.currency, "net": str(to_major(r.net_minor, r.currency)),
                                    "vat": str(to_major(r.vat_minor, r.currency)),
                                    "gross": str(to_major(r.gross_minor, r.currency))}
    for step in steps:
        if step["key"] in amounts and "amounts" not in step:
            step["amounts"] = amounts[step["key"]]


# ----------------------------------------------------------------------------------------------- tabs

def planned(engine: sa.Engine, *, flow: str | None = None, target: str | None = None, after: int | None = None,
            limit: int | None = None) -> dict:
    """What waits to go (planned) or went without the target's word yet (sent), oldest first, by id."""
    size = _page(limit)
    query = sa.select(Item).where(Item.status.in_(OPEN_STATUSES)).order_by(Item.id).limit(size + 1)
    if flow:
        query = query.where(Item.flow == flow)
    if target:
        query = query.where(Item.target == target)
    if after:
        query = query.where(Item.id > after)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        chunks = conn.execute(sa.select(Chunk).where(Chunk.status.in_(OPEN_STATUSES)).order_by(Chunk.id)
                              .limit(MAX_PAGE)).mappings().all() if not after else []
    items = [{"id": r["id"], "key": r["source_key"], "flow": r["flow"], "system": r["target"],
              "operation": r["operation"], "status": r["status"],
              "state": "planned, not sent yet" if r["status"] != SENT else "sent, awaiting the target's confirmation",
              "attempts": r["attempts"], "last_error": r["last_error"], "planned_at": _iso(r["planned_at"]),
              "run_id": r["run_id"], "links": links(r["flow"], r["run_id"], "item")} for r in rows[:size]]
    chunk_rows = [{"id": c["id"], "flow": c["flow"], "system": c["target"], "lines": c["lines"],
                   "status": c["status"], "chunk_index": c["chunk_index"], "run_id": c["run_id"],
                   "planned_at": _iso(c["planned_at"]), "links": links(c["flow"], c["run_id"], "line")}
                  for c in chunks if (not flow or c["flow"] == flow) and (not target or c["target"] == target)]
    return {"items": items, "chunks": chunk_rows, "next": items[-1]["id"] if len(rows) > size else None}


def readable_row(row_json: str | None) -> dict:
    """A held-back row as a person reads it: money columns (``*_minor``) in major units of the row's currency."""
    try:
        row = json.loads(row_json or "{}")
    except ValueError:
        return {"row": row_json}
    if not isinstance(row, dict):
        return {"row": row}
    currency = row.get("currency") if isinstance(row.get("currency"), str) else ""
    readable = {}
    for name, value in row.items():
        if name.endswith("_minor"):
            try:
                readable[name.removesuffix("_minor")] = str(to_major(int(value), currency or "XXX"))
                continue
            except (TypeError, ValueError):
                pass
        readable[name] = value
    return readable


def held_back(engine: sa.Engine, *, flow: str | None = None, run_id: str | None = None, text: str | None = None,
              before: int | None = None, limit: int | None = None) -> dict:
    """Held-back rows, newest first (by id): the reasons and the row's values in major units; and, on the first
    page, the newest records the target refused (``refused``, with its reason)."""
    size = _page(limit)
    query = sa.select(QuarantinedRow).order_by(QuarantinedRow.id.desc()).limit(size + 1)
    if flow:
        query = query.where(QuarantinedRow.flow == flow)
    if run_id:
        query = query.where(QuarantinedRow.run_id == run_id)
    if text:
        query = query.where(_key_match(QuarantinedRow.source_key, text.strip()))
    if before:
        query = query.where(QuarantinedRow.id < before)
    refused_query = (sa.select(Item).where(Item.status == REJECTED).order_by(Item.id.desc()).limit(size))
    if flow:
        refused_query = refused_query.where(Item.flow == flow)
    if run_id:
        refused_query = refused_query.where(Item.run_id == run_id)
    if text:
        refused_query = refused_query.where(_key_match(Item.source_key, text.strip()))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        # the target refused these: shown on the first page beside what the gate held back
        refused = [] if before else conn.execute(refused_query).mappings().all()
    out = [{"id": r["id"], "key": r["source_key"], "flow": r["flow"], "entity": r["entity"], "run_id": r["run_id"],
            "when": _iso(r["created_at"]), "reasons": [p.strip() for p in r["reasons"].split(";") if p.strip()],
            "values": readable_row(r["row"]), "links": links(r["flow"], r["run_id"], "held back")}
           for r in rows[:size]]
    return {"rows": out, "next": out[-1]["id"] if len(rows) > size else None,
            "refused": [{"id": r["id"], "key": r["source_key"], "flow": r["flow"], "system": r["target"],
                         "operation": r["operation"], "reason": r["last_error"] or "", "when": _iso(r["updated_at"]),
                         "run_id": r["run_id"], "links": links(r["flow"], r["run_id"], "item")} for r in refused]}


def runs(engine: sa.Engine, home: Path, *, flow: str | None = None, status: str | None = None,
         before: str | None = None, limit: int | None = None) -> dict:
    """Runs, newest first: status, counts, reconciliation per currency and VAT rate, links to the DAG run, its
    log, its gate report and workbook. Keyset ``before``: the last run's ``cursor`` (its start, flow and run
    id: runs of two flows often start in the same second)."""
    size = _page(limit)
    query = sa.select(Run).order_by(Run.started_at.desc(), Run.flow.desc(), Run.run_id.desc()).limit(size + 1)
    if flow:
        query = query.where(Run.flow == flow)
    if status:
        query = query.where(Run.status == status)
    if before:
        started, _, rest = before.partition("|")
        last_flow, _, last_run = rest.partition("|")
        at = datetime.fromisoformat(started)
        query = query.where(sa.or_(Run.started_at < at, sa.and_(
            Run.started_at == at, sa.or_(Run.flow < last_flow, sa.and_(Run.flow == last_flow, Run.run_id < last_run)))))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = [describe_run(dict(r), home) for r in rows[:size]]
    for run, row in zip(out, rows):
        run["cursor"] = f"{_iso(row['started_at'])}|{row['flow']}|{row['run_id']}"
    return {"runs": out, "next": out[-1]["cursor"] if len(rows) > size else None}


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (ArithmeticError, ValueError, TypeError):
        return None


def reconciliation_rows(summary: dict) -> list[dict]:
    """Per currency, VAT rate and amount: source, target and their difference (the summary's ``source_totals``
    and ``target_totals``), beside what this run sent (``totals``). A summary from before both sides were kept
    has only what was sent: source, target and difference stay empty rather than guessed."""
    groups: dict[tuple, dict] = {}
    for side in ("source", "target", "sent"):
        for row in summary.get({"sent": "totals"}.get(side, f"{side}_totals")) or []:
            group = groups.setdefault((str(row.get("currency")), str(row.get("vat_rate"))), {})
            for name, value in row.items():
                if name not in ("currency", "vat_rate"):
                    group.setdefault(name, {})[side] = _decimal(value)
    out = []
    for (currency, vat_rate), amounts in sorted(groups.items()):
        for name, sides in amounts.items():
            a, b, sent = sides.get("source"), sides.get("target"), sides.get("sent")
            out.append({"currency": currency, "vat_rate": vat_rate, "amount": name,
                        "source": None if a is None else str(a), "target": None if b is None else str(b),
                        "difference": None if a is None or b is None else str(a - b),
                        "sent": None if sent is None else str(sent)})
    return out


def report_path(path: str | None, home: Path) -> str | None:
    """A report's path relative to LEDGERLINK_HOME, or None when it is not a file inside it."""
    if not path:
        return None
    try:
        resolved = Path(path).resolve()
        relative = resolved.relative_to(home.resolve())
    except (ValueError, OSError):
        return None
    return str(relative) if resolved.is_file() else None


def describe_run(run: dict, home: Path) -> dict:
    try:
        summary = json.loads(run.get("summary") or "{}")
    except ValueError:
        summary = {"reason": run.get("summary")}
    if not isinstance(summary, dict):
        summary = {"reason": str(summary)}
    counts = {k: summary[k] for k in ("sent", "created", "updated", "unchanged", "deleted", "quarantined",
                                      "rejected", "changes", "source_count", "target_count")
              if isinstance(summary.get(k), int)}
    return {"flow": run["flow"], "run_id": run["run_id"], "status": run["status"],
            "started_at": _iso(run["started_at"]), "finished_at": _iso(run["finished_at"]),
            "target": summary.get("target"), "counts": counts,
            "reconciliation": reconciliation_rows(summary),
            "differences": [str(d) for d in summary.get("reconciliation") or []],
            "detail": summary.get("error") or summary.get("reconciliation_detail") or summary.get("reason"),
            "next_steps": [str(x) for x in summary.get("next_steps") or []],
            "gate_report": report_path(summary.get("gate_report"), home),
            "workbook": report_path(summary.get("workbook"), home),
            "links": links(run["flow"], run["run_id"], "run")}


def per_day(engine: sa.Engine, *, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Records sent and held back per day (UTC, by the run's start), the last ``days`` days, from each run's
    summary (``sent``, ``quarantined``): a range of the runs' index, a few thousand small rows a month. Counting
    the items and chunks themselves scanned 250,000 index entries a month at 500,000 items (0.9 s on PostgreSQL,
    bench/LEDGER_PAGE.md); the summaries carry the same counts, written when each run closed."""
    days = max(1, min(int(days), 366))
    since = (now or datetime.now(timezone.utc)).replace(hour=0, minute=0, second=0, microsecond=0) \
        - timedelta(days=days - 1)
    counts: dict[str, dict] = {}
    with engine.connect() as conn:
        for started, summary in conn.execute(sa.select(Run.started_at, Run.summary).where(Run.started_at >= since)):
            try:
                figures = json.loads(summary or "{}")
            except ValueError:
                continue
            if not isinstance(figures, dict):
                continue
            if started.tzinfo is None:
                started = started.replace(tzinfo=timezone.utc)
            entry = counts.setdefault(started.astimezone(timezone.utc).date().isoformat(), {"sent": 0, "held_back": 0})
            for name, key in (("sent", "sent"), ("held_back", "quarantined")):
                if isinstance(figures.get(key), int):
                    entry[name] += figures[key]
    out = []
    for offset in range(days):
        d = (since + timedelta(days=offset)).date().isoformat()
        entry = counts.get(d, {})
        out.append({"day": d, "sent": entry.get("sent", 0), "held_back": entry.get("held_back", 0)})
    return out


def exchange_map_page(engine: sa.Engine, exchange_map: ExchangeMap) -> list[dict]:
    """Each entity, its master, its flows with their schedule and last good run."""
    last_good: dict[str, tuple] = {}
    with engine.connect() as conn:
        latest = conn.execute(sa.select(Run.flow, sa.func.max(Run.finished_at)).where(Run.status == SUCCEEDED)
                              .group_by(Run.flow)).all()
        for flow, finished in latest:  # one row per flow: its last good run
            run_id = conn.scalar(sa.select(Run.run_id).where(Run.flow == flow, Run.status == SUCCEEDED,
                                                             Run.finished_at == finished).limit(1))
            last_good[flow] = (run_id, finished)
    out = []
    for entity in exchange_map.entities.values():
        flows = []
        for f in entity.flows:
            good = last_good.get(f.id)
            flows.append({"id": f.id, "title": f.title, "from": f.source, "to": f.target, "schedule": f.schedule,
                          "mode": f.mode, "status": f.status, "gate": f.gate, "fields": list(f.fields),
                          "last_good_run": None if good is None else
                          {"run_id": good[0], "finished_at": _iso(good[1]), "links": links(f.id, good[0], "run")}})
        out.append({"entity": entity.name, "title": entity.title, "master": entity.master,
                    "master_title": exchange_map.systems.get(entity.master, {}).get("title", entity.master),
                    "conflict": entity.conflict_policy, "flows": flows})
    return out
