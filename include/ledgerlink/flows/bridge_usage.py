"""Conference-bridge CDR files → billing's usage (the intake of issue 21), one file at a time.

Each settled file in the landing folder is fetched, identified by its content hash and then: skipped as a
duplicate when those bytes were taken before under another name; taken as a correction when a file was taken
under its name before (its usage replaces the first file's); refused (moved to ``error/`` with its reason beside
it, nothing loaded) when it does not match its profile, its checksum file disagrees, or its gate blocks it;
otherwise loaded: the rows that passed the gate go into billing's ``usage`` in one transaction, held-back rows are
quarantined naming file, line and field. Every outcome is recorded in the ledger's ``usage_files`` before the file
moves to ``processed/``, so a rerun after a crash at any point ends in the same state.

A refused file is set aside where the sender sees it (``error/``, its reason beside it), recorded and reported,
and the files after it are still taken; then the run ends *blocked* in the ledger and the task fails
(:class:`~ledgerlink.errors.FilesRefused`, not retried), so finance and engineers see it in Airflow as they see a
blocked gate in the other flows.

A file is read, gated and loaded block by block (``profiles.cdr_blocks``, ``gates.BlockGate``,
``billing.usage.file_usage_writer``), in one billing transaction per file: memory holds one block whatever the
file's size; a call id twice across blocks is found by billing's key on the usage id (derived from the call id) and
among the held-back calls, and refuses the file like any blocking defect.
"""
from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ledgerlink import settings
from ledgerlink.billing.usage import DuplicateUsage, file_usage_writer, read_plans, usage_ids
from ledgerlink.errors import BadInputError, FilesRefused, GateFailed
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import BLOCKED, SUCCEEDED, Ledger, UsageFiles
from ledgerlink.ledger.usage_files import DUPLICATE, LOADED, REFUSED
from ledgerlink.usage.intake import (ERROR, PROCESSED, Listing, RemoteFile, claimed_checksum, fetch, list_landing,
                                     move_aside, settled)
from ledgerlink.usage.profiles import BRIDGE_PROFILES, FileProfile, cdr_blocks, check_file

log = logging.getLogger(__name__)

SPEC = declared("bridge_usage_to_billing", entity="usage", source="bridge", target="billing",
                carries=("customer_ref", "started_at", "duration_seconds", "participants"))
# A block: about 150,000 calls. Measured on 1M calls: GX costs ≈ 0.1 s a block whatever its size, so smaller blocks
# cost time; memory holds two blocks (one being gated, one on its way to billing).
BLOCK_BYTES = 16 << 20
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
               sleep: Callable[[float], None] = time.sleep, max_rows: int | None = None,
               block_bytes: int = BLOCK_BYTES) -> IntakeSummary:
    """Take every settled CDR file in ``folder`` on the open SFTP client ``sftp`` into billing (engine
    ``billing``); see the module's docstring. ``landing_dir``: the local folder files are fetched into;
    ``block_bytes``: how much of a file is read, gated and written at a time."""
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
                            plans, max_rows, block_bytes)
        finally:
            local.unlink(missing_ok=True)
        outcome.seconds["fetch"] = round(fetched, 3)
        summary.files.append(outcome)
    ledger.finish_run(run_id, SPEC.id, BLOCKED if summary.of(REFUSED) else SUCCEEDED, summary.as_dict())
    log.info("\n%s", summary.text())
    return summary


def _take(run_id, sftp, folder: str, listing: Listing, remote: RemoteFile, profile: FileProfile, local: Path,
          sha256: str, billing, ledger: Ledger, files: UsageFiles, plans, max_rows, block_bytes: int) -> FileOutcome:
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
        period = check_file(local, profile, name)
    except BadInputError as e:
        return refuse(str(e))
    seconds = {"check": time.perf_counter() - mark}
    from ledgerlink.gates import BlockGate, suite_for

    files.forget_held_back(run_id, name)  # a retry of this run gates the file again
    gate = BlockGate(suite_for(SPEC.gate, max_rows=max_rows), run_id=run_id, flow=SPEC.id, ledger=ledger,
                     report_dir=settings.reports_dir(SPEC.id, run_id) / settings.safe_name(name))
    try:
        loaded = _load(local, profile, name, billing, plans, gate, seconds, block_bytes)
        gate.finish()
    except (BadInputError, GateFailed) as e:
        files.forget_held_back(run_id, name)  # a refused file holds nothing back: it loads nothing
        return refuse(str(e), period)
    mark = time.perf_counter()
    files.record(name=name, sha256=sha256, size=remote.size, status=LOADED, run_id=run_id, period=period,
                 rows_loaded=loaded, rows_held_back=gate.held_back, replaces=same_name["id"] if same_name else None)
    moved = move_aside(sftp, folder, name, PROCESSED, sha256, listing)
    seconds["record_and_move"] = time.perf_counter() - mark
    return FileOutcome(name, sha256, LOADED, period=period, rows_loaded=loaded, rows_held_back=gate.held_back,
                       replaced=same_name is not None, moved_to=moved,
                       seconds={k: round(v, 3) for k, v in seconds.items()})


def _load(local: Path, profile: FileProfile, name: str, billing, plans, gate, seconds: dict,
          block_bytes: int = 0) -> int:
    """Read, gate and write the file block by block, in one billing transaction (a blocking defect found in any
    block, or a call id found twice across blocks, loads nothing); returns the calls written. Memory holds one
    block, whatever the file's size."""
    for step in ("read", "accounts", "gate", "write"):
        seconds.setdefault(step, 0.0)
    try:
        with file_usage_writer(billing, name) as writer:
            blocks = cdr_blocks(local, profile, name, checked=True, block_bytes=block_bytes or BLOCK_BYTES)
            while True:
                mark = time.perf_counter()
                block = next(blocks, None)
                seconds["read"] += time.perf_counter() - mark
                if block is None:
                    break
                mark = time.perf_counter()
                _resolve_accounts(block, plans)
                taken = writer.taken_before(block["call_id"].dropna().astype(str).tolist())
                block["taken_before"] = block["call_id"].isin(taken).to_numpy(dtype=bool) if taken else False
                seconds["accounts"] += time.perf_counter() - mark
                mark = time.perf_counter()
                keep = gate.check(block)  # raises on a blocking defect: the transaction rolls back
                seconds["gate"] += time.perf_counter() - mark
                mark = time.perf_counter()
                ids = usage_ids(block["call_id"].tolist())  # every call id is present: the gate required it
                writer.write(_usage_rows(block, keep, ids, name))
                writer.hold(ids[~keep])
                seconds["write"] += time.perf_counter() - mark
            mark = time.perf_counter()
        seconds["finish"] = time.perf_counter() - mark  # the stream's end (the server's last rows) and the commit
        return writer.rows
    except DuplicateUsage as e:
        rows, sample = _duplicate_calls(local, profile, name, e.usage_ids, block_bytes or BLOCK_BYTES)
        gate.fail(DUPLICATE_CHECK, rows, sample, detail=f"{len(rows)} row(s) share a call id with another row")
        raise AssertionError("unreachable: BlockGate.fail raises") from e


DUPLICATE_CHECK = "call_id unique within the file"  # the usage suite's check of that name


def _usage_rows(block, keep, ids, name: str):
    """Billing's usage rows for a block's calls that passed the gate (text columns stay in Arrow: no Python
    string per row)."""
    import pandas as pd

    passed = block.loc[keep, ["customer_ref", "contract_id", "tariff_id", "call_id", "started_at", "duration_seconds",
                              "participants"]].reset_index(drop=True)
    passed = passed.rename(columns={"customer_ref": "customer_id"})
    passed.insert(0, "usage_id", pd.array(ids[keep], dtype="int64"))
    passed["duration_seconds"] = passed["duration_seconds"].astype("int64")
    passed["participants"] = passed["participants"].astype("int64")
    passed["source_file"] = name
    return passed


def _duplicate_calls(local: Path, profile: FileProfile, name: str, known: list[int],
                     block_bytes: int) -> tuple[list[int], list[dict]]:
    """The rows (positions in the file) whose call id another row of the file carries too, and the first of them
    as the reports show rows: read again, block by block (a refused file's path, not the load's)."""
    import numpy as np

    from ledgerlink.gates.report import SAMPLE_ROWS, row_dict

    def blocks():
        return cdr_blocks(local, profile, name, checked=True, block_bytes=block_bytes)

    wanted = np.array(sorted(set(known)), dtype=np.int64)
    if not len(wanted):  # the database did not name them (SQLite): find them (8 bytes a call, on this path only)
        every = np.concatenate([np.array([], np.int64)] + [usage_ids(b["call_id"].fillna("").tolist())
                                                           for b in blocks()])
        values, counts = np.unique(every, return_counts=True)
        wanted = values[counts > 1][:20]
        del every
    rows, sample, offset = [], [], 0
    for block in blocks():
        hits = np.flatnonzero(np.isin(usage_ids(block["call_id"].fillna("").tolist()), wanted))
        rows += [offset + int(i) for i in hits]
        sample += [row_dict(block, int(i)) for i in hits[:max(SAMPLE_ROWS - len(sample), 0)]]
        offset += len(block)
    return rows, sample


def _resolve_accounts(frame, plans) -> None:
    """The contract and tariff rating each call with (the caller's plan in the call's period), and whether there
    is one: ``account_known`` for the gate. Looked up once per account and period, not per call."""
    import numpy as np
    import pandas as pd

    customers, customer_values = pd.factorize(frame["customer_ref"])
    periods, period_values = pd.factorize(frame["period"])
    width = len(period_values) + 1  # codes shifted by one: -1 (a missing value) becomes 0
    pairs, pair_codes = np.unique((customers.astype(np.int64) + 1) * width + (periods + 1), return_inverse=True)
    contract, tariff = [], []
    for pair in pairs:
        customer, period = (int(code) - 1 for code in divmod(int(pair), width))
        plan = (plans.for_period(customer_values[customer], period_values[period])
                if customer >= 0 and period >= 0 else None)  # a missing value: its own gate check says so
        contract.append(plan.contract_id if plan else None)
        tariff.append(plan.tariff_id if plan else None)
    frame["contract_id"] = pd.array(contract, dtype="string[pyarrow]")[pair_codes] if len(pairs) \
        else pd.array([], dtype="string[pyarrow]")
    frame["tariff_id"] = pd.array(tariff, dtype="string[pyarrow]")[pair_codes] if len(pairs) \
        else pd.array([], dtype="string[pyarrow]")
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
    refused = summary.of(REFUSED)
    if refused:  # the others were taken; the run shows what was refused, and why
        raise FilesRefused(SPEC.id, [(f.name, f.moved_to, f.reason) for f in refused],
                           loaded=len(summary.of(LOADED)))
    return {"loaded": len(summary.of(LOADED)), "duplicates": len(summary.of(DUPLICATE)),
            "refused": len(summary.of(REFUSED)), "waiting": len(summary.waiting)}
