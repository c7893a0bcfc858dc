"""A local SMTP sink: accepts every message and keeps it as an ``.eml`` file in one folder.

Speaks enough RFC 5321 for ``smtplib`` and Airflow's SMTP hook: EHLO/HELO, MAIL FROM, RCPT TO, DATA (with
dot-unstuffing), RSET, NOOP, VRFY, QUIT and AUTH PLAIN/LOGIN (any credentials unless ``credentials`` is
given). No STARTTLS: it is not advertised, and asking for it gets 454.

Each message is written as ``<maildir>/<UTC yyyymmddTHHMMSS.ffffff>-<seq>.eml`` (written under a temporary
name, then renamed) with LF line ends, as mailbox files are, and with ``Return-Path`` and
``X-Sandbox-Envelope-To`` headers added in front so the envelope (Bcc recipients included) is kept.
The folder is the state: it survives restarts.
"""
from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hmac
import itertools
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

from sandbox.httpbase import FaultPlan

MAX_LINE = 4096
MAX_MESSAGE_BYTES = 25 * 1024 * 1024
_ADDRESS = re.compile(r"^(?P<verb>MAIL FROM|RCPT TO):\s*<(?P<address>[^>]*)>(?P<params>.*)$", re.IGNORECASE)


class _Session:
    """One client's SMTP dialogue; the state machine lives here, the socket in the handler."""

    def __init__(self, handler: "_SmtpHandler"):
        self.handler = handler
        self.sink: SmtpSink = handler.server.sink
        self.greeted = False
        self.authenticated_as: str | None = None
        self.reset()

    fired: list[dict] = []

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.recipients: list[str] = []

    def reply(self, code: int, *lines: str) -> None:
        lines = lines or ("",)
        text = "".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n" for i, line in enumerate(lines))
        self.handler.wfile.write(text.encode("utf-8"))
        self.handler.wfile.flush()

    def read_line(self) -> str | None:
        raw = self.handler.rfile.readline(MAX_LINE + 2)
        if not raw:
            return None
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    def run(self) -> None:
        self.reply(220, f"{self.sink.hostname} ESMTP sandbox sink ready")
        while True:
            line = self.read_line()
            if line is None:
                return
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self.reply(221, "bye")
                return
            command = getattr(self, f"do_{verb}", None) if verb.isalpha() else None
            if command is None:
                self.reply(500, f"command not recognised: {verb[:20]}")
                continue
            # Fault rules as the HTTP stand-ins take them; ``methods`` name SMTP verbs (MAIL, RCPT, DATA, ...).
            self.fired = self.sink.faults.fire(verb, "")
            for rule in self.fired:
                if rule["mode"] in ("latency", "timeout"):
                    time.sleep(float(rule.get("seconds", 0.2 if rule["mode"] == "latency" else 30)))
                if rule["mode"] == "timeout":
                    return  # the connection closes without an answer
            error = next((r for r in self.fired if r["mode"] == "error"), None)
            if error is not None:
                self.reply(int(error.get("status", 451)), "sandbox fault: try again later")
                continue
            command(argument.strip())

    def do_EHLO(self, argument: str) -> None:
        if not argument:
            return self.reply(501, "EHLO needs a domain")
        self.greeted = True
        self.reset()
        self.reply(250, f"{self.sink.hostname} greets {argument}", "8BITMIME", "SMTPUTF8",
                   f"SIZE {MAX_MESSAGE_BYTES}", "AUTH PLAIN LOGIN", "HELP")

    def do_HELO(self, argument: str) -> None:
        if not argument:
            return self.reply(501, "HELO needs a domain")
        self.greeted = True
        self.reset()
        self.reply(250, self.sink.hostname)

    def do_NOOP(self, argument: str) -> None:
        self.reply(250, "OK")

    def do_RSET(self, argument: str) -> None:
        self.reset()
        self.reply(250, "OK")

    def do_HELP(self, argument: str) -> None:
        self.reply(214, "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY AUTH QUIT")

    def do_VRFY(self, argument: str) -> None:
        self.reply(252, "cannot verify, but will accept the message")

    def do_STARTTLS(self, argument: str) -> None:
        self.reply(454, "TLS not available")

    def do_AUTH(self, argument: str) -> None:
        if not self.greeted:
            return self.reply(503, "send EHLO first")
        mechanism, _, initial = argument.partition(" ")
        try:
            if mechanism.upper() == "PLAIN":
                if not initial:
                    self.reply(334, "")
                    initial = self.read_line() or ""
                _authzid, user, password = base64.b64decode(initial, validate=True).decode("utf-8").split("\0")
            elif mechanism.upper() == "LOGIN":
                if initial:
                    user = base64.b64decode(initial, validate=True).decode("utf-8")
                else:
                    self.reply(334, base64.b64encode(b"Username:").decode())
                    user = base64.b64decode(self.read_line() or "", validate=True).decode("utf-8")
                self.reply(334, base64.b64encode(b"Password:").decode())
                password = base64.b64decode(self.read_line() or "", validate=True).decode("utf-8")
            else:
                return self.reply(504, f"unrecognised authentication type {mechanism[:20]}")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return self.reply(501, "cannot decode the credentials")
        if not self.sink.accepts(user, password):
            return self.reply(535, "authentication credentials invalid")
        self.authenticated_as = user
        self.reply(235, "authentication succeeded")

    def do_MAIL(self, argument: str) -> None:
        match = _ADDRESS.match(f"MAIL {argument}")
        if not self.greeted:
            return self.reply(503, "send EHLO or HELO first")
        if self.mail_from is not None:
            return self.reply(503, "nested MAIL command")
        if not match or match["verb"].upper() != "MAIL FROM":
            return self.reply(501, "syntax: MAIL FROM:<address>")
        if self.sink.credentials is not None and self.authenticated_as is None:
            return self.reply(530, "authentication required")
        self.mail_from = match["address"]
        self.reply(250, "OK")

    def do_RCPT(self, argument: str) -> None:
        match = _ADDRESS.match(f"RCPT {argument}")
        if self.mail_from is None:
            return self.reply(503, "need MAIL before RCPT")
        if not match or match["verb"].upper() != "RCPT TO" or not match["address"]:
            return self.reply(501, "syntax: RCPT TO:<address>")
        self.recipients.append(match["address"])
        self.reply(250, "OK")

    def do_DATA(self, argument: str) -> None:
        if not self.recipients:
            return self.reply(503, "need RCPT before DATA")
        self.reply(354, "end data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        size = 0
        too_big = False
        at_line_start = True  # an over-long line arrives in pieces; only a real line start is special
        while True:
            raw = self.handler.rfile.readline(MAX_LINE * 256)
            if not raw:
                return  # the client hung up mid-message: nothing is stored
            if at_line_start and raw.rstrip(b"\r\n") == b".":
                break
            if at_line_start and raw.startswith(b"."):
                raw = raw[1:]  # dot-unstuffing (RFC 5321 §4.5.2)
            at_line_start = raw.endswith(b"\n")
            if at_line_start:
                raw = raw.rstrip(b"\r\n") + b"\n"  # stored with LF line ends, as mailbox files are
            size += len(raw)
            if size > MAX_MESSAGE_BYTES:
                too_big = True
                lines.clear()
            if not too_big:
                lines.append(raw)
        if too_big:
            self.reset()
            return self.reply(552, f"message exceeds {MAX_MESSAGE_BYTES} bytes")
        name = self.sink.store(self.mail_from, self.recipients, b"".join(lines))
        self.reset()
        if any(rule["mode"] == "drop_after_apply" for rule in self.fired):
            raise ConnectionResetError("sandbox fault: stored, then dropped before the answer")
        self.reply(250, f"OK queued as {name}")


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: "_SmtpServer"
    timeout = 60  # a stalled client must not hold a thread forever

    def handle(self) -> None:
        try:
            _Session(self).run()
        except (ConnectionError, socket.timeout):
            # The client went away; there is nobody left to answer.
            return


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, sink: "SmtpSink"):
        self.sink = sink
        super().__init__(address, _SmtpHandler)


class SmtpSink:
    """Accepts mail on ``host:port`` (0 picks a free port) and keeps each message in ``maildir``."""

    def __init__(self, host: str, port: int, maildir: Path, credentials: Mapping[str, str] | None = None,
                 hostname: str = "sandbox-smtp.local"):
        self.host = host
        self._requested_port = port
        self.maildir = Path(maildir)
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.credentials = dict(credentials) if credentials is not None else None
        self.hostname = hostname
        self._server: _SmtpServer | None = None
        self._thread: threading.Thread | None = None
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self.faults = FaultPlan()  # same rules as the HTTP stand-ins; methods name SMTP verbs

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._requested_port

    def start(self) -> "SmtpSink":
        self._server = _SmtpServer((self.host, self._requested_port), self)
        # A short poll keeps stop() quick; the default 0.5 s adds up over many tests.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox-smtp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def accepts(self, user: str, password: str) -> bool:
        """Any credentials when none were configured; otherwise they must match."""
        if self.credentials is None:
            return True
        expected = self.credentials.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def store(self, mail_from: str, recipients: list[str], data: bytes) -> str:
        """Write one message; returns its file name."""
        envelope = (f"Return-Path: <{mail_from}>\n"
                    f"X-Sandbox-Envelope-To: {', '.join(recipients)}\n").encode("utf-8")
        with self._lock:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
            name = f"{stamp}-{next(self._sequence):06d}.eml"
        final = self.maildir / name
        temporary = self.maildir / f".{name}.tmp"
        temporary.write_bytes(envelope + data)
        os.replace(temporary, final)
        return name

    def message_paths(self) -> list[Path]:
        """Stored messages, oldest first."""
        return sorted(self.maildir.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """Stored messages parsed with the modern email policy, oldest first."""
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in self.message_paths()]

    def clear(self) -> None:
        """Delete every stored message."""
        for path in self.message_paths():
            path.unlink()
