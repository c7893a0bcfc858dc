"""A real ``airflow api-server`` for a test: its metadata database migrated, started on a free loopback port with
the project's plugins, logged into with the simple auth manager's generated password file, stopped after."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrate_metadata(env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@contextlib.contextmanager
def api_server(env: dict, log_path: Path):
    """Yields {"url", "username", "password", "env"}; the server's output goes to ``log_path``."""
    port = free_port()
    env = {**env, "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__WORKERS": "1", "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False"}
    home = Path(env["AIRFLOW_HOME"])
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--port", str(port)], env=env,
                                  cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"api-server exited: {log_path.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"api-server did not answer: {log_path.read_text()[-3000:]}"
            time.sleep(1)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        yield {"url": url, "username": "admin", "password": passwords["admin"], "env": env, "log": log_path}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def token(server: dict) -> str:
    """A JWT from ``POST /auth/token``, as an API client gets one."""
    answer = httpx.post(f"{server['url']}/auth/token",
                        json={"username": server["username"], "password": server["password"]}, timeout=30)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["access_token"]
