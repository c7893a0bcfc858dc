"""SFTP round trips with pinned host keys: the embedded paramiko server, and the real OpenSSH sshd."""
from __future__ import annotations

import io

import paramiko
import pytest

from devtools import sshd as sshd_support
from devtools.sshd import pinned_ssh_client, run_sshd, sftp_client, write_ed25519_key
from sandbox.sftp_server import SftpServer

USER = "ledgerlink"
PASSWORD = "sftp-secret"


@pytest.fixture
def client_key(tmp_path):
    path = tmp_path / "id_ed25519"
    return path, write_ed25519_key(path)


@pytest.fixture
def embedded(tmp_path, client_key):
    server = SftpServer("127.0.0.1", 0, tmp_path / "root", tmp_path / "host_key",
                        users={USER: {"password": PASSWORD, "public_key": client_key[1]}})
    with server:
        yield server


def connect(server: SftpServer, **auth) -> paramiko.SSHClient:
    client = pinned_ssh_client("127.0.0.1", server.port, server.host_key_line)
    client.connect("127.0.0.1", server.port, username=USER, allow_agent=False, look_for_keys=False, timeout=10,
                   **auth)
    return client


def test_embedded_server_round_trip_with_password(embedded):
    client = connect(embedded, password=PASSWORD)
    try:
        sftp = client.open_sftp()
        sftp.mkdir("/inbox")
        sftp.putfo(io.BytesIO(b"call_id\n1\n"), "/inbox/.cdr.csv.part")
        sftp.posix_rename("/inbox/.cdr.csv.part", "/inbox/cdr.csv")
        assert [a.filename for a in sftp.listdir_attr("/inbox")] == ["cdr.csv"]
        assert sftp.stat("/inbox/cdr.csv").st_size == 10
        assert sftp.lstat("inbox/cdr.csv").st_size == 10
        with sftp.open("/inbox/cdr.csv", "rb") as remote:
            assert remote.read() == b"call_id\n1\n"
        assert (embedded.root / "inbox" / "cdr.csv").read_bytes() == b"call_id\n1\n"

        sftp.putfo(io.BytesIO(b"other"), "/inbox/other.csv")
        with pytest.raises(OSError):
            sftp.rename("/inbox/other.csv", "/inbox/cdr.csv")  # plain rename never overwrites
        sftp.rename("/inbox/other.csv", "/inbox/done.csv")
        sftp.remove("/inbox/done.csv")
        sftp.remove("/inbox/cdr.csv")
        sftp.rmdir("/inbox")
        assert sftp.listdir("/") == []
    finally:
        client.close()


def test_embedded_server_keeps_clients_inside_root(embedded, client_key, tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    (embedded.root / "escape").symlink_to(tmp_path)
    client = connect(embedded, key_filename=str(client_key[0]))
    try:
        sftp = client.open_sftp()
        assert sftp.normalize("../../..") == "/"
        with pytest.raises(FileNotFoundError):
            sftp.stat("/../secret.txt")  # ".." stops at the root: this is root/secret.txt
        with pytest.raises(PermissionError):
            sftp.open("/escape/secret.txt")
        with pytest.raises(PermissionError):
            sftp.listdir("/escape")
    finally:
        client.close()


def test_embedded_server_refuses_wrong_credentials_and_keeps_its_host_key(embedded, tmp_path):
    with pytest.raises(paramiko.AuthenticationException):
        connect(embedded, password="wrong")
    assert embedded.host_key_line.startswith("ssh-ed25519 AAAA")
    assert embedded.host_key_fingerprint.startswith("SHA256:")
    again = SftpServer("127.0.0.1", 0, tmp_path / "root", tmp_path / "host_key", users={})
    assert again.host_key_line == embedded.host_key_line, "the key file is reused, not regenerated"


def test_a_client_pinning_another_key_is_refused(embedded, tmp_path):
    other = SftpServer("127.0.0.1", 0, tmp_path / "root2", tmp_path / "other_key", users={})
    client = pinned_ssh_client("127.0.0.1", embedded.port, other.host_key_line)
    try:
        with pytest.raises(paramiko.BadHostKeyException):
            client.connect("127.0.0.1", embedded.port, username=USER, password=PASSWORD, allow_agent=False,
                           look_for_keys=False, timeout=10)
    finally:
        client.close()


def test_real_openssh_round_trip(tmp_path):
    with run_sshd(tmp_path) as server, sftp_client(server) as sftp:
        remote = f"{server.root}/landing"
        sftp.mkdir(remote)
        sftp.putfo(io.BytesIO(b"hello sshd"), f"{remote}/.a.part")
        sftp.posix_rename(f"{remote}/.a.part", f"{remote}/a.csv")
        assert sftp.listdir(remote) == ["a.csv"]
        with sftp.open(f"{remote}/a.csv", "rb") as handle:
            assert handle.read() == b"hello sshd"
        assert (server.root / "landing" / "a.csv").read_bytes() == b"hello sshd"
        assert sftp.normalize(".") == str(server.root)


def test_missing_sshd_skips_locally_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(sshd_support, "SSHD_CANDIDATES", ("/nonexistent/sshd",))
    monkeypatch.setattr(sshd_support.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        sshd_support.find_sshd()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        sshd_support.find_sshd()
