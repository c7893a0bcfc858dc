"""Conference-bridge stand-in: drops daily call-record (CDR) CSV files the way the bridge vendor does.

File naming (one data file per bridge per day, plus its checksum)::

    cdr_<bridge_id>_<YYYYMMDD>.<encoding>.csv          e.g. cdr_BR01_20260131.utf-8.csv, cdr_BR02_20260131.cp1251.csv
    cdr_<bridge_id>_<YYYYMMDD>.<encoding>.csv.sha256   "<hex sha256>  <data file name>\\n" (sha256sum format)

``YYYYMMDD`` is the day the calls started (bridge local time). The encoding token (``utf-8`` or ``cp1251``)
is the only place the encoding is declared. Each file is first written as ``.<name>.part`` (a hidden
temporary name) and renamed when complete; the ``.sha256`` file is written (the same way) after the data
file, so a reader can take a data file once its checksum file exists.

Columns, comma separated, with a header row and CRLF line ends::

    call_id, bridge_id, customer_ref, started_at, ended_at, duration_seconds, participants, dial_in_number

``started_at``/``ended_at`` are ISO 8601 with the bridge's zone (``2026-01-31T09:15:02+03:00``); call ids
are ``<bridge_id>-<YYYYMMDD>-<nnnnn>``. The same arguments always give the same bytes.

Misbehaviour, per bridge: ``cp1251_bridges`` write Windows-1251; ``late_bridges`` deliver the previous day's
file instead of today's (one day behind, every day); ``broken`` maps a bridge to ``"bad_row"`` (one row with
an unparseable start time and duration), ``"truncated"`` (the last row cut off mid-line, no line end) or
``"bad_checksum"`` (the ``.sha256`` does not match the data).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Protocol

COLUMNS = ("call_id", "bridge_id", "customer_ref", "started_at", "ended_at", "duration_seconds", "participants",
           "dial_in_number")
BROKEN_KINDS = ("bad_row", "truncated", "bad_checksum")
MOSCOW = timezone(timedelta(hours=3), "MSK")


@dataclass(frozen=True)
class CdrFile:
    """One data file as dropped: where it went and what a reader should find in it."""

    name: str
    path: str
    bridge_id: str
    day: date
    encoding: str
    late: bool
    broken: str | None
    rows: int  # rows a reader can take as they are
    bad_rows: tuple[int, ...]  # 1-based data row numbers that are wrong on purpose
    sha256: str  # of the bytes written, whatever the .sha256 file claims


def cdr_file_name(bridge_id: str, day: date, encoding: str) -> str:
    return f"cdr_{bridge_id}_{day:%Y%m%d}.{encoding}.csv"


def generate_calls(bridge_id: str, day: date, customers: Sequence[str], count: int, seed: int = 0,
                   zone: tzinfo = MOSCOW) -> list[dict[str, str]]:
    """``count`` calls started on ``day`` on one bridge, deterministic for the same arguments."""
    if not customers:
        raise ValueError("customers must name at least one customer_ref")
    rng = random.Random(f"{seed}:{bridge_id}:{day.isoformat()}")  # str seeds do not depend on PYTHONHASHSEED
    dial_ins = [f"+7495{rng.randrange(10**7):07d}" for _ in range(3)]
    midnight = datetime.combine(day, time(), zone)
    starts = sorted(rng.randrange(24 * 3600) for _ in range(count))
    calls = []
    for number, offset in enumerate(starts, start=1):
        started = midnight + timedelta(seconds=offset)
        duration = rng.randrange(30, 3 * 3600)
        calls.append({
            "call_id": f"{bridge_id}-{day:%Y%m%d}-{number:05d}",
            "bridge_id": bridge_id,
            "customer_ref": rng.choice(list(customers)),
            "started_at": started.isoformat(timespec="seconds"),
            "ended_at": (started + timedelta(seconds=duration)).isoformat(timespec="seconds"),
            "duration_seconds": str(duration),
            "participants": str(rng.randrange(2, 31)),
            "dial_in_number": rng.choice(dial_ins),
        })
    return calls


def render_csv(calls: Sequence[Mapping[str, str]]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(calls)
    return buffer.getvalue()


class _Destination(Protocol):
    def put(self, name: str, data: bytes) -> str: ...


class _LocalFolder:
    """Writes into a local folder (the embedded SFTP server's root is one)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> str:
        temporary, final = self.folder / f".{name}.part", self.folder / name
        with open(temporary, "wb") as part:
            part.write(data)
            part.flush()
            os.fsync(part.fileno())
        os.replace(temporary, final)
        return str(final)


class _SftpFolder:
    """Uploads through an open ``paramiko.SFTPClient`` (duck-typed: ``putfo`` and ``posix_rename``)."""

    def __init__(self, sftp, remote_dir: str):
        self.sftp = sftp
        self.remote_dir = remote_dir

    def put(self, name: str, data: bytes) -> str:
        temporary = posixpath.join(self.remote_dir, f".{name}.part")
        final = posixpath.join(self.remote_dir, name)
        self.sftp.putfo(io.BytesIO(data), temporary, file_size=len(data), confirm=True)
        self.sftp.posix_rename(temporary, final)  # plain SFTP rename refuses to overwrite a re-drop
        return final


def _break(text: str, kind: str, rows: int) -> tuple[str, tuple[int, ...]]:
    """The CSV text with the named fault applied, and the data rows it spoiled."""
    lines = text.split("\r\n")  # header, rows..., "" after the last line end
    if kind == "bad_row" and rows:
        row_number = (rows + 1) // 2
        fields = next(csv.reader([lines[row_number]]))
        fields[COLUMNS.index("started_at")] = "31.02.2026 25:61"
        fields[COLUMNS.index("duration_seconds")] = "twelve"
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="").writerow(fields)
        lines[row_number] = buffer.getvalue()
        return "\r\n".join(lines), (row_number,)
    if kind == "truncated" and rows:
        last = lines[rows]
        lines[rows] = last[: len(last) // 2]
        return "\r\n".join(lines[: rows + 1]), (rows,)
    return text, ()


def drop_cdr_files(target: Path | str | object, customers: Sequence[str], day: date, *, seed: int = 0,
                   bridges: Sequence[str] = ("BR01", "BR02", "BR03"), calls_per_file: int = 20,
                   cp1251_bridges: Collection[str] = (), late_bridges: Collection[str] = (),
                   broken: Mapping[str, str] | None = None, remote_dir: str = ".",
                   zone: tzinfo = MOSCOW) -> list[CdrFile]:
    """Drop one CDR file per bridge for ``day`` (see the module docstring for names and faults).

    ``target`` is a local folder (for example the embedded SFTP server's root) or an open paramiko
    ``SFTPClient``, in which case files go to ``remote_dir`` on the server.
    """
    broken = dict(broken or {})
    for bridge_id, kind in broken.items():
        if kind not in BROKEN_KINDS:
            raise ValueError(f"bridge {bridge_id}: unknown fault {kind!r}; known: {', '.join(BROKEN_KINDS)}")
    destination: _Destination = (_SftpFolder(target, remote_dir) if hasattr(target, "putfo")
                                 else _LocalFolder(Path(target)))
    dropped = []
    for bridge_id in bridges:
        late = bridge_id in late_bridges
        file_day = day - timedelta(days=1) if late else day
        encoding = "cp1251" if bridge_id in cp1251_bridges else "utf-8"
        calls = generate_calls(bridge_id, file_day, customers, calls_per_file, seed, zone)
        kind = broken.get(bridge_id)
        text, bad_rows = render_csv(calls), ()
        if kind:
            text, bad_rows = _break(text, kind, len(calls))
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError as e:
            raise ValueError(f"bridge {bridge_id}: a customer_ref cannot be written in {encoding}: {e}") from e
        name = cdr_file_name(bridge_id, file_day, encoding)
        digest = hashlib.sha256(data).hexdigest()
        claimed = hashlib.sha256(data + b"\n").hexdigest() if kind == "bad_checksum" else digest
        path = destination.put(name, data)
        destination.put(f"{name}.sha256", f"{claimed}  {name}\n".encode("ascii"))
        dropped.append(CdrFile(name=name, path=path, bridge_id=bridge_id, day=file_day, encoding=encoding,
                               late=late, broken=kind, rows=len(calls) - len(bad_rows), bad_rows=bad_rows,
                               sha256=digest))
    return dropped
