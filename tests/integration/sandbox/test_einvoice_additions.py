"""The stand-ins' additions for issue 22: GİB's e-Fatura user list served by the REST integrator, faults that
follow each other (``after``), and a 429 that says when to come back (``retry_after``)."""
from __future__ import annotations

import requests

from sandbox.einvoice import rest_integrator
from sandbox.einvoice.gib import Gib
from sandbox.httpbase import set_faults
from tests.support.sandbox_http import serving


def test_the_rest_integrator_serves_gibs_user_list_and_faults_follow_each_other(tmp_path):
    gib = Gib(tmp_path / "gib.db")
    gib.register_user("4549617050", "Toros Sağlık A.Ş.")
    gib.register_user("4549617050", "Toros Sağlık A.Ş.")  # registering again changes nothing
    with serving(rest_integrator.make_server("127.0.0.1", 0, gib, {"key": "t"})) as server:
        auth = {"Authorization": "Bearer key"}
        users = requests.get(f"{server.url}/v1/users", headers=auth, timeout=5).json()["users"]
        assert [(u["identifier"], u["title"]) for u in users] == [("4549617050", "Toros Sağlık A.Ş.")]
        assert requests.get(f"{server.url}/v1/users", timeout=5).status_code == 401
        set_faults(server.url, [{"mode": "error", "status": 429, "retry_after": 7, "after": 1, "count": 1,
                                 "methods": ["GET"]}])
        answers = [requests.get(f"{server.url}/v1/users", headers=auth, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 429, 200]
        assert answers[1].headers["Retry-After"] == "7"
