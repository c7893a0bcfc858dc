"""The failure mail (ledgerlink.flows.run_end.notify_failure), against the sandbox's real SMTP sink."""
from __future__ import annotations

import email
import email.policy
import json
import logging
import socket

import pytest

from ledgerlink.flows.run_end import notify_failure
from ledgerlink.ledger import Ledger
from sandbox.smtp_sink import SmtpSink


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def records():
    handler = _Records()
    logger = logging.getLogger("ledgerlink.flows.run_end")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_run_mails_its_summary_to_finance(tmp_path, monkeypatch, records):
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("LEDGERLINK_FINANCE_EMAIL", "finance@example.test, controller@example.test")
    ledger = Ledger.migrated()
    ledger.start_run("r1", "billing_customers_to_onec")
    ledger.end_run_early("r1", "billing_customers_to_onec", "failed", "task load: 1C answered HTTP 503")
    sink = SmtpSink("127.0.0.1", _free_port(), tmp_path / "mail")
    sink.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
             "extra": {"disable_tls": True, "disable_ssl": True}}))
        notify_failure("billing_customers_to_onec")({"run_id": "r1", "reason": "task_failure"})
    finally:
        sink.stop()
    (mail,) = (tmp_path / "mail").glob("*.eml")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Ledgerlink: billing_customers_to_onec run r1 did not succeed"
    assert "finance@example.test" in message["To"] and "controller@example.test" in message["To"]
    body = message.get_body(("html", "plain")).get_content()
    assert "run: r1 | FAILED" in body and "1C answered HTTP 503" in body


def test_without_an_smtp_connection_the_mail_is_skipped_with_one_warning(monkeypatch, records):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    notify_failure("billing_einvoices_status", closes_run=False)({"run_id": "r2"})
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "finance was not mailed" in warnings[0].getMessage()
    assert warnings[0].exc_info is None, "a missing setting is not a traceback"
