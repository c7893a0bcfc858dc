"""The Exchange ledger page: a FastAPI app that Airflow's API server mounts under ``/ledgerlink``.

Every route asks Airflow who is calling, exactly as Airflow's own UI and API do: the JWT the UI keeps in its
``_token`` cookie or an ``Authorization: Bearer`` header, checked by the configured auth manager
(:func:`airflow.api_fastapi.core_api.security.get_user`), and the user must be allowed to read DAG runs. An
anonymous API call gets 401; the page itself redirects to Airflow's login.

The app reads the ledger (and billing, for names, tax ids and amounts) when a request comes, never at import
or when the app is built: the plugin builds it in every Airflow process that loads plugins.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urljoin

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from ledgerlink import settings
from ledgerlink.ui import queries

PAGE = Path(__file__).with_name("page.html")
# What the page serves from LEDGERLINK_HOME: the runs' gate reports and workbooks, nothing else there.
SERVED_FOLDER = "reports"
SERVED_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json",
                ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def airflow_user(request: Request) -> Any:
    """The user Airflow's auth manager says is calling (401 without a valid token), allowed to read DAG runs
    (403 otherwise). Airflow's own dependency, imported on the first request: importing the API server's
    security module at plugin load would drag it into the scheduler and the workers."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return user


User = Annotated[Any, Depends(airflow_user)]


@functools.cache
def _ledger_engine():
    from ledgerlink.ledger import Ledger

    return Ledger().engine


_billing_engine: list = []


def billing_engine():
    """Billing's engine through its hook (connection ``billing_default``), made on first use and kept."""
    if not _billing_engine:
        from ledgerlink.billing.hook import BillingHook

        _billing_engine.append(BillingHook().get_engine())
    return _billing_engine[0]


def create_app(*, ledger_engine=None, billing=billing_engine) -> FastAPI:
    """The app. ``ledger_engine``: an engine to read instead of the configured ledger's (the bench); ``billing``:
    a callable giving billing's engine, or None to search the ledger alone."""
    app = FastAPI(title="Ledgerlink: exchange ledger", docs_url=None, redoc_url=None, openapi_url=None)

    def engine():
        return ledger_engine if ledger_engine is not None else _ledger_engine()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request):
        try:
            await airflow_user(request)
        except HTTPException as e:
            if e.status_code != status.HTTP_401_UNAUTHORIZED:
                raise
            # Airflow's login, back here after it (Airflow checks that `next` is on this host)
            login = urljoin(str(request.base_url), "../api/v2/auth/login")  # the base is this app's mount
            return RedirectResponse(f"{login}?{urlencode({'next': str(request.url)})}",
                                    status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/api/search")
    def search(_: User, q: Annotated[str, Query(min_length=1, max_length=200)]) -> dict:
        return queries.search(engine(), q, billing=billing)

    @app.get("/api/planned")
    def planned(_: User, flow: str | None = None, target: str | None = None, after: int | None = None,
                limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50) -> dict:
        return queries.planned(engine(), flow=flow, target=target, after=after, limit=limit)

    @app.get("/api/held-back")
    def held_back(_: User, flow: str | None = None, run_id: str | None = None, key: str | None = None,
                  before: int | None = None, limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50) -> dict:
        return queries.held_back(engine(), flow=flow, run_id=run_id, text=key, before=before, limit=limit)

    @app.get("/api/runs")
    def runs(_: User, flow: str | None = None, run_status: Annotated[str | None, Query(alias="status")] = None,
             before: str | None = None, limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 20) -> dict:
        try:
            return queries.runs(engine(), settings.home(), flow=flow, status=run_status, before=before, limit=limit)
        except ValueError as e:  # a `before` that is no timestamp
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"before: {e}") from None

    @app.get("/api/per-day")
    def per_day(_: User, days: Annotated[int, Query(ge=1, le=366)] = 30) -> list[dict]:
        return queries.per_day(engine(), days=days)

    @app.get("/api/map")
    def exchange_map(_: User) -> list[dict]:
        from ledgerlink.exchange_map import default_map

        return queries.exchange_map_page(engine(), default_map())

    @app.get("/files/{path:path}", include_in_schema=False)
    def report_file(_: User, path: str):
        return FileResponse(**served_file(path))

    @app.exception_handler(FileNotFoundError)
    async def not_found(_request: Request, e: FileNotFoundError):
        return JSONResponse({"detail": str(e)}, status_code=status.HTTP_404_NOT_FOUND)

    return app


def served_file(path: str) -> dict:
    """FileResponse's arguments for ``path`` (relative to LEDGERLINK_HOME): only a report file inside
    ``LEDGERLINK_HOME/reports``; anything else (``..``, an absolute path, a link out of it) is not found."""
    home = settings.home().resolve()
    folder = (home / SERVED_FOLDER).resolve()
    try:
        resolved = (home / path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # no such file, a link loop, a NUL in the name
        raise FileNotFoundError(f"no report {path!r}") from None
    if not resolved.is_relative_to(folder) or not resolved.is_file() or resolved.suffix not in SERVED_TYPES:
        raise FileNotFoundError(f"no report {path!r}")
    answer = {"path": resolved, "media_type": SERVED_TYPES[resolved.suffix]}
    if resolved.suffix == ".xlsx":
        answer["filename"] = f"{resolved.parent.parent.name}-{resolved.parent.name}-{resolved.name}"
    else:  # shown in the page, its scripts never run there
        answer["headers"] = {"Content-Security-Policy": "sandbox"}
    return answer
