"""An embedded SFTP server (paramiko) serving one folder: the demo's landing and exchange area.

``SftpServer(host, port, root, host_key_path, users)`` serves ``root`` as ``/``: every path a client sends
is resolved inside it, and one that would leave it (``..``, a symlink pointing out) is refused with
"permission denied". Users log in with a password, an OpenSSH public key, or either, per user::

    users = {"ledgerlink": {"password": "secret", "public_key": "ssh-ed25519 AAAA... comment"}}

The host key is an Ed25519 key in OpenSSH format at ``host_key_path``, generated when missing, so the
fingerprint survives restarts; clients pin ``host_key_line`` (Airflow: the connection's ``host_key``
extra). Supported: stat, lstat, listdir(_attr), open for read/write/append, remove, rename (refuses to
overwrite, like OpenSSH), posix-rename@openssh.com (overwrites), mkdir, rmdir, setstat (chmod, utime,
truncate). Symlinks are not offered.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import posixpath
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

from sandbox.httpbase import FaultPlan

log = logging.getLogger(__name__)


def load_or_create_host_key(path: Path) -> paramiko.PKey:
    """The Ed25519 host key at ``path``, written (mode 0600) first when the file is missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(pem)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def fingerprint_sha256(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _same_public_key(line: str, offered: paramiko.PKey) -> bool:
    parts = line.split()
    if len(parts) < 2:
        return False
    return parts[0] == offered.get_name() and hmac.compare_digest(parts[1], offered.get_base64())


class _Authenticator(paramiko.ServerInterface):
    """Password or public-key login against the configured users; only "session" channels."""

    def __init__(self, users: Mapping[str, Mapping[str, str]]):
        self.users = users

    def get_allowed_auths(self, username):
        user = self.users.get(username, {})
        methods = [m for m, field in (("publickey", "public_key"), ("password", "password")) if user.get(field)]
        return ",".join(methods) or "publickey"

    def check_auth_password(self, username, password):
        expected = self.users.get(username, {}).get("password")
        if expected and hmac.compare_digest(expected.encode(), password.encode()):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        expected = self.users.get(username, {}).get("public_key")
        if expected and _same_public_key(expected, key):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _RootEscape(Exception):
    """A client path that resolves outside the served root."""


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def chattr(self, attr):
        try:
            paramiko.SFTPServer.set_file_attr(self.filename, attr)
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)
        return SFTP_OK


class _RootedSftp(paramiko.SFTPServerInterface):
    """SFTP operations on the local file system, confined to ``root``."""

    def __init__(self, server, root: Path, faults: FaultPlan, *args, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.root = Path(root).resolve()
        self.faults = faults

    # Remote paths are POSIX paths relative to "/" = root; the session starts in "/".
    def canonicalize(self, path):
        text = path.decode("utf-8") if isinstance(path, bytes) else path
        return posixpath.normpath(posixpath.join("/", text)).replace("//", "/")

    def _local(self, path: str, follow_last: bool = True) -> Path:
        remote = self.canonicalize(path)
        candidate = self.root / remote.lstrip("/")
        # Resolve the parent always (a symlinked folder must not lead out); the last part only when asked.
        resolved = candidate.resolve() if follow_last else candidate.parent.resolve() / candidate.name
        if resolved != self.root and self.root not in resolved.parents:
            raise _RootEscape(path)
        return resolved

    def _guard(self, action, *args, operation: str):
        """Run one operation, applying fault rules (``methods`` name operations: open, list, stat, remove,
        rename, mkdir, rmdir, chattr; ``path`` is a prefix of the remote path)."""
        fired = self.faults.fire(operation, self.canonicalize(args[0]))
        for rule in fired:
            if rule["mode"] in ("latency", "timeout"):
                time.sleep(float(rule.get("seconds", 0.2 if rule["mode"] == "latency" else 30)))
            if rule["mode"] in ("error", "timeout"):
                return SFTP_FAILURE
        try:
            result = action(*args)
        except _RootEscape:
            return SFTP_PERMISSION_DENIED
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)
        if any(rule["mode"] == "drop_after_apply" for rule in fired):
            # Applied, then the session ends without an answer (paramiko's SFTP loop stops on EOFError).
            raise EOFError(f"sandbox fault: dropped after {operation}")
        return result

    def list_folder(self, path):
        def listing(path):
            folder = self._local(path)
            entries = []
            for name in sorted(os.listdir(folder)):
                attr = paramiko.SFTPAttributes.from_stat(os.lstat(folder / name))
                attr.filename = name
                entries.append(attr)
            return entries
        return self._guard(listing, path, operation="list")

    def stat(self, path):
        return self._guard(lambda p: paramiko.SFTPAttributes.from_stat(os.stat(self._local(p))), path,
                           operation="stat")

    def lstat(self, path):
        return self._guard(lambda p: paramiko.SFTPAttributes.from_stat(os.lstat(self._local(p, False))), path,
                           operation="stat")

    def open(self, path, flags, attr):
        def opening(path):
            local = self._local(path)
            mode = getattr(attr, "st_mode", None)
            descriptor = os.open(local, flags | getattr(os, "O_BINARY", 0), mode if mode is not None else 0o644)
            if flags & os.O_CREAT and attr is not None:
                attr._flags &= ~attr.FLAG_PERMISSIONS
                paramiko.SFTPServer.set_file_attr(str(local), attr)
            if flags & os.O_WRONLY:
                file_mode = "ab" if flags & os.O_APPEND else "wb"
            elif flags & os.O_RDWR:
                file_mode = "a+b" if flags & os.O_APPEND else "r+b"
            else:
                file_mode = "rb"
            handle = _Handle(flags)
            handle.filename = str(local)
            handle.readfile = handle.writefile = os.fdopen(descriptor, file_mode)
            return handle
        return self._guard(opening, path, operation="open")

    def remove(self, path):
        return self._guard(lambda p: os.remove(self._local(p, False)) or SFTP_OK, path, operation="remove")

    def rename(self, oldpath, newpath):
        def renaming(old, new):
            source, target = self._local(old, False), self._local(new, False)
            if target.exists() or target.is_symlink():
                # SFTP v3 rename never overwrites (OpenSSH's server refuses too): posix-rename does.
                return SFTP_FAILURE
            os.rename(source, target)
            return SFTP_OK
        return self._guard(renaming, oldpath, newpath, operation="rename")

    def posix_rename(self, oldpath, newpath):
        return self._guard(lambda o, n: os.replace(self._local(o, False), self._local(n, False)) or SFTP_OK,
                           oldpath, newpath, operation="rename")

    def mkdir(self, path, attr):
        def making(path):
            local = self._local(path, False)
            os.mkdir(local)
            if attr is not None:
                paramiko.SFTPServer.set_file_attr(str(local), attr)
            return SFTP_OK
        return self._guard(making, path, operation="mkdir")

    def rmdir(self, path):
        def removing(path):
            local = self._local(path, False)
            if local == self.root:
                return SFTP_PERMISSION_DENIED
            os.rmdir(local)
            return SFTP_OK
        return self._guard(removing, path, operation="rmdir")

    def chattr(self, path, attr):
        def changing(path):
            paramiko.SFTPServer.set_file_attr(str(self._local(path)), attr)
            return SFTP_OK
        return self._guard(changing, path, operation="chattr")

    def symlink(self, target_path, path):
        return SFTP_OP_UNSUPPORTED

    def readlink(self, path):
        return SFTP_NO_SUCH_FILE


class SftpServer:
    """Serves ``root`` over SFTP on ``host:port`` (0 picks a free port) from a background thread."""

    def __init__(self, host: str, port: int, root: Path, host_key_path: Path,
                 users: Mapping[str, Mapping[str, str]]):
        self.host = host
        self._requested_port = port
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.users = {name: dict(settings) for name, settings in users.items()}
        self.host_key = load_or_create_host_key(Path(host_key_path))
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []
        self._transports_lock = threading.Lock()
        self._stopping = threading.Event()
        self.faults = FaultPlan()  # same rules as the HTTP stand-ins; see _RootedSftp._guard

    @property
    def port(self) -> int:
        if self._listener is None:
            return self._requested_port
        return self._listener.getsockname()[1]

    @property
    def host_key_line(self) -> str:
        """The public host key as OpenSSH writes it: ``ssh-ed25519 AAAA...``."""
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint_sha256(self.host_key)

    def start(self) -> "SftpServer":
        listener = socket.create_server((self.host, self._requested_port), reuse_port=False)
        listener.settimeout(0.2)  # so the accept loop notices stop() promptly
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="sandbox-sftp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._transports_lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()

    def __enter__(self) -> "SftpServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            threading.Thread(target=self._serve, args=(connection, peer), name=f"sandbox-sftp-{peer[1]}",
                             daemon=True).start()

    def _serve(self, connection: socket.socket, peer) -> None:
        connection.settimeout(None)
        transport = paramiko.Transport(connection)
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _RootedSftp, self.root, self.faults)
        with self._transports_lock:
            self._transports = [t for t in self._transports if t.is_active()] + [transport]
        try:
            transport.start_server(server=_Authenticator(self.users))
        except (paramiko.SSHException, EOFError, OSError) as e:
            # A client that hangs up mid-handshake is the client's problem, not the server's.
            log.info("SFTP handshake with %s failed: %s", peer, e)
            transport.close()
