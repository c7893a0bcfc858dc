"""`make up` as a person expects (scripts/up.sh): the UI on loopback at the port env.sh sets, the login explained,
and stopping Airflow stops the sandbox (and leaves no Airflow process behind)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_make_up_serves_on_loopback_and_stopping_it_stops_the_sandbox(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEDGERLINK", "SANDBOX"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "LEDGERLINK_HOME": str(tmp_path / "home"),
                "SANDBOX_DIR": str(tmp_path / "sandbox"), "LEDGERLINK_UI_PORT": str(port)})
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen(["bash", "scripts/up.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/version", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
                time.sleep(3)
        outside = _outside_address()
        if outside:
            with pytest.raises(OSError):
                socket.create_connection((outside, port), timeout=3).close()
        text = (tmp_path / "up.log").read_text()
        passwords = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
        assert f"http://127.0.0.1:{port}" in text and str(passwords) in text
        assert "start paused" in text
        assert "admin" in json.loads(passwords.read_text()), "the password file the message names exists"
        sandbox_pid = json.loads((tmp_path / "sandbox" / "world.json").read_text())["pid"]
        assert _alive(sandbox_pid)
    finally:
        os.kill(up.pid, signal.SIGTERM)  # as a supervisor (or a closed terminal) stops it
        try:
            up.wait(timeout=120)
        finally:
            if _group_alive(up.pid):  # whatever is left of this test's processes, and only them
                os.killpg(up.pid, signal.SIGKILL)
            log.close()
    deadline = time.monotonic() + 30
    while _alive(sandbox_pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(sandbox_pid), "the sandbox kept running after Airflow stopped"
    assert not _port_open(port), "Airflow's API server kept running"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True
