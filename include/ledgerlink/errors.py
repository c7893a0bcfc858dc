"""Error kinds. Transient errors are retried by Airflow with backoff; terminal ones fail the task at once.

Each carries its facts as attributes and says, in its message, what a person can do about it.
"""
from __future__ import annotations


class LedgerlinkError(Exception):
    """Base of every error Ledgerlink raises on purpose."""


class TransientError(LedgerlinkError):
    """Worth retrying: timeouts, connection resets, 5xx, 429."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(LedgerlinkError):
    """Retrying cannot help: bad data, a refused request, a broken configuration."""


class ExchangeMapError(TerminalError):
    """The exchange map is malformed; the message names the entity and key at fault."""

    def __init__(self, entity: str, key: str, problem: str):
        super().__init__(f"exchange map: entity {entity!r}, key {key!r}: {problem}")
        self.entity = entity
        self.key = key
        self.problem = problem


class ConfigurationError(TerminalError):
    """A connection or setting is missing or unusable."""


class ConnectionLookupError(TransientError):
    """A source Airflow reads connections from failed (a secrets backend, the metadata database, the API
    server): the connection may be defined there, so nothing falls back to a default."""

    def __init__(self, conn_id: str, source: str, problem: str):
        super().__init__(f"Airflow connection {conn_id!r}: {source} failed ({problem}); fix that source or "
                         f"its configuration ([secrets] backend, the metadata database), then retry")
        self.conn_id = conn_id
        self.source = source
        self.problem = problem


class BadInputError(TerminalError):
    """Input that cannot be read; names the file, row and field."""

    def __init__(self, source: str, problem: str, *, row: int | None = None, field: str | None = None):
        where = source + (f", row {row}" if row is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.row = row
        self.field = field
        self.problem = problem


class BadFileError(BadInputError):
    """A file that does not match its declared format (encoding, separator, dates, newline, columns); names the
    file, the line (1 is the header) and the field."""

    def __init__(self, file: str, problem: str, *, line: int | None = None, field: str | None = None):
        TerminalError.__init__(self, file + (f", line {line}" if line is not None else "")
                               + (f", field {field!r}" if field else "") + f": {problem}")
        self.source = file
        self.row = self.line = line
        self.field = field
        self.problem = problem


class GateFailed(TerminalError):
    """A blocking expectation failed: nothing was loaded. The report is saved before this is raised."""

    def __init__(self, entity: str, failed: list[str], sample: list[dict], report_path: str | None):
        lines = [f"gate for {entity!r} blocked the load: {len(failed)} blocking expectation(s) failed"]
        lines += [f"  - {name}" for name in failed]
        if sample:
            lines.append("  first offending rows:")
            lines += [f"    {row}" for row in sample]
        if report_path:
            lines.append(f"  report: {report_path}")
        super().__init__("\n".join(lines))
        self.entity = entity
        self.failed = failed
        self.sample = sample
        self.report_path = report_path


class FilesRefused(TerminalError):
    """An intake refused files (a blocking defect: nothing of them loaded); each went to ``error/`` with its reason
    beside it. The run's other files were taken; the run ends blocked so that it is seen."""

    def __init__(self, flow: str, refused: list[tuple[str, str, str]], *, loaded: int = 0):
        lines = [f"{flow}: {len(refused)} file(s) refused, nothing of them loaded ({loaded} other file(s) loaded)"]
        for name, moved_to, reason in refused:
            lines.append(f"  - {name} -> {moved_to}: " + reason.replace("\n", "\n    "))
        super().__init__("\n".join(lines))
        self.flow = flow
        self.refused = refused


class ReconciliationError(TerminalError):
    """Source and target disagree after a load; the message shows both figures."""

    def __init__(self, flow: str, differences: list[str]):
        super().__init__(f"reconciliation of {flow!r} failed:\n" + "\n".join(f"  - {d}" for d in differences))
        self.flow = flow
        self.differences = differences


class RemoteRejected(TerminalError):
    """The receiving system refused an item for a reason retrying will not fix (a 4xx, a business error)."""

    def __init__(self, system: str, status: int, code: str | None, message: str):
        super().__init__(f"{system} refused the request: HTTP {status}, code {code}: {message}")
        self.system = system
        self.status = status
        self.code = code
        self.remote_message = message


class NotStored(RemoteRejected):
    """The target answered a write with success but did not keep what was sent: a property its configuration
    does not have (1C ignores unknown properties) or a value cut to a shorter attribute. Retrying would lose the
    same again, so the item is refused, naming each field with what was sent and what was kept."""

    def __init__(self, system: str, entity: str, key: str, fields: dict[str, tuple]):
        detail = "; ".join(f"{name}: sent {sent!r}, {system} kept {kept!r}" for name, (sent, kept) in fields.items())
        TerminalError.__init__(
            self, f"{system} accepted {entity} {key} but did not keep {sorted(fields)} ({detail}). Its configuration "
                  f"lacks the property or holds a shorter value: ask the {system} administrator to add or lengthen "
                  f"it, or change the value at its source, then re-run.")
        self.system = system
        self.status = None
        self.code = None
        self.remote_message = detail
        self.entity = entity
        self.key = key
        self.fields = fields


class ValueDoesNotFit(RemoteRejected):
    """A value longer than the target's attribute: refused before sending, since the target would cut it."""

    def __init__(self, system: str, entity: str, key: str, field: str, value: str, limit: int):
        TerminalError.__init__(
            self, f"{entity} {key}: {field} has {len(value)} characters, {system} keeps at most {limit} ({value!r}); "
                  f"nothing was sent. Shorten it at its source, then re-run.")
        self.system = system
        self.status = None
        self.code = None
        self.remote_message = f"{field} longer than {limit}"
        self.entity = entity
        self.key = key
        self.field = field
        self.limit = limit


class MissingReference(RemoteRejected):
    """The target has no object for a reference we must write (a country missing from 1C's catalog)."""

    def __init__(self, system: str, catalog: str, what: str, hint: str):
        TerminalError.__init__(self, f"{system} has no {what} in {catalog}: {hint}, then re-run.")
        self.system = system
        self.status = None
        self.code = None
        self.remote_message = f"{what} missing in {catalog}"
        self.catalog = catalog
        self.what = what


class HeldBack(TerminalError):
    """A record the target adapter will not write now, and not a refusal: an edit made in the target since our last
    write (conflict policy ``target_edits_held``), or something it points at that the target does not hold yet.
    The delivery lifecycle quarantines it with ``reasons`` and ``row`` (both sides' values, for finance); a later
    run sends it again once it differs from what the target acknowledged."""

    def __init__(self, entity: str, key: str, reasons: list[str], row: dict | None = None):
        super().__init__(f"{entity} {key} held back: " + "; ".join(reasons))
        self.entity = entity
        self.key = key
        self.reasons = list(reasons)
        self.row = dict(row or {})


class ConflictError(TransientError):
    """The target changed under us (412, DataVersion moved); re-read and try again."""


class FlowBusy(TerminalError):
    """Another run of the same flow holds its lease: this run stops at once, having changed nothing."""

    def __init__(self, flow: str, holder_run_id: str, since, until):
        super().__init__(
            f"flow {flow!r} is already being run by run {holder_run_id!r}"
            + (f" (since {since}, lease until {until})" if since else "")
            + ": this run stopped before changing anything. Trigger it again once that run has finished; "
              "two runs at once would send the same changes twice.")
        self.flow = flow
        self.holder_run_id = holder_run_id


class RunSuperseded(TerminalError):
    """A run asked to go on after a later run of the same flow started: replaying it would undo newer work."""

    def __init__(self, flow: str, run_id: str, later_run_id: str):
        super().__init__(f"run {run_id!r} of flow {flow!r} was superseded by run {later_run_id!r}, which started "
                         f"after it: replaying it would send older data over newer. Nothing was changed; trigger a "
                         f"new run instead.")
        self.flow = flow
        self.run_id = run_id
        self.later_run_id = later_run_id


class AuthenticationFailed(TerminalError):
    """The target refused our credentials (401/403): one error for the run, not a refusal per record."""

    def __init__(self, system: str, status: int, conn_hint: str, message: str):
        super().__init__(f"{system} refused Ledgerlink's credentials (HTTP {status}): {message}. Nothing more was "
                         f"sent this run. Check the login and password of the Airflow connection {conn_hint}.")
        self.system = system
        self.status = status


class DatabaseRefused(TerminalError):
    """A database refused the connection for a reason a retry cannot cure: a wrong password, an unknown role or
    database, no access rule for this host. One error for the run, naming what to fix; never retried."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"the database at {url} refused the connection: {reason}. Nothing was changed; check the "
                         f"Airflow connection's login, password and database name (retrying cannot fix this).")
        self.reason = reason


# What PostgreSQL says (FATAL, at connection time) when the connection's settings are wrong. libpq hands these
# over as text without an SQLSTATE, so they are recognised by their words; the server's other FATAL answers at
# connection time ("sorry, too many clients already", "the database system is starting up") stay transient.
_REFUSALS = ("password authentication failed", "no pg_hba.conf entry", "permission denied for database",
             "no password supplied", "Ident authentication failed", "Peer authentication failed")


def database_refusal(error: BaseException) -> DatabaseRefused | None:
    """``error`` (SQLAlchemy's ``OperationalError``) as a :class:`DatabaseRefused` when the server refused the
    connection for good, else None. Names the server as the driver did, never the password."""
    import re

    import sqlalchemy.exc

    if not isinstance(error, sqlalchemy.exc.OperationalError):
        return None
    text = " ".join(str(error.orig).split())
    if "FATAL:" not in text:
        return None
    fatal = text[text.index("FATAL:") + len("FATAL:"):].strip()
    if not (any(phrase in fatal for phrase in _REFUSALS) or re.match(r'(role|database) ".*" does not exist', fatal)):
        return None
    server = re.search(r'server at "([^"]+)", port (\d+)', text)
    return DatabaseRefused(f"{server.group(1)}:{server.group(2)}" if server else "the configured server", fatal)
