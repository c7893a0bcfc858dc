"""The conference-bridge dropper writes deterministic CDR files, some cp1251, late or broken on purpose."""
from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime

import pytest

from devtools.sshd import run_sshd, sftp_client
from sandbox.bridge import COLUMNS, drop_cdr_files

DAY = date(2026, 1, 31)
CUSTOMERS = ["ACME-001", "КЛ-0002 Ромашка"]


def read_rows(path, encoding):
    with open(path, encoding=encoding, newline="") as handle:
        return list(csv.DictReader(handle))


def test_same_arguments_give_the_same_files(tmp_path):
    first = drop_cdr_files(tmp_path / "a", CUSTOMERS, DAY, seed=3)
    second = drop_cdr_files(tmp_path / "b", CUSTOMERS, DAY, seed=3)
    other_seed = drop_cdr_files(tmp_path / "c", CUSTOMERS, DAY, seed=4)
    assert [f.name for f in first] == ["cdr_BR01_20260131.utf-8.csv", "cdr_BR02_20260131.utf-8.csv",
                                       "cdr_BR03_20260131.utf-8.csv"]
    assert [f.sha256 for f in first] == [f.sha256 for f in second]
    assert [f.sha256 for f in first] != [f.sha256 for f in other_seed]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [f.name for f in first] + [f"{f.name}.sha256" for f in first]), "no temporary files are left behind"

    rows = read_rows(first[0].path, "utf-8")
    assert tuple(rows[0]) == COLUMNS and len(rows) == 20
    call = rows[0]
    started, ended = datetime.fromisoformat(call["started_at"]), datetime.fromisoformat(call["ended_at"])
    assert started.utcoffset() is not None and started.date() == DAY
    assert (ended - started).total_seconds() == int(call["duration_seconds"])
    assert call["call_id"] == "BR01-20260131-00001"
    checksum = (tmp_path / "a" / f"{first[0].name}.sha256").read_text()
    assert checksum == f"{hashlib.sha256((tmp_path / 'a' / first[0].name).read_bytes()).hexdigest()}  {first[0].name}\n"


def test_cp1251_and_late_files(tmp_path):
    dropped = {f.bridge_id: f for f in drop_cdr_files(tmp_path, CUSTOMERS, DAY, cp1251_bridges={"BR02"},
                                                      late_bridges={"BR03"}, calls_per_file=50)}
    cp1251 = dropped["BR02"]
    assert cp1251.name == "cdr_BR02_20260131.cp1251.csv"
    raw = (tmp_path / cp1251.name).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "КЛ-0002 Ромашка" in {r["customer_ref"] for r in read_rows(cp1251.path, "cp1251")}

    late = dropped["BR03"]
    assert late.late and late.day == date(2026, 1, 30) and late.name == "cdr_BR03_20260130.utf-8.csv"
    assert not (tmp_path / "cdr_BR03_20260131.utf-8.csv").exists()


def test_broken_files(tmp_path):
    dropped = {f.bridge_id: f for f in drop_cdr_files(
        tmp_path, CUSTOMERS, DAY, broken={"BR01": "bad_row", "BR02": "truncated", "BR03": "bad_checksum"})}

    bad_row = dropped["BR01"]
    rows = read_rows(bad_row.path, "utf-8")
    [spoiled] = bad_row.bad_rows
    assert rows[spoiled - 1]["duration_seconds"] == "twelve"
    with pytest.raises(ValueError):
        datetime.fromisoformat(rows[spoiled - 1]["started_at"])
    assert bad_row.rows == 19

    truncated = (tmp_path / dropped["BR02"].name).read_bytes()
    assert not truncated.endswith(b"\r\n")
    assert len(read_rows(dropped["BR02"].path, "utf-8")[-1]) == len(COLUMNS)  # DictReader pads; the line is short
    last_line = truncated.decode().split("\r\n")[-1]
    assert last_line.count(",") < len(COLUMNS) - 1

    bad_checksum = dropped["BR03"]
    claimed = (tmp_path / f"{bad_checksum.name}.sha256").read_text().split()[0]
    assert claimed != hashlib.sha256((tmp_path / bad_checksum.name).read_bytes()).hexdigest()

    with pytest.raises(ValueError, match="unknown fault"):
        drop_cdr_files(tmp_path, CUSTOMERS, DAY, broken={"BR01": "on_fire"})


def test_dropping_through_sftp(tmp_path):
    with run_sshd(tmp_path) as server, sftp_client(server) as sftp:
        sftp.mkdir(f"{server.root}/cdr")
        dropped = drop_cdr_files(sftp, CUSTOMERS, DAY, bridges=("BR01",), remote_dir=f"{server.root}/cdr")
        assert sorted(sftp.listdir(f"{server.root}/cdr")) == [dropped[0].name, f"{dropped[0].name}.sha256"]
    local = server.root / "cdr" / dropped[0].name
    assert hashlib.sha256(local.read_bytes()).hexdigest() == dropped[0].sha256
    assert len(list(csv.reader(io.StringIO(local.read_text("utf-8"))))) == 21
