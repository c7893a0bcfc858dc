"""Run the real OpenSSH ``sshd`` for a test or a benchmark: its own config, host key and client key, on 127.0.0.1.

    with run_sshd(tmp_path) as server:
        with sftp_client(server) as sftp:
            sftp.put(local, f"{server.root}/in/file.csv")

The server is key-only (``UsePAM no``, no passwords), serves SFTP with ``internal-sftp`` starting in
``root`` (no chroot: OpenSSH refuses one under the world-writable ``/tmp``), and listens on a free high
port. It logs in as the user running the tests; as root that needs ``PermitRootLogin prohibit-password``.
When ``sshd`` is missing the test is skipped, unless ``CI`` is set, where that is a failure:
``.ci/run`` installs openssh-server.
"""
from __future__ import annotations

import base64
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devtools import server_missing

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")
START_TIMEOUT_SECONDS = 10.0
PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class SshdInfo:
    host: str
    port: int
    user: str
    private_key_path: Path  # OpenSSH-format Ed25519 key the server accepts for ``user``
    host_key_line: str  # "ssh-ed25519 AAAA...": pin it (Airflow: the connection's host_key extra)
    root: Path  # where SFTP sessions start; remote paths under it are the same strings as local ones
    log_path: Path | None = None


def find_sshd() -> str:
    """The sshd binary's absolute path (sshd re-executes itself and insists on one)."""
    found = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("sshd")
    if found:
        return found
    server_missing("OpenSSH sshd is not installed (apt-get install openssh-server)")


def write_ed25519_key(path: Path) -> str:
    """Write a new private key (0600, OpenSSH format) and return its public line."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode("ascii")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; the caller retries if something takes it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_for_banner(process: subprocess.Popen, host: str, port: int, deadline: float) -> bool:
    """True once the port answers with an SSH banner; False if sshd exited first."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as probe:
                if probe.recv(16).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on {host}:{port} within {START_TIMEOUT_SECONDS} s")


def _config(folder: Path, port: int, host_key: Path, authorized_keys: Path, user: str, root: Path) -> str:
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        "StrictModes no",  # pytest's tmp folders are not laid out the way sshd's ownership checks want
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PrintMotd no",
        f"Subsystem sftp internal-sftp -d {root}",
        "LogLevel INFO",
        "",
    ])


@contextlib.contextmanager
def run_sshd(tmp_path: Path) -> Iterator[SshdInfo]:
    """Start sshd in ``tmp_path/sshd`` and stop it on exit; yields how to reach it."""
    sshd = find_sshd()
    folder = Path(tmp_path) / "sshd"
    root = Path(tmp_path) / "sftp-root"
    folder.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    host_key = folder / "ssh_host_ed25519_key"
    host_key_line = write_ed25519_key(host_key)
    client_key = folder / "id_ed25519"
    authorized_keys = folder / "authorized_keys"
    authorized_keys.write_text(write_ed25519_key(client_key) + "\n")
    user = getpass.getuser()
    log_path = folder / "sshd.log"
    config = folder / "sshd_config"

    process = None
    for _attempt in range(PORT_ATTEMPTS):
        port = free_port()
        config.write_text(_config(folder, port, host_key, authorized_keys, user, root))
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        if _wait_for_banner(process, "127.0.0.1", port, time.monotonic() + START_TIMEOUT_SECONDS):
            break
        output = log_path.read_text(errors="replace")
        if "Address already in use" not in output and "Bind to port" not in output:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{output}")
        process = None  # the port was taken between probing and binding: try another
    if process is None:
        raise RuntimeError(f"sshd found no free port in {PORT_ATTEMPTS} attempts:\n{log_path.read_text()}")
    try:
        yield SshdInfo("127.0.0.1", port, user, client_key, " ".join(host_key_line.split()[:2]), root, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def pinned_ssh_client(host: str, port: int, host_key_line: str) -> paramiko.SSHClient:
    """An SSH client that knows only this host key and refuses any other."""
    key_type, key_base64 = host_key_line.split()[:2]
    client = paramiko.SSHClient()
    known_name = host if port == 22 else f"[{host}]:{port}"
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_base64))
    client.get_host_keys().add(known_name, key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


@contextlib.contextmanager
def sftp_client(server: SshdInfo) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session on ``server`` with its host key pinned and the test's client key."""
    client = pinned_ssh_client(server.host, server.port, server.host_key_line)
    try:
        client.connect(server.host, server.port, username=server.user, key_filename=str(server.private_key_path),
                       allow_agent=False, look_for_keys=False, timeout=10)
        sftp = client.open_sftp()
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        client.close()
