"""``ledgerlink.sftp`` against the real OpenSSH sshd: Airflow's SFTPHook with the host key pinned, tuned per
connection and per file, never for the whole process."""
from __future__ import annotations

import json
import os

import paramiko
import paramiko.sftp_file
import pytest

from ledgerlink.errors import ConfigurationError
from ledgerlink.sftp import MAX_REQUEST_SIZE, TunedSFTPHook
from tests.support.sshd import run_sshd, write_ed25519_key

CONN_ID = "drop_sftp"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_sshd(tmp_path_factory.mktemp("sshd")) as info:
        yield info


def use_connection(monkeypatch, server, **extra) -> None:
    extras = {"key_file": str(server.private_key_path), "look_for_keys": False,
              "host_key": server.host_key_line, "no_host_key_check": False, **extra}
    extras = {k: v for k, v in extras.items() if v is not None}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(
        {"conn_type": "sftp", "host": server.host, "port": server.port, "login": server.user, "extra": extras}))


def test_round_trip_with_the_pinned_key_aes_gcm_and_tuned_files(server, monkeypatch, tmp_path):
    use_connection(monkeypatch, server)
    payload = os.urandom(3 * (1 << 20) + 12345)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    opened = []
    original_open = paramiko.SFTPClient.open
    monkeypatch.setattr(paramiko.SFTPClient, "open", lambda *a, **k: opened.append(original_open(*a, **k)) or opened[-1])

    hook = TunedSFTPHook(CONN_ID, conn_retry_attempts=1)
    remote = f"{server.root}/landing.bin"
    with hook.get_managed_conn() as sftp:
        transport = sftp.get_channel().get_transport()
        assert transport.remote_cipher == "aes128-gcm@openssh.com"
        assert transport.remote_compression == "none", "SSHHook would compress; a file drop gains nothing from it"
        hook.store_file(remote, str(local))
        assert sorted(sftp.listdir(str(server.root))) == ["landing.bin"], "the .part name is gone"
        hook.retrieve_file(remote, str(tmp_path / "back.bin"))
    assert (server.root / "landing.bin").read_bytes() == payload
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert [f.MAX_REQUEST_SIZE for f in opened] == [MAX_REQUEST_SIZE, MAX_REQUEST_SIZE]
    assert paramiko.sftp_file.SFTPFile.MAX_REQUEST_SIZE == 32768, "paramiko's class default is left alone"


def test_a_server_with_another_host_key_is_refused(server, monkeypatch, tmp_path):
    other = write_ed25519_key(tmp_path / "other_host_key")
    use_connection(monkeypatch, server, host_key=other)
    with pytest.raises(paramiko.BadHostKeyException):
        TunedSFTPHook(CONN_ID, conn_retry_attempts=1).get_conn()


@pytest.mark.parametrize("extra", [{"host_key": None}, {"host_key": None, "no_host_key_check": True},
                                   {"allow_host_key_change": True}])
def test_a_connection_that_does_not_pin_the_host_key_is_refused_before_connecting(server, monkeypatch, extra):
    use_connection(monkeypatch, server, **extra)
    with pytest.raises(ConfigurationError, match="must pin the server's host key"):
        TunedSFTPHook(CONN_ID, conn_retry_attempts=1)


def test_an_unknown_host_key_is_refused_by_paramiko_too(server, monkeypatch):
    """Airflow's SSHHook without a pin (and no known_hosts entry) rejects the server: our check is a second lock."""
    use_connection(monkeypatch, server, host_key=None)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.ssh/known_hosts to consult
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        SFTPHook(CONN_ID, conn_retry_attempts=1).get_conn()

