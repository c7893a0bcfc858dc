"""``ledgerlink`` (``python -m ledgerlink``): the exchange map, and the ledger's answers for finance and data engineers.

    map                               the exchange map as a table
    migrate                           upgrade the ledger's schema to this code's head (run it once after
                                      installing or upgrading Ledgerlink; a second run does nothing)
    history --target onec --since D   what went where, when, in which request or message (``via``), with
                                      what result: each record sent on its own, and each chunk of a chunked
                                      (SQL) load ("chunk 3 of run R: 200000 lines, acknowledged at ...");
                                      --entity, --since/--until (a period) and --flow narrow it
    planned                           what is waiting to go (or went without a confirmation yet: shown as
                                      "unconfirmed", never "sent"), records and chunks; --target, --entity,
                                      --since/--until
    lines --flow F [--run R] [--key K]  line by line, what a chunked (SQL) load delivered, under its chunks
    quarantine                        what was held back, and why
    runs                              each run, with its status (and its chunks' for a chunked load)
    summary [--check-targets]         the last run of each flow as finance reads it; with --check-targets
                                      also asks each target what it now holds and compares with the ledger;
                                      exits 1 unless every last run succeeded (``--expect-blocked FLOW``:
                                      that flow's blocked run is expected, e.g. the demo's broken CDR file)
    einvoices [--state S] [--invoice I]  each e-invoice: number, ETTN, state at GİB, the integrator that
                                      carried it; with --invoice also every attempt, in order
Each but ``migrate`` takes ``--json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import datetime, timezone


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(nothing)\n"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _airflow_logs_to_stderr():
    """Airflow logs to the stdout of the moment it sets up its logging (on import, here when it is asked for a
    connection); the CLI's stdout is its answer, often JSON for a program, so Airflow's lines go to stderr."""
    return contextlib.redirect_stdout(sys.stderr)


def _print(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(_table(rows, columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledgerlink", description="Ledgerlink: exchange map and ledger.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("map", "history", "planned", "lines", "quarantine", "runs", "summary", "einvoices"):
        command = sub.add_parser(name)
        command.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("history", "planned"):
            command.add_argument("--target", help="a system of the exchange map, e.g. onec")
            command.add_argument("--entity", help="an entity of the exchange map, e.g. invoice")
            command.add_argument("--since", help="ISO date or time, e.g. 2026-01-01 (inclusive)")
            command.add_argument("--until", help="ISO date or time (exclusive)")
        if name == "history":
            command.add_argument("--flow")
        if name in ("quarantine", "runs"):
            command.add_argument("--flow")
        if name == "lines":
            command.add_argument("--flow", required=True)
            command.add_argument("--run", help="one run's lines")
            command.add_argument("--key", help="one record's deliveries, run after run")
        if name == "summary":
            command.add_argument("--check-targets", action="store_true")
            command.add_argument("--expect-blocked", action="append", default=[], metavar="FLOW",
                                 help="a flow whose last run may have ended blocked (the demo's broken file)")
        if name == "einvoices":
            command.add_argument("--state", help="numbered, in_doubt, queued, accepted or rejected")
            command.add_argument("--invoice", help="one billing invoice: its e-invoice and every attempt")
    sub.add_parser("migrate", help="upgrade the ledger's schema (LEDGERLINK_LEDGER_URL, the ledgerlink_ledger "
                                   "connection, or SQLite in LEDGERLINK_HOME)")
    args = parser.parse_args(argv)

    if args.command == "map":
        from ledgerlink.exchange_map import default_map, map_table

        rows = map_table(default_map())
        _print(rows, list(rows[0]), args.json)
        return 0

    if args.command == "migrate":
        from ledgerlink.migrations import migrate

        with _airflow_logs_to_stderr():
            done = migrate()  # the ledger Ledger() would open
        sys.stdout.write(done.describe() + "\n")
        return 0

    from ledgerlink.errors import ConfigurationError
    from ledgerlink.ledger import Ledger

    try:
        with _airflow_logs_to_stderr():
            ledger = Ledger()  # finds the Airflow connection ledgerlink_ledger, if there is one
    except ConfigurationError as e:  # e.g. a ledger not migrated: the message says what to run
        sys.stderr.write(f"{e}\n")
        return 2
    if args.command == "history":
        rows = ledger.history(target=args.target, since=_since(args.since), flow=args.flow, entity=args.entity,
                              until=_since(args.until))
        _print(rows, ["updated_at", "flow", "target", "entity", "what", "target_key", "operation", "via", "result",
                      "attempts"], args.json)
    elif args.command == "planned":
        rows = ledger.planned(target=args.target, entity=args.entity, since=_since(args.since),
                              until=_since(args.until))
        _print(rows, ["planned_at", "flow", "target", "entity", "what", "operation", "via", "result", "attempts"],
               args.json)
    elif args.command == "lines":
        rows = ledger.deliveries(flow=args.flow, run_id=args.run, key=args.key)
        _print(rows, ["acknowledged_at", "run_id", "target", "source_key", "operation", "content_hash"], args.json)
    elif args.command == "quarantine":
        rows = ledger.quarantined(flow=args.flow)
        _print(rows, ["created_at", "flow", "entity", "source_key", "reasons"], args.json)
    elif args.command == "runs":
        rows = ledger.runs(flow=args.flow)
        chunks = _chunks_by_run(ledger.chunks(flow=args.flow))
        for row in rows:
            row["chunks"] = chunks.get((row["flow"], row["run_id"]), {})
        if args.json:
            for row in rows:
                row["summary"] = json.loads(row["summary"]) if row.get("summary") else None
            _print(rows, [], True)
        else:
            for row in rows:
                row["chunks"] = ", ".join(f"{count} {status}" for status, count in row["chunks"].items())
            _print(rows, ["started_at", "flow", "run_id", "status", "chunks"], False)
    elif args.command == "summary":
        return _summary(ledger, args.json, args.check_targets, expect_blocked=args.expect_blocked)
    elif args.command == "einvoices":
        from ledgerlink.ledger import EInvoiceRegister

        register = EInvoiceRegister(ledger.engine)
        rows = register.invoices(states=[args.state] if args.state else None,
                                 invoice_ids=[args.invoice] if args.invoice else None)
        _print(rows, ["invoice_id", "number", "ettn", "document", "type_code", "state", "carrier",
                      "primary_integrator", "gib_status", "integrator_code", "message"], args.json)
        if args.invoice and not args.json:
            sys.stdout.write("\n" + _table(register.attempts(args.invoice), [
                "started_at", "integrator", "action", "outcome", "http_status", "integrator_code", "gib_status",
                "message"]))
    return 0


def _chunks_by_run(chunks: list[dict]) -> dict[tuple[str, str], dict[str, int]]:
    """(flow, run_id) -> how many of the run's chunks are in each status (acknowledged, sent, ...)."""
    counted: dict[tuple[str, str], dict[str, int]] = {}
    for chunk in chunks:
        statuses = counted.setdefault((chunk["flow"], chunk["run_id"]), {})
        statuses[chunk["status"]] = statuses.get(chunk["status"], 0) + 1
    return counted


def _summary(ledger, as_json: bool, check_targets: bool, expect_blocked: list[str] = ()) -> int:
    from ledgerlink.report import RunSummary

    last: dict[str, dict] = {}
    for run in ledger.runs():
        last[run["flow"]] = run
    out, status = [], 0
    for flow, run in sorted(last.items()):
        summary = json.loads(run["summary"]) if run.get("summary") else None
        if run["status"] != "succeeded" and not (run["status"] == "blocked" and flow in expect_blocked):
            status = 1
        # A run closed by its failure callback keeps only {"error": ...}; a closed run keeps the whole summary
        # (which has an "error" field of its own, blank on a good night).
        if summary is None or ("error" in summary and "flow" not in summary and "text" not in summary):
            why = f": {summary['error']}" if summary else ", no summary yet"
            out.append(f"===== Ledgerlink: {flow} =====\nrun {run['run_id']}: {run['status']}{why}")
            continue
        if "entity" not in summary and "text" in summary:  # a file intake or a rating says its own summary
            out.append(summary["text"] if run["status"] == "succeeded" else
                       f"{summary['text']}\nrun {run['run_id']}: {run['status'].upper()}")
        else:
            out.append(RunSummary.from_dict(summary).text())
        if check_targets:
            with _airflow_logs_to_stderr():
                line, agrees = check_target(flow, ledger)
            out.append(line)
            status = status or (0 if agrees else 1)
    if as_json:
        sys.stdout.write(json.dumps({"flows": list(last), "text": out, "ok": status == 0}, default=str) + "\n")
    else:
        sys.stdout.write("\n\n".join(out) + "\n" if out else "no runs yet\n")
    return status


def check_target(flow: str, ledger) -> tuple[str, bool]:
    """Ask the target what it holds now, independently of the run, and compare with the ledger (each flow
    says how to count its target: ``FlowSteps.count_in_target``)."""
    import importlib

    from ledgerlink.flows import FLOW_MODULES

    module = importlib.import_module(FLOW_MODULES[flow]) if flow in FLOW_MODULES else None
    if module is not None and hasattr(module, "check_target"):  # a flow that checks its target its own way
        return module.check_target(ledger)
    steps = getattr(module, "STEPS", None)
    if steps is None or steps.count_in_target is None:
        return f"check: no live check for {flow}", True
    snapshot = ledger.snapshot(flow)
    held, what = steps.count_in_target(snapshot)
    agrees = held == len(snapshot)
    return (f"check: {what} {held} records from Ledgerlink; the ledger has {len(snapshot)} acknowledged: "
            f"{'they agree' if agrees else 'THEY DIFFER'}"), agrees


if __name__ == "__main__":
    raise SystemExit(main())
