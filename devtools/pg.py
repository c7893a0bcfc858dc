"""Run a throwaway PostgreSQL cluster for a test or a benchmark: 127.0.0.1 only, trust auth, fsync off.

    with run_postgres(tmp_path) as pg:
        engine = sqlalchemy.create_engine(pg.url)      # postgresql+psycopg://postgres@127.0.0.1:PORT/ledgerlink
        psycopg.connect(pg.dsn)                         # postgresql://postgres@127.0.0.1:PORT/ledgerlink

``initdb`` and the server refuse to run as root, so as root the cluster runs as the ``postgres`` user
(or, where there is none, as an unprivileged user created for it). That user must reach the cluster's
folder: pytest's ``tmp_path`` sits under a 0700 folder owned by root, so the cluster then lives in a fresh
folder under the system temp dir instead, removed on exit like the rest.

When the server binaries are missing the test is skipped, unless ``CI`` is set, where that is a failure:
``.ci/run`` installs postgresql.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import server_missing

SERVER_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_OS_USER = "postgres"
FALLBACK_OS_USER = "ledgerlink-pg"  # created only when running as root on a host without ``postgres``
SUPERUSER = "postgres"
DATABASE = "ledgerlink"
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
PORT_ATTEMPTS = 5
# a Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux) with ".s.PGSQL.NNNNN"
MAX_SOCKET_DIR_LENGTH = 90

SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",  # throwaway data: durability only costs time
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'128MB'",
    "max_wal_size": "'4GB'",  # no forced checkpoints in the middle of a bulk load
    "max_connections": "50",
    "logging_collector": "off",
}


class PostgresStartError(RuntimeError):
    """The throwaway server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class PgInfo:
    host: str
    port: int
    user: str
    dbname: str
    dsn: str  # libpq/psycopg URL: postgresql://user@127.0.0.1:port/db
    url: str  # SQLAlchemy URL: postgresql+psycopg://user@127.0.0.1:port/db
    socket_dir: Path
    data_dir: Path
    log_path: Path

    def with_database(self, dbname: str) -> "PgInfo":
        """The same server, another database (see :func:`create_database`)."""
        return dataclasses.replace(self, dbname=dbname, dsn=_dsn(self.user, self.host, self.port, dbname),
                                   url=_url(self.user, self.host, self.port, dbname))


def _dsn(user: str, host: str, port: int, dbname: str) -> str:
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def _url(user: str, host: str, port: int, dbname: str) -> str:
    return f"postgresql+psycopg://{user}@{host}:{port}/{dbname}"


def _version_key(bin_dir: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/(\d+(?:\.\d+)*)/bin$", bin_dir)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def find_server_binaries() -> tuple[str, str] | None:
    """``(initdb, pg_ctl)`` from PATH, else from the newest ``/usr/lib/postgresql/*/bin``; None if absent."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for bin_dir in sorted(glob.glob(SERVER_BIN_GLOB), key=_version_key, reverse=True):
        initdb, pg_ctl = os.path.join(bin_dir, "initdb"), os.path.join(bin_dir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _require_server_binaries() -> tuple[str, str]:
    found = find_server_binaries()
    if found:
        return found
    server_missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed (apt-get install postgresql)")


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago; the caller retries if something takes it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class _OsUser:
    """Who the server processes run as; ``None`` ids mean the current user."""

    uid: int | None = None
    gid: int | None = None

    def run(self, command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        extra = {} if self.uid is None else {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        return subprocess.run(command, cwd=cwd, env=env, check=check, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, **extra)

    def can_write(self, folder: Path) -> bool:
        if self.uid is None:
            return os.access(folder, os.W_OK | os.X_OK)
        probe = self.run(["test", "-w", str(folder), "-a", "-x", str(folder)], cwd=Path("/"), check=False)
        return probe.returncode == 0

    def own(self, folder: Path) -> None:
        if self.uid is not None:
            os.chown(folder, self.uid, self.gid)


def _server_os_user() -> _OsUser:
    if os.geteuid() != 0:
        return _OsUser()
    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        try:
            entry = pwd.getpwnam(FALLBACK_OS_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            FALLBACK_OS_USER], check=True, capture_output=True)
            entry = pwd.getpwnam(FALLBACK_OS_USER)
    return _OsUser(entry.pw_uid, entry.pw_gid)


def _cluster_folder(base_dir: Path, os_user: _OsUser) -> Path:
    """A new folder the server user can write: ``base_dir/postgres`` if it can reach it, else a temp one."""
    preferred = Path(base_dir).resolve() / "postgres"
    preferred.mkdir(parents=True, exist_ok=True)
    os_user.own(preferred)
    socket_fits = len(str(preferred / "socket")) <= MAX_SOCKET_DIR_LENGTH
    if socket_fits and os_user.can_write(preferred):
        return preferred
    shutil.rmtree(preferred)
    fallback = Path(tempfile.mkdtemp(prefix="ledgerlink-pg-"))
    os_user.own(fallback)
    return fallback


def _log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no server log)"


def _stop(pg_ctl: str, data_dir: Path, os_user: _OsUser, cluster_dir: Path) -> None:
    result = os_user.run([pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"], cwd=cluster_dir,
                         check=False)
    pid_file = data_dir / "postmaster.pid"
    if result.returncode != 0 and pid_file.exists():
        # pg_ctl could not stop it: end the postmaster this context started, by its own pid
        with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)


def create_database(info: PgInfo, dbname: str) -> PgInfo:
    """Create another empty database on the server and return how to reach it."""
    import psycopg

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
        raise ValueError(f"database name {dbname!r} is not a plain identifier")
    with psycopg.connect(info.dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {dbname}")
    return info.with_database(dbname)


@contextlib.contextmanager
def run_postgres(base_dir: Path) -> Iterator[PgInfo]:
    """Start a fresh cluster with database ``ledgerlink``; stop it and remove its files on exit."""
    import psycopg

    initdb, pg_ctl = _require_server_binaries()
    os_user = _server_os_user()
    cluster_dir = _cluster_folder(Path(base_dir), os_user)
    data_dir, socket_dir, log_path = cluster_dir / "data", cluster_dir / "socket", cluster_dir / "server.log"
    started = False
    try:
        socket_dir.mkdir()
        os_user.own(socket_dir)
        result = os_user.run([initdb, "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                              "--locale=C", "--no-sync"], cwd=cluster_dir, check=False)
        if result.returncode != 0:
            raise PostgresStartError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        settings = dict(SERVER_SETTINGS, unix_socket_directories=f"'{socket_dir}'")
        with open(data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# throwaway test cluster\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

        port = 0
        for _attempt in range(PORT_ATTEMPTS):
            port = free_port()
            result = os_user.run([pg_ctl, "-D", str(data_dir), "-l", str(log_path), "-w",
                                  "-t", str(START_TIMEOUT_SECONDS), "-o", f"-p {port}", "start"],
                                 cwd=cluster_dir, check=False)
            if result.returncode == 0:
                started = True
                break
            if "could not bind" not in _log_tail(log_path, 200) and "in use" not in _log_tail(log_path, 200):
                raise PostgresStartError(f"pg_ctl start failed ({result.returncode}):\n{result.stderr}\n"
                                         f"{_log_tail(log_path)}")
            # the port was taken between probing and binding: try another
        if not started:
            raise PostgresStartError(f"no free port in {PORT_ATTEMPTS} attempts:\n{_log_tail(log_path)}")

        with psycopg.connect(_dsn(SUPERUSER, HOST, port, "postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield PgInfo(HOST, port, SUPERUSER, DATABASE, _dsn(SUPERUSER, HOST, port, DATABASE),
                     _url(SUPERUSER, HOST, port, DATABASE), socket_dir, data_dir, log_path)
    finally:
        if started:
            _stop(pg_ctl, data_dir, os_user, cluster_dir)
        shutil.rmtree(cluster_dir, ignore_errors=True)  # the folder was made for this cluster alone
