"""The SMTP sink takes mail from smtplib and keeps it as .eml files."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from sandbox.smtp_sink import SmtpSink


@pytest.fixture
def sink(tmp_path):
    with SmtpSink("127.0.0.1", 0, tmp_path / "mail") as server:
        yield server


def letter(subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "billing@ledgerlink.example"
    message["To"] = "client@example.com"
    message["Subject"] = subject
    message.set_content(body)
    return message


def test_smtplib_send_is_stored(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        smtp.login("anyone", "anything")
        smtp.send_message(letter("Счёт за январь", "Сумма: 1 220,00 ₽\n.leading dot kept\n"),
                          to_addrs=["client@example.com", "audit@ledgerlink.example"])
        smtp.noop()
    [stored] = sink.messages()
    assert stored["Subject"] == "Счёт за январь"
    assert stored.get_content() == "Сумма: 1 220,00 ₽\n.leading dot kept\n"
    assert stored["X-Sandbox-Envelope-To"] == "client@example.com, audit@ledgerlink.example"
    assert stored["Return-Path"] == "<billing@ledgerlink.example>"
    assert sink.message_paths()[0].suffix == ".eml"


def test_rset_and_helo_and_sequence_errors(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        assert smtp.helo("client.local")[0] == 250
        assert smtp.docmd("RCPT", "TO:<x@example.com>")[0] == 503
        smtp.mail("a@example.com")
        smtp.rcpt("b@example.com")
        assert smtp.rset()[0] == 250
        assert smtp.docmd("DATA")[0] == 503
        smtp.sendmail("a@example.com", ["b@example.com"], letter("second", "kept").as_bytes())
    assert [m["Subject"] for m in sink.messages()] == ["second"]


def test_configured_credentials_are_enforced(tmp_path):
    with SmtpSink("127.0.0.1", 0, tmp_path / "mail", credentials={"mailer": "pw"}) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("mailer", "wrong")
            with pytest.raises(smtplib.SMTPSenderRefused):
                smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nbody\r\n")
            smtp.login("mailer", "pw")
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nbody\r\n")
        assert len(sink.messages()) == 1
