"""SFTP through Airflow's ``SFTPHook``, with the server's host key pinned and tuned for throughput (DESIGN §7).

paramiko's defaults (aes128-ctr, 32 KiB requests, one request in flight) reach about a third of OpenSSH's
``sftp`` on loopback. What helps: an AES-GCM cipher, OpenSSH's largest request size, pipelined writes and
prefetched reads, in 1 MiB blocks. A bigger transport window or ``max_concurrent_prefetch_requests`` makes
downloads slower, so neither is touched. Everything is set on one connection or one open file, never on a
paramiko class, so other SFTP users in the same worker keep paramiko's defaults.

Connection (type ``sftp``): host, port, login, a key (extra ``key_file`` or ``private_key``) or password, and
extra ``{"host_key": "ssh-ed25519 AAAA...", "no_host_key_check": false}``: a server whose key is not that
one is refused.
"""
from __future__ import annotations

import os

import paramiko
from airflow.providers.sftp.hooks.sftp import SFTPHook, handle_connection_management
from airflow.providers.ssh.hooks.ssh import SSHHook

from ledgerlink.errors import ConfigurationError

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
MAX_REQUEST_SIZE = 261120  # OpenSSH's own limit per SFTP read/write request
BLOCK = 1 << 20


def prefer_aes_gcm(transport: paramiko.Transport) -> None:
    """Put AES-GCM first in this transport's cipher preference and, if another cipher was agreed, re-key.

    ``SSHHook`` connects before it applies its own ``ciphers`` (they would only count from the next re-key),
    so the preference takes effect through one re-key on the open connection: one more key exchange per
    connection, and a server without AES-GCM still gets its best cipher (forbidding the others through
    ``disabled_algorithms`` would save the re-key but refuse such a server).
    """
    options = transport.get_security_options()
    available = tuple(options.ciphers)
    preferred = tuple(c for c in PREFERRED_CIPHERS if c in available)
    if not preferred or transport.remote_cipher in preferred:
        return
    options.ciphers = preferred + tuple(c for c in available if c not in preferred)
    transport.renegotiate_keys()


class _AesGcmSSHHook(SSHHook):
    """``SSHHook.get_conn`` with AES-GCM preferred. ``SFTPHook`` opens its SSH client through ``super().get_conn()``,
    which reaches this class when it sits between ``SFTPHook`` and ``SSHHook``, as in ``TunedSFTPHook``."""

    def get_conn(self) -> paramiko.SSHClient:
        client = super().get_conn()
        prefer_aes_gcm(client.get_transport())
        return client


class TunedSFTPHook(SFTPHook, _AesGcmSSHHook):
    """Airflow's ``SFTPHook`` that requires a pinned host key and transfers files with our tuning."""

    hook_name = "SFTP (pinned host key, tuned)"

    def __init__(self, ssh_conn_id: str | None = SFTPHook.default_conn_name, *args, **kwargs) -> None:
        super().__init__(ssh_conn_id, *args, **kwargs)
        # SSHHook compresses unless the connection's extra says "compress": false; zlib on a file drop (already
        # compressed, or CSV over a fast link) costs more than it saves, so here it is on only when asked for.
        extra = self.get_connection(ssh_conn_id).extra_dejson if ssh_conn_id else {}
        self.compress = str(extra.get("compress", False)).lower() == "true"
        if self.host_key is None or self.no_host_key_check or self.allow_host_key_change:
            raise ConfigurationError(
                f"connection {ssh_conn_id!r} must pin the server's host key: set extra host_key to the server's "
                f"public key line (ssh-keyscan) and no_host_key_check to false; an unknown server is never trusted")

    @handle_connection_management
    def store_file(self, remote_full_path: str, local_full_path: str, confirm: bool = True) -> None:
        """Upload under a temporary name, renamed once complete (DESIGN §7); ``confirm`` is always done."""
        tuned_sftp_put(self.conn, local_full_path, remote_full_path)

    @handle_connection_management
    def retrieve_file(self, remote_full_path: str, local_full_path: str, prefetch: bool = True) -> None:
        """Download with prefetched 1 MiB reads, checking the size (``prefetch`` is always on)."""
        tuned_sftp_get(self.conn, remote_full_path, local_full_path)


def _tuned(handle: paramiko.SFTPFile) -> paramiko.SFTPFile:
    handle.MAX_REQUEST_SIZE = MAX_REQUEST_SIZE  # this file object only; paramiko reads it through self
    return handle


def tuned_sftp_put(sftp: paramiko.SFTPClient, local: str | os.PathLike, remote: str) -> int:
    """Upload with pipelined 1 MiB writes under a temporary name, renamed once complete (DESIGN §7: a reader
    never takes a half-written file); returns the bytes sent. Checks the remote size before the rename."""
    sent = 0
    folder, _, name = remote.rpartition("/")
    partial = f"{folder}/.{name}.part" if folder else f".{name}.part"
    with open(local, "rb") as source, _tuned(sftp.open(partial, "wb")) as target:
        target.set_pipelined(True)
        while block := source.read(BLOCK):
            target.write(block)
            sent += len(block)
    size = sftp.stat(partial).st_size
    if size != sent:
        raise OSError(f"upload of {local} to {remote}: {size} bytes arrived, {sent} sent")
    sftp.posix_rename(partial, remote)
    return sent


def tuned_sftp_get(sftp: paramiko.SFTPClient, remote: str, local: str | os.PathLike) -> int:
    """Download with prefetch and 1 MiB reads; returns the bytes received. Checks the size."""
    size = sftp.stat(remote).st_size
    received = 0
    with _tuned(sftp.open(remote, "rb")) as source, open(local, "wb") as target:
        source.prefetch(size)
        while block := source.read(BLOCK):
            target.write(block)
            received += len(block)
    if received != size:
        raise OSError(f"download of {remote}: {received} bytes of {size}")
    return received
