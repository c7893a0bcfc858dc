"""The 1C stand-in for tests that speak to it over HTTP: one way to start it, and a thin test client.

Modules use the fixtures by importing them: ``from tests.support.onec_standin import api, onec  # noqa: F401``.
"""
from __future__ import annotations

import pytest
import requests

from sandbox.onec.server import make_server
from tests.support.sandbox_http import serving

USERS = {"ledgerlink": "secret"}


def start(tmp_path, **options):
    """A stand-in on a free port with its infobase in ``tmp_path`` (not yet serving: see ``serving``)."""
    return make_server("127.0.0.1", 0, db_path=tmp_path / "onec.sqlite", users=USERS, base="/demo",
                       exchange_poll_seconds=None, **options)


class Api:
    """A thin OData client for the tests: JSON asked for, Basic auth, paths relative to the service root."""

    def __init__(self, server):
        self.server = server
        self.root = server.url + "/demo/odata/standard.odata/"
        self.session = requests.Session()
        self.session.auth = ("ledgerlink", "secret")
        self.session.headers["Accept"] = "application/json"

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, self.root + path, timeout=5, **kw)

    def create(self, entity_set: str, **fields) -> dict:
        response = self("POST", entity_set, json=fields)
        assert response.status_code == 201, response.text
        return response.json()

    def patch(self, entity_set: str, ref_key: str, headers: dict | None = None, **fields) -> requests.Response:
        return self("PATCH", f"{entity_set}(guid'{ref_key}')", json=fields, headers=headers or {})

    def get(self, entity_set: str, ref_key: str) -> dict:
        response = self("GET", f"{entity_set}(guid'{ref_key}')")
        assert response.status_code == 200, response.text
        return response.json()

    def rows(self, entity_set: str, **params) -> list[dict]:
        response = self("GET", entity_set, params=params)
        assert response.status_code == 200, response.text
        return response.json()["value"]


@pytest.fixture
def onec(tmp_path):
    with serving(start(tmp_path)) as server:
        yield server


@pytest.fixture
def api(onec):
    client = Api(onec)
    yield client
    client.session.close()
