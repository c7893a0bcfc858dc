"""The SFTP and SMTP stand-ins misbehave on request, with the HTTP stand-ins' fault rules."""
from __future__ import annotations

import smtplib

import paramiko
import pytest

from sandbox.sftp_server import SftpServer
from sandbox.smtp_sink import SmtpSink


@pytest.fixture
def sftp_server(tmp_path):
    with SftpServer("127.0.0.1", 0, tmp_path / "root", tmp_path / "host_key", users={"u": {"password": "pw"}}) as server:
        yield server


def _client(server: SftpServer) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(hostkey=server.host_key, username="u", password="pw")
    return transport, paramiko.SFTPClient.from_transport(transport)


def test_sftp_error_then_recovery(sftp_server):
    sftp_server.faults.set([{"mode": "error", "count": 1, "methods": ["open"]}])
    transport, sftp = _client(sftp_server)
    try:
        with pytest.raises(IOError):
            sftp.open("/a.txt", "w")
        with sftp.open("/a.txt", "w") as handle:
            handle.write(b"second try")
        assert (sftp_server.root / "a.txt").read_bytes() == b"second try"
    finally:
        transport.close()


def test_sftp_drop_after_apply_leaves_the_change_made(sftp_server):
    (sftp_server.root / "old.csv").write_text("x")
    sftp_server.faults.set([{"mode": "drop_after_apply", "count": 1, "methods": ["rename"]}])
    transport, sftp = _client(sftp_server)
    try:
        with pytest.raises((EOFError, OSError, paramiko.SSHException)):
            sftp.posix_rename("/old.csv", "/new.csv")
    finally:
        transport.close()
    assert (sftp_server.root / "new.csv").exists() and not (sftp_server.root / "old.csv").exists()


def test_smtp_error_then_drop_after_apply(tmp_path):
    with SmtpSink("127.0.0.1", 0, tmp_path / "mail") as sink:
        sink.faults.set([{"mode": "error", "status": 451, "count": 1, "methods": ["MAIL"]}])
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("a@example.com", ["b@example.com"], "Subject: one\n\nhello")
            assert refused.value.smtp_code == 451
        sink.faults.set([{"mode": "drop_after_apply", "count": 1, "methods": ["DATA"]}])
        with pytest.raises(smtplib.SMTPServerDisconnected):
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
                client.sendmail("a@example.com", ["b@example.com"], "Subject: two\n\nhello")
        assert [m["Subject"] for m in sink.messages()] == ["two"], "stored, though the client never heard"


def test_the_world_control_server_sets_rules_on_non_http_stand_ins(tmp_path):
    import json
    import urllib.request

    from sandbox.__main__ import make_control_server
    from sandbox.httpbase import FaultPlan

    plans = {"sftp": FaultPlan(), "smtp": FaultPlan()}
    control = make_control_server("127.0.0.1", 0, plans)
    control.start_in_thread()
    try:
        rules = [{"mode": "latency", "seconds": 0.1, "methods": ["open"]}]
        request = urllib.request.Request(control.url + "/_sandbox/faults/sftp", data=json.dumps(rules).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read()) == rules
        assert plans["sftp"].rules() == rules and plans["smtp"].rules() == []
        with urllib.request.urlopen(urllib.request.Request(control.url + "/_sandbox/faults/sftp", method="DELETE"),
                                    timeout=5):
            pass
        assert plans["sftp"].rules() == []
    finally:
        control.shutdown()
        control.server_close()
