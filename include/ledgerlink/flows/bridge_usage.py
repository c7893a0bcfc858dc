"""Conference-bridge CDR files → billing's usage (the intake of issue 21), one file at a time.

Each settled file in the landing folder is fetched, identified by its content hash and then: skipped as a
duplicate when those bytes were taken before under another name; taken as a correction when a file was taken
under its name before (its usage replaces the first file's); refused (moved to ``error/`` with its reason beside
it, nothing loaded) when it does not match its profile, its checksum file disagrees, or its gate blocks it;
otherwise loaded: the rows that passed the gate go into billing's ``usage`` in one transaction, held-back rows are
quarantined naming file, line and field. Every outcome is recorded in the ledger's ``usage_files`` before the file
moves to ``processed/``, so a rerun after a crash at any point ends in the same state.

A refused file does not fail the run: it is set aside where the sender sees it, recorded and reported, and the
files after it are taken (a failed task would only hold them back).
"""
from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ledgerlink import settings
from ledgerlink.billing.usage import call_ids_taken, read_plans, replace_file_usage, usage_id
from ledgerlink.errors import BadInputError, GateFailed
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import SUCCEEDED, Ledger, UsageFiles
from ledgerlink.ledger.usage_files import DUPLICATE, LOADED, REFUSED
from ledgerlink.usage.intake import (ERROR, PROCESSED, Listing, RemoteFile, claimed_checksum, fetch, list_landing,
                                     move_aside, settled)
from ledgerlink.usage.profiles import BRIDGE_PROFILES, FileProfile, read_cdr_file

log = logging.getLogger(__name__)

SPEC = declared("bridge_usage_to_billing", entity="usage", source="bridge", target="billing",
                carries=("customer_ref", "started_at", "duration_seconds", "participants"))
SETTLE_SECONDS = 2.0  # a file whose size and time hold this long is complete (the bridge renames when done, too)


@dataclass
class FileOutcome:
    name: str
    sha256: str
    status: str  # loaded, duplicate, refused (a correction is "loaded" with ``replaced`` set)
    period: str | None = None
    rows_loaded: int = 0
    rows_held_back: int = 0
    reason: str = ""
    replaced: bool = False
    moved_to: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # per step: read, accounts, gate, load (the bench)


@dataclass
class IntakeSummary:
    run_id: str
    files: list[FileOutcome] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # still growing, or waiting for a checksum file
    hostile: list[tuple[str, str]] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)

    def of(self, status: str) -> list[FileOutcome]:
        return [f for f in self.files if f.status == status]

    def as_dict(self) -> dict:
        return {**asdict(self), "text": self.text()}

    def text(self) -> str:
        lines = [f"===== Ledgerlink: {SPEC.id} =====", f"run: {self.run_id}",
                 "what: conference-bridge CDR files -> billing usage",
                 f"files: {len(self.of(LOADED))} loaded ({sum(f.replaced for f in self.files)} as corrections), "
                 f"{len(self.of(DUPLICATE))} duplicate(s) skipped, {len(self.of(REFUSED))} refused, "
                 f"{len(self.waiting)} still settling"]
        lines += [f"  loaded {f.name} (period {f.period}): {f.rows_loaded} call(s)"
                  + (f", {f.rows_held_back} held back" if f.rows_held_back else "")
                  + (" - a correction replacing the file taken before under this name" if f.replaced else "")
                  for f in self.of(LOADED)]
        lines += [f"  duplicate {f.name}: {f.reason}" for f in self.of(DUPLICATE)]
        lines += [f"  REFUSED {f.name} -> {f.moved_to}: {f.reason}" for f in self.of(REFUSED)]
        lines += [f"  not taken: {name!r} {reason}" for name, reason in self.hostile]
        lines += [f"  waiting: {name}" for name in self.waiting]
        return "\n".join(lines)


def take_files(run_id: str, sftp, billing, ledger: Ledger, *, folder: str, landing_dir: Path | None = None,
               profiles: Sequence[FileProfile] = BRIDGE_PROFILES, settle_seconds: float = SETTLE_SECONDS,
               sleep: Callable[[float], None] = time.sleep, max_rows: int | None = None) -> IntakeSummary:
    """Take every settled CDR file in ``folder`` on the open SFTP client ``sftp`` into billing (engine
    ``billing``); see the module's docstring. ``landing_dir``: the local folder files are fetched into."""
    ledger.start_run(run_id, SPEC.id)
    landing_dir = landing_dir or settings.staging_dir(SPEC.id, run_id) / "landing"
    landing_dir.mkdir(parents=True, exist_ok=True)
    listing = list_landing(sftp, folder, profiles)
    steady, waiting = settled(sftp, folder, listing, settle_seconds=settle_seconds, sleep=sleep)
    summary = IntakeSummary(run_id, waiting=waiting, hostile=listing.hostile, undeclared=listing.undeclared)
    files = UsageFiles(ledger.engine, SPEC.id)
    plans = read_plans(billing) if steady else None
    for remote, profile in steady:
        ledger.hold_lease(SPEC.id, run_id)
        try:
            mark = time.perf_counter()
            local, sha256 = fetch(sftp, folder, remote, landing_dir)
            fetched = time.perf_counter() - mark
        except BadInputError as e:
            log.info("%s", e)
            summary.waiting.append(remote.name)
            continue
        try:
            outcome = _take(run_id, sftp, folder, listing, remote, profile, local, sha256, billing, ledger, files,
                            plans, max_rows)
        finally:
            local.unlink(missing_ok=True)
        outcome.seconds["fetch"] = round(fetched, 3)
        summary.files.append(outcome)
    ledger.finish_run(run_id, SPEC.id, SUCCEEDED, summary.as_dict())
    log.info("\n%s", summary.text())
    return summary


def _take(run_id, sftp, folder: str, listing: Listing, remote: RemoteFile, profile: FileProfile, local: Path,
          sha256: str, billing, ledger: Ledger, files: UsageFiles, plans, max_rows) -> FileOutcome:
    name = remote.name

    def refuse(reason: str, period: str | None = None) -> FileOutcome:
        files.record(name=name, sha256=sha256, size=remote.size, status=REFUSED, run_id=run_id, period=period,
                     reason=reason)
        moved = move_aside(sftp, folder, name, ERROR, sha256, listing)
        _write_reason(sftp, moved, reason)
        log.error("Refused %s: %s", name, reason)
        return FileOutcome(name, sha256, REFUSED, period=period, reason=reason, moved_to=moved)

    same_name = files.loaded_under_name(name)
    if same_name is not None and same_name["sha256"] == sha256 and same_name["run_id"] == run_id:
        # taken by an earlier attempt of this run that stopped before the move: finish it
        moved = move_aside(sftp, folder, name, PROCESSED, sha256, listing)
        return FileOutcome(name, sha256, LOADED, period=same_name["period"], rows_loaded=same_name["rows_loaded"],
                           rows_held_back=same_name["rows_held_back"], moved_to=moved)
    first = files.taken_with_content(sha256)
    if first is not None:
        reason = f"the same content as {first['name']!r}, taken by run {first['run_id']}: nothing loaded"
        files.record(name=name, sha256=sha256, size=remote.size, status=DUPLICATE, run_id=run_id, reason=reason,
                     duplicate_of=first["name"], period=first["period"])
        moved = move_aside(sftp, folder, name, PROCESSED, sha256, listing)
        return FileOutcome(name, sha256, DUPLICATE, period=first["period"], reason=reason, moved_to=moved)
    try:
        claimed = claimed_checksum(sftp, folder, listing, name)
        if claimed is not None and claimed != sha256:
            return refuse(f"its checksum file says {claimed}, its content hashes to {sha256}: damaged in transfer "
                          f"or replaced without its checksum")
        mark = time.perf_counter()
        frame = read_cdr_file(local, profile, name)
    except BadInputError as e:
        return refuse(str(e))
    seconds = {"read": time.perf_counter() - mark}
    mark = time.perf_counter()
    period = str(frame["file_period"].iloc[0]) if len(frame) else profile.period_of(name)
    _resolve_accounts(frame, plans)
    frame["taken_before"] = frame["call_id"].isin(
        call_ids_taken(billing, frame["call_id"].dropna().astype(str).tolist(), other_than_file=name))
    from ledgerlink.gates import run_gate, suite_for

    seconds["accounts"] = time.perf_counter() - mark
    mark = time.perf_counter()
    files.forget_held_back(run_id, name)  # a retry of this run gates the file again
    try:
        result = run_gate(frame, suite_for(SPEC.gate, max_rows=max_rows), run_id=run_id, flow=SPEC.id, ledger=ledger,
                          report_dir=settings.reports_dir(SPEC.id, run_id) / settings.safe_name(name))
    except GateFailed as e:
        return refuse(str(e), period)
    passed = result.passed
    seconds["gate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    import pandas as pd

    rows = pd.DataFrame({
        "usage_id": pd.array([usage_id(c) for c in passed["call_id"]], dtype="int64"),
        "customer_id": passed["customer_ref"], "contract_id": passed["contract_id"],
        "tariff_id": passed["tariff_id"], "call_id": passed["call_id"], "started_at": passed["started_at"],
        "duration_seconds": passed["duration_seconds"].astype("int64"),
        "participants": passed["participants"].astype("int64"), "source_file": name})
    loaded = replace_file_usage(billing, name, rows)
    files.record(name=name, sha256=sha256, size=remote.size, status=LOADED, run_id=run_id, period=period,
                 rows_loaded=loaded, rows_held_back=len(result.quarantined),
                 replaces=same_name["id"] if same_name else None)
    moved = move_aside(sftp, folder, name, PROCESSED, sha256, listing)
    seconds["load"] = time.perf_counter() - mark
    return FileOutcome(name, sha256, LOADED, period=period, rows_loaded=loaded,
                       rows_held_back=len(result.quarantined), replaced=same_name is not None, moved_to=moved,
                       seconds={k: round(v, 3) for k, v in seconds.items()})


def _resolve_accounts(frame, plans) -> None:
    """The contract and tariff rating each call with (the caller's plan in the call's period), and whether there
    is one: ``account_known`` for the gate. Looked up once per account and period, not per call."""
    import pandas as pd

    keys = frame["customer_ref"].astype("string").fillna("") + "|" + frame["period"].astype("string").fillna("")
    codes, uniques = pd.factorize(keys)
    found = [plans.for_period(*key.split("|", 1)) if not key.startswith("|") and not key.endswith("|") else None
             for key in uniques]
    contract = pd.array([p.contract_id if p else None for p in found], dtype="string")
    tariff = pd.array([p.tariff_id if p else None for p in found], dtype="string")
    frame["contract_id"] = contract[codes] if len(found) else pd.array([], dtype="string")
    frame["tariff_id"] = tariff[codes] if len(found) else pd.array([], dtype="string")
    frame["account_known"] = frame["contract_id"].notna().to_numpy()


def _write_reason(sftp, moved: str, reason: str) -> None:
    """The refusal's reason beside the refused file on the server, where the sender looks."""
    with sftp.open(posixpath.join(posixpath.dirname(moved), posixpath.basename(moved) + ".reason.txt"), "wb") as out:
        out.write((reason + "\n").encode("utf-8"))


def run_task(run_id: str, conn_id: str) -> dict:
    """The intake's Airflow task: every settled CDR file in the connection's ``remote_root`` into billing."""
    from ledgerlink import tasks
    from ledgerlink.sftp import TunedSFTPHook

    hook = TunedSFTPHook(conn_id)
    folder = hook.get_connection(conn_id).extra_dejson.get("remote_root") or "/"
    with hook.get_managed_conn() as sftp:
        summary = take_files(run_id, sftp, tasks.billing_engine(), tasks.ledger(), folder=folder)
    return {"loaded": len(summary.of(LOADED)), "duplicates": len(summary.of(DUPLICATE)),
            "refused": len(summary.of(REFUSED)), "waiting": len(summary.waiting)}
