"""Airflow Connections, looked up the way Airflow looks them up in this process. Secrets never reach a log line.

Inside a task the Task SDK asks the environment (``AIRFLOW_CONN_*``), a configured secrets backend, then the
API server, which reads the metadata database (connections made in the UI). Outside a task (the
``ledgerlink`` CLI) the Task SDK alone would skip the metadata database, so Airflow's core model is asked:
the secrets backend, the environment, the metadata database.

Airflow treats a source that fails like one that does not know the connection: it logs at debug and asks
the next. That is right for a connection a task cannot work without, but not for an optional one with a
fallback (the ledger): "not defined" must mean every source answered "no", so ``find_connection`` asks each
source again and raises if any of them fails.
"""
from __future__ import annotations

import sys

from ledgerlink.errors import ConnectionLookupError


def in_task() -> bool:
    """True inside a task run by Airflow's Task SDK (a worker, ``airflow dags test``)."""
    # The same test Airflow's own models use: the task runner sets SUPERVISOR_COMMS before the task starts.
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def get_connection(conn_id: str):
    """Airflow's connection ``conn_id``; raises ``AirflowNotFoundException`` when no source gives it."""
    if in_task():
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def find_connection(conn_id: str):
    """Airflow's connection ``conn_id``, or None when every source says it is not defined.

    Raises ``ConnectionLookupError`` when a source fails (a secrets backend that is down or misconfigured, a
    metadata database that cannot be read, an API server error): the connection may be defined there.
    """
    from airflow.exceptions import AirflowNotFoundException

    try:
        return get_connection(conn_id)
    except AirflowNotFoundException:
        _check_every_source_says_no(conn_id)
        return None


def _check_every_source_says_no(conn_id: str) -> None:
    if in_task():
        from airflow.sdk.execution_time.secrets import ExecutionAPISecretsBackend
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        backends = ensure_secrets_backend_loaded()
    else:
        from airflow.configuration import ensure_secrets_loaded

        ExecutionAPISecretsBackend, backends = None, ensure_secrets_loaded()
    for backend in backends:
        source = type(backend).__name__
        try:
            if ExecutionAPISecretsBackend is not None and isinstance(backend, ExecutionAPISecretsBackend):
                found = _ask_api_server(conn_id)  # the backend itself answers None for errors too
            else:
                found = backend.get_connection(conn_id=conn_id) is not None
        except Exception as e:
            raise ConnectionLookupError(conn_id, source, f"{type(e).__name__}: {e}") from e
        if found:
            raise ConnectionLookupError(conn_id, source, "it did not answer the first time, then did: the "
                                                         "source is unreliable")


def _ask_api_server(conn_id: str) -> bool:
    """Whether the API server knows ``conn_id``; raises unless it answers "found" or "not found"."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, GetConnection

    answer = task_runner.SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))
    if isinstance(answer, ErrorResponse):
        if answer.error == ErrorType.CONNECTION_NOT_FOUND:
            return False
        raise RuntimeError(f"API server answered {answer.error.value}: {answer.detail}")
    return True
