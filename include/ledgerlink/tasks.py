"""Glue between Airflow tasks and Ledgerlink's plain functions: run ids, error kinds, connections.

Terminal errors become ``AirflowFailException`` (no retry); transient ones propagate, and Airflow retries
them with exponential backoff.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from datetime import timedelta

log = logging.getLogger(__name__)

DEFAULT_ARGS = {
    "owner": "ledgerlink",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # A task stuck this long is killed and retried: well inside the flow's 6-hour lease (ledger.runs), so the
    # next run never waits on a hung one.
    "execution_timeout": timedelta(hours=2),
}
RUN_TIMEOUT = timedelta(hours=6)  # a DAG run's whole budget, retries included: the flow's lease

# Libraries that talk at INFO about their own plumbing (connection pools, GX's data context, Alembic's
# migration context, paramiko's transport): finance reads task logs, so they speak from WARNING up.
NOISY_LOGGERS = ("urllib3", "great_expectations", "alembic", "paramiko", "sqlalchemy", "fsspec", "filelock",
                 "httpx", "httpcore", "asyncio", "airflow.providers.sftp.hooks.sftp", "airflow.task.hooks")


def quiet_library_loggers() -> None:
    """Library noise at INFO out of the task log (warnings and errors still show)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # A library module that set its own level (GX's data_context.types.base sets INFO) would pass its parent's.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(NOISY_LOGGERS) and \
                logger.level not in (logging.NOTSET,) and logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def fail_fast_on_terminal(step):
    """Wrap a task body: terminal errors fail the task at once, with our message. A database refusing the
    connection for good (a wrong password, an unknown database) is one of them: Airflow's retries would only
    knock on the same door for half an hour."""

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        import sqlalchemy.exc
        from airflow.sdk.exceptions import AirflowFailException

        from ledgerlink.errors import TerminalError, database_refusal

        quiet_library_loggers()
        with task_log_file():
            try:
                return step(*args, **kwargs)
            except TerminalError as e:
                # Said once, in full, as a person reads it; the exception Airflow logs carries only its first
                # line (its traceback would repeat the whole message twice more). The error stays reachable as
                # __context__ for the failure callback.
                log.error("%s", e)
                raise AirflowFailException(_headline(e)) from None
            except sqlalchemy.exc.OperationalError as e:
                refusal = database_refusal(e)
                if refusal is None:
                    raise  # transient: Airflow retries
                log.error("%s", refusal)
                raise AirflowFailException(str(refusal)) from refusal
            except Exception as e:  # noqa: BLE001 - logged for people, then re-raised unchanged
                from ledgerlink.errors import TransientError

                if isinstance(e, TransientError):
                    log.error("%s", e)
                raise

    return wrapper


IN_FULL_ABOVE = " (in full above)"


def _headline(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first if first.endswith(IN_FULL_ABOVE) else first + IN_FULL_ABOVE


def ledgerlink_error_of(error: BaseException | None) -> BaseException | None:
    """The Ledgerlink error behind what Airflow saw (an AirflowFailException raised from it, as cause or as
    context), else the error itself."""
    from ledgerlink.errors import LedgerlinkError

    seen, hops = error, 0
    while seen is not None and hops < 10:
        if isinstance(seen, LedgerlinkError):
            return seen
        seen, hops = seen.__cause__ or seen.__context__, hops + 1
    return error


@contextlib.contextmanager
def task_log_file():
    """Under ``airflow dags test`` (``LEDGERLINK_TASK_LOG_FILES=1``, set by the demo) the task's log lines are also
    written where Airflow's UI reads task logs (``[logging] base_log_folder``, the ``log_filename_template``
    path) as the JSON lines the UI parses: ``dags test`` runs each task in-process and writes no log file, so
    the demo's runs showed green with empty logs. Outside ``dags test`` the task supervisor writes that file
    itself, and this does nothing."""
    if os.environ.get("LEDGERLINK_TASK_LOG_FILES") != "1":
        yield
        return
    try:
        path = _task_log_path()
    except Exception:  # noqa: BLE001 - no context (a plain call, a test): no file, the task runs the same
        path = None
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _JsonLinesHandler(path)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except BaseException as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].removesuffix(IN_FULL_ABOVE)
        logging.getLogger("ledgerlink.task").error("Task failed: %s", first)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def _task_log_path():
    from pathlib import Path

    from airflow.configuration import conf
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    mapped = f"map_index={ti.map_index}/" if getattr(ti, "map_index", -1) is not None and ti.map_index >= 0 else ""
    return Path(conf.get("logging", "base_log_folder")) / (
        f"dag_id={ti.dag_id}/run_id={ti.run_id}/task_id={ti.task_id}/{mapped}attempt={ti.try_number}.log")


class _JsonLinesHandler(logging.FileHandler):
    """One JSON object per line, as Airflow 3's structured task logs are (timestamp, level, logger, event)."""

    def __init__(self, path):
        super().__init__(path, mode="a", encoding="utf-8")

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        event = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            event += "\n" + logging.Formatter().formatException(record.exc_info)
        return json.dumps({"timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                           "level": record.levelname.lower(), "logger": record.name, "event": event},
                          ensure_ascii=False)


def run_status_for(error: BaseException | None) -> str:
    """The ledger status of a run that stopped on this error: a blocked gate (or an intake that refused files) is
    'blocked', the rest 'failed'."""
    from ledgerlink.errors import FilesRefused, GateFailed
    from ledgerlink.ledger import BLOCKED, FAILED

    seen, hops = error, 0
    while seen is not None and hops < 10:  # AirflowFailException wraps ours (as cause, or as context)
        if isinstance(seen, (GateFailed, FilesRefused)):
            return BLOCKED
        seen, hops = seen.__cause__ or seen.__context__, hops + 1
    return FAILED


def close_run_on_failure(flow: str):
    """An Airflow failure callback (task or DAG level) that ends the flow's run in the ledger with its status
    and reason, and releases the flow's lease: a run that failed, was blocked or was killed never stays
    'running'. It never raises: a callback's error would hide the task's own."""

    def callback(context) -> None:
        try:
            run_id = context["run_id"] if "run_id" in context else context["dag_run"].run_id
            error = ledgerlink_error_of(context.get("exception"))
            reason = f"{type(error).__name__}: {error}" if error is not None else \
                str(context.get("reason") or "a task of the run failed")
            task = context.get("task_instance") or context.get("ti")
            where = f"task {task.task_id}: " if task is not None and getattr(task, "task_id", None) else ""
            if ledger().end_run_early(run_id, flow, run_status_for(error), where + reason):
                log.info("Run %s of %s closed as %s in the ledger", run_id, flow, run_status_for(error))
        except Exception:  # noqa: BLE001 - logged with its traceback; the task's own failure stands
            log.exception("Could not close run of %s in the ledger", flow)

    return callback


def current_run_id() -> str:
    from airflow.sdk import get_current_context

    return get_current_context()["run_id"]


def billing_engine(conn_id: str = "billing_default"):
    from ledgerlink.billing.hook import BillingHook

    return BillingHook(conn_id).get_engine()


def onec_client(conn_id: str = "onec_default"):
    from ledgerlink.onec.hook import OneCODataHook

    return OneCODataHook(conn_id).get_conn()


def ledger():
    from ledgerlink.ledger import Ledger

    return Ledger()


def erp_engine(conn_id: str = "erp_default"):
    from ledgerlink.erp.hook import ErpHook

    return ErpHook(conn_id).get_engine()


def einvoice_clients(routing=None) -> dict:
    """Every integrator of the e-invoice routing, by name, each on its own Airflow connection."""
    from ledgerlink.einvoice.hook import EInvoiceIntegratorHook
    from ledgerlink.einvoice.routing import load_routing

    routing = routing or load_routing(os.environ.get("LEDGERLINK_EINVOICE_ROUTING"))
    return {name: EInvoiceIntegratorHook(integrator).get_conn() for name, integrator in routing.integrators.items()}


# The summary that ends every run, and the mail when a run fails ------------------------------------------------
def next_run_phrase(dag, now=None) -> str:
    """When the DAG runs next, for the summary: "at 03:20 UTC" (cron and presets), "at once" (continuous), or
    "when triggered by hand". Read from the DAG's timetable; never raises."""
    from datetime import datetime, timezone

    try:
        timetable = dag.timetable
        expression = (getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
                      or (dag.schedule if isinstance(getattr(dag, "schedule", None), str) else "") or "")
        if "continuous" in str(expression).lower() or "continuous" in type(timetable).__name__.lower():
            return "at once (the DAG runs continuously)"
        if not expression or str(expression).lower() in ("none", "null") or "asset" in str(expression).lower():
            return "when triggered (by hand or by its data)"
        from croniter import croniter

        zone = getattr(timetable, "timezone", None) or getattr(timetable, "_timezone", None) or timezone.utc
        start = (now or datetime.now(timezone.utc)).astimezone(zone)
        upcoming = croniter(str(expression), start).get_next(datetime)
        return f"at {upcoming.strftime('%Y-%m-%d %H:%M')} {upcoming.tzname() or ''}".rstrip()
    except Exception:  # noqa: BLE001 - a phrase for people; the summary is still written without it
        return ""
