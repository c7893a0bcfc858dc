"""The 1C stand-in serves several sessions at once, spending its configured time per OData request in
parallel (as a 1C server's working processes do), and counts what it answers at once; its writes stay whole."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests

from tests.support.onec_standin import USERS, start
from tests.support.sandbox_http import serving

COUNTERPARTIES = "Catalog_Контрагенты"


def sessions_seen(server, reset: bool = False) -> dict:
    return requests.get(f"{server.url}/_sandbox/onec/sessions", params={"reset": int(reset)}, timeout=5).json()


def post_from_threads(server, count: int) -> tuple[float, list[int]]:
    """``count`` creates, each from its own session (thread) at once; the wall time and the statuses."""
    statuses, barrier = [], threading.Barrier(count)

    def create(number: int) -> None:
        session = requests.Session()
        session.auth = next(iter(USERS.items()))
        barrier.wait()
        response = session.post(f"{server.url}/demo/odata/standard.odata/{COUNTERPARTIES}",
                                params={"$format": "json"}, timeout=10,
                                json={"Ref_Key": str(uuid.uuid4()), "Code": f"S{number:05d}",
                                      "Description": f"Сессия {number}"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, statuses


def test_the_time_per_request_overlaps_between_sessions_and_every_write_lands(tmp_path):
    with serving(start(tmp_path, latency_seconds=0.3)) as server:
        sessions_seen(server, reset=True)
        seconds, statuses = post_from_threads(server, 4)
        seen = sessions_seen(server)
        dump = requests.get(f"{server.url}/_sandbox/onec/dump", params={"set": COUNTERPARTIES}, timeout=5).json()
    assert statuses == [201] * 4 and len(dump["value"]) == 4
    assert seen == {"requests": 4, "in_flight": 0, "most_in_flight": 4}
    assert 0.3 <= seconds < 4 * 0.3, "four requests of 0.3 s each were answered one after another"


def test_without_a_latency_setting_1c_answers_at_once(tmp_path):
    with serving(start(tmp_path)) as server:
        assert server.latency_seconds == 0
        seconds, statuses = post_from_threads(server, 1)
    assert statuses == [201] and seconds < 0.3


def test_a_negative_latency_is_refused(tmp_path):
    with pytest.raises(ValueError, match="latency_seconds must not be negative"):
        start(tmp_path, latency_seconds=-0.01)
