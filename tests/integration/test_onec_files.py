"""The month-end file exchange with 1C against a real OpenSSH sshd and the 1C stand-in reading the same folder:
the message applies in 1C and is acknowledged by 1C's answer; an unconfirmed message is re-sent with the same
content under a new number, a confirmed one never; no partial file is ever visible under its final name (an
upload killed midway); the manifest matches; hostile and foreign-encoded answers."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from ledgerlink.errors import BadFileError, RemoteRejected
from ledgerlink.flows import invoices_to_onec_files as flow
from ledgerlink.ledger import Ledger
from ledgerlink.onec import enterprise_data as ed
from ledgerlink.safexml import UnsafeXMLError
from sandbox.onec.server import make_server
from tests.support.closing_world import HELD, PERIOD, SENT, add_invoices, billing_world, generated
from tests.support.sandbox_http import serving
from tests.support.sshd import run_sshd, sftp_client

ROOT = Path(__file__).resolve().parents[2]
OUR_INN = "7701452833"  # the organisation the stand-in's base holds from the start
SALES = "Document_РеализацияТоваровУслуг"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_sshd(tmp_path_factory.mktemp("sshd")) as info:
        yield info


class World:
    """billing, a ledger, the exchange folder on the sshd and the 1C stand-in taking files from it on demand."""

    def __init__(self, server, tmp_path, onec):
        self.server, self.onec = server, onec
        self.billing = billing_world(tmp_path / "billing.db")
        self.ledger = Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")
        self.exchange = server.root / tmp_path.name
        self.cfg = flow.ExchangeSettings(root=str(self.exchange), organisation_inn=OUR_INN)
        self.runs = 0

    def send(self, period: str = PERIOD) -> dict:
        self.runs += 1
        with sftp_client(self.server) as sftp:
            return flow.send_period(f"run-{self.runs}", period, self.billing, sftp, self.cfg, self.ledger)

    def answer(self, state: dict, wait: float = 0) -> dict:
        with sftp_client(self.server) as sftp:
            return flow.await_answer(state, sftp, self.cfg, self.ledger, wait_seconds=wait)

    def run(self) -> dict:
        """A whole run as the DAG does it: send, wait for nothing, reconcile and report."""
        return self.run_for(PERIOD)

    def run_for(self, period: str) -> dict:
        state = self.answer(self.send(period))
        return {**state, "summary": flow.reconcile_and_report(state, self.ledger)}

    def one_c_takes_files(self) -> list:
        return self.onec.process_exchange_folder()

    def folder(self, name: str) -> list[str]:
        where = self.exchange / name
        return sorted(p.name for p in where.iterdir()) if where.exists() else []

    def dump(self, entity_set: str) -> list[dict]:
        response = requests.get(self.onec.url + "/_sandbox/onec/dump", params={"set": entity_set}, timeout=5)
        return response.json(parse_float=Decimal)["value"]

    def items(self) -> dict[str, dict]:
        return {i["source_key"]: i for i in self.ledger.items(flow=flow.SPEC.id)}


@pytest.fixture()
def world(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    exchange = server.root / tmp_path.name
    onec = make_server("127.0.0.1", 0, db_path=tmp_path / "onec.sqlite", users={"ledgerlink": "secret"},
                       base="/demo", exchange_dir=exchange, exchange_poll_seconds=None)
    with serving(onec):
        yield World(server, tmp_path, onec)


def body_of(path: Path) -> bytes:
    data = path.read_bytes()
    return data[data.index(b"<Body"):]


def header_of(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return {k: v for k, v in re.findall(r"<msg:(ExchangePlan|From|To|MessageNo|ReceivedNo)>([^<]*)<", text)}


def test_the_periods_message_applies_in_1c_and_its_answer_acknowledges_it(world):
    state = world.send()
    name = state["message"]
    assert name == "Message_BILLING_1C_000001.xml"
    assert world.folder("in") == [name, name + ".sha256"], "only complete files under their final names"
    message = world.exchange / "in" / name
    manifest = (world.exchange / "in" / (name + ".sha256")).read_text().split()
    assert manifest == [hashlib.sha256(message.read_bytes()).hexdigest(), name]
    assert world.folder("registers") == [name.replace(".xml", ".register.xlsx")]
    assert header_of(message) == {"ExchangePlan": "Ledgerlink", "To": "1C", "From": "BILLING", "MessageNo": "1",
                                  "ReceivedNo": "0"}
    assert state["documents"] == len(SENT) and state["quarantined"] == 1
    [held] = world.ledger.quarantined(flow=flow.SPEC.id)
    assert held["source_key"] == HELD and "vat_rate" in held["reasons"] and "18.5" in held["reasons"]
    assert {k: i["status"] for k, i in world.items().items()} == {k: "sent" for k in SENT}

    [result] = world.one_c_takes_files()
    assert result.outcome == "applied", result.error
    documents = {d["Number"]: d for d in world.dump(SALES)}
    assert set(documents) == {"БЛ-000001", "БЛ-000002", "LLK2026000000001", "БЛ-000003"}, "drafts never, nor October"
    assert documents["БЛ-000001"]["Posted"] and documents["БЛ-000002"]["Posted"]
    cancelled = documents["БЛ-000003"]
    assert (cancelled["Posted"], cancelled["DeletionMark"]) == (False, True)
    # 100 min x 1.50 + 12.5 min x 3.50 = 193.75 net; VAT 22 % per line: 33.00 + 9.63 (half-up); gross 236.38
    assert documents["БЛ-000001"]["СуммаДокумента"] == Decimal("236.38")

    state = world.answer(state)
    assert state["received_no"] == 1 and state["acknowledged_now"] == len(SENT)
    assert {i["status"] for i in world.items().values()} == {"acknowledged"}
    summary = flow.reconcile_and_report(state, world.ledger)
    assert not summary.reconciliation and summary.acknowledged == len(SENT) and summary.awaiting_acknowledgement == 0
    text = summary.text()
    assert "acknowledged: 4" in text and "awaiting acknowledgement: 0" in text and "held back: 1" in text


def test_an_unconfirmed_message_is_sent_again_with_the_same_content_and_a_new_number_a_confirmed_one_never(world):
    first = world.run()
    assert first["message_no"] == 1 and first["summary"].awaiting_acknowledgement == len(SENT)
    second = world.run()  # 1C took nothing in between
    assert second["message_no"] == 2 and second["resent"] == len(SENT)
    one, two = (world.exchange / "in" / first["message"], world.exchange / "in" / second["message"])
    assert body_of(one) == body_of(two), "the same documents, byte for byte"
    assert header_of(two)["MessageNo"] == "2"
    assert {i["message_no"] for i in world.items().values()} == {2}

    results = world.one_c_takes_files()  # both: the first applied, the second applies the same content again
    assert [r.outcome for r in results] == ["applied", "applied"]
    assert len(world.dump(SALES)) == len(SENT), "the same documents, not twice"
    third = world.run()
    assert third["message_no"] is None and third["documents"] == 0, "what 1C confirmed is never sent again"
    assert third["summary"].acknowledged == len(SENT)
    assert world.folder("in") == []
    assert header_of(world.exchange / "processed" / second["message"])["ReceivedNo"] == "0"

    # 1C answered message 2 with its message 2: the next message of ours confirms it.
    with world.billing.begin() as conn:
        conn.execute(sa.text("UPDATE invoices SET status = 'cancelled', updated_at = '2026-11-29T00:00:00+00:00' "
                             "WHERE invoice_id = 'IN003'"))
    fourth = world.run()
    assert fourth["message_no"] == 3 and fourth["documents"] == 1 and fourth["updated"] == 1
    assert header_of(world.exchange / "in" / fourth["message"])["ReceivedNo"] == "2"


def test_an_answer_for_an_older_message_does_not_acknowledge_what_a_later_one_carries(world):
    first = world.run()
    with world.billing.begin() as conn:  # billing changes a document before 1C took the first message
        conn.execute(sa.text("UPDATE invoices SET status = 'cancelled' WHERE invoice_id = 'IN001'"))
    with sftp_client(world.server) as sftp:  # 1C takes only the first message
        sftp.rename(f"{world.exchange}/in/{first['message']}", f"{world.exchange}/{first['message']}")
    second = world.run()
    with sftp_client(world.server) as sftp:
        sftp.rename(f"{world.exchange}/in/{second['message']}", f"{world.exchange}/{second['message']}")
        sftp.rename(f"{world.exchange}/{first['message']}", f"{world.exchange}/in/{first['message']}")
    world.one_c_takes_files()
    world.answer(second)
    items = world.items()
    assert items["IN001"]["status"] == "sent" and items["IN001"]["message_no"] == 2, \
        "1C holds the first content; the cancellation waits for message 2's answer"
    assert all(items[k]["status"] == "sent" for k in SENT), "every item was re-sent in message 2: all wait for it"


def test_a_message_1c_refuses_fails_the_run_with_1cs_reason_and_its_documents_wait(world):
    cfg = world.cfg
    world.cfg = flow.ExchangeSettings(root=cfg.root, organisation_inn="7700000000")  # no such organisation in 1C
    state = world.send()
    [result] = world.one_c_takes_files()
    assert result.outcome == "error"
    with pytest.raises(RemoteRejected, match="Организации|7700000000"):
        world.answer(state)
    assert {i["status"] for i in world.items().values()} == {"sent"}


UPLOADER = """
import json, sys
from pathlib import Path
from devtools.sshd import SshdInfo, sftp_client
from ledgerlink.sftp import tuned_sftp_put
info = json.loads(sys.argv[1])
server = SshdInfo(**{**info, "private_key_path": Path(info["private_key_path"]), "root": Path(info["root"])})
with sftp_client(server) as sftp:
    print("connected", flush=True)
    tuned_sftp_put(sftp, sys.argv[2], sys.argv[3])
"""


def test_an_upload_killed_midway_never_shows_its_file_under_the_final_name(world, server, tmp_path):
    """The uploader reads from a pipe we feed: it is killed with part of the message sent, then the folder is
    listed (and 1C asked to take files): only the temporary name is there, and 1C takes nothing."""
    with world.billing.begin() as conn:  # a message of several MiB: the uploader reads and sends 1 MiB blocks
        add_invoices(conn, generated(2_000))
    state = world.send()
    message = Path(state["local_message"])
    assert message.stat().st_size > 3 << 20
    (world.exchange / "in" / state["message"]).unlink()
    (world.exchange / "in" / (state["message"] + ".sha256")).unlink()
    fifo = tmp_path / "message.fifo"
    os.mkfifo(fifo)
    info = {k: str(v) for k, v in vars(server).items()}
    info["port"] = server.port
    remote = f"{world.exchange}/in/{state['message']}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)])}
    uploader = subprocess.Popen([sys.executable, "-c", UPLOADER, json.dumps(info), str(fifo), remote], env=env,
                                stdout=subprocess.PIPE)
    try:
        while (line := uploader.stdout.readline()) and line.strip() != b"connected":
            pass  # the SSH client's log lines
        assert line.strip() == b"connected"
        data = message.read_bytes()
        with open(fifo, "wb") as pipe:
            pipe.write(data[: 3 << 20])  # returns once the uploader has read all but the pipe's buffer
            pipe.flush()
            partial = world.exchange / "in" / f".{state['message']}.part"
            deadline = time.monotonic() + 20
            while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
                time.sleep(0.05)
            uploader.send_signal(signal.SIGKILL)
            uploader.wait(timeout=10)
    except BrokenPipeError:
        pass
    finally:
        if uploader.poll() is None:
            uploader.kill()
    assert world.folder("in") == [f".{state['message']}.part"], "half a file, and only under its temporary name"
    assert 0 < partial.stat().st_size < len(data)
    assert world.one_c_takes_files() == [], "1C leaves a temporary name alone"
    assert world.dump(SALES) == []
    flow.reconcile_and_report(world.answer(state), world.ledger)
    again = world.send()  # the next run sends the documents again, whole, and clears the broken upload away
    assert again["message_no"] == 2 and again["documents"] == state["documents"]
    assert world.folder("in") == [again["message"], again["message"] + ".sha256"]


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Message><Header><ExchangePlan>&lol3;</ExchangePlan></Header></Message>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Message><Header><ExchangePlan>Ledgerlink</ExchangePlan><From>&secret;</From></Header></Message>"""


def answer_bytes(received_no: int, encoding: str = "utf-8", plan: str = "Ledgerlink") -> bytes:
    text = (f'<?xml version="1.0" encoding="{encoding}"?>\n<Message xmlns:msg="{ed.MESSAGE_NS}"><msg:Header>'
            f"<msg:Format>{ed.ED_NS}</msg:Format><msg:Confirmation><msg:ExchangePlan>{plan}</msg:ExchangePlan>"
            f"<msg:To>BILLING</msg:To><msg:From>1C</msg:From><msg:MessageNo>5</msg:MessageNo>"
            f"<msg:ReceivedNo>{received_no}</msg:ReceivedNo></msg:Confirmation>"
            f"<msg:Comment>Обмен завершён</msg:Comment></msg:Header><Body xmlns=\"{ed.ED_NS}\"/></Message>")
    return text.encode("cp1251" if encoding == "windows-1251" else encoding)


def drop_answer(world, data: bytes, name: str = "Message_1C_BILLING.xml") -> None:
    (world.exchange / "out").mkdir(parents=True, exist_ok=True)
    (world.exchange / "out" / name).write_bytes(data)


@pytest.mark.parametrize("hostile", [BOMB, EXTERNAL], ids=["billion_laughs", "external_entity"])
def test_a_hostile_answer_is_refused_naming_the_file_and_nothing_is_acknowledged(world, hostile):
    state = world.send()
    drop_answer(world, hostile)
    with pytest.raises(UnsafeXMLError, match="Message_1C_BILLING.xml: refused"):
        world.answer(state)
    assert {i["status"] for i in world.items().values()} == {"sent"}


def test_a_windows_1251_answer_is_read(world):
    state = world.send()
    drop_answer(world, answer_bytes(1, "windows-1251"))
    assert "Обмен".encode("cp1251") in (world.exchange / "out" / "Message_1C_BILLING.xml").read_bytes()
    assert world.answer(state)["acknowledged_now"] == len(SENT)
    assert world.ledger.watermark(flow.SPEC.id, flow.RECEIVED_NO) == "5"


def test_an_answer_that_does_not_decode_names_the_file_and_the_byte(world):
    state = world.send()
    data = answer_bytes(1)
    broken = data.replace("Обмен".encode(), b"\xff\xfe", 1)
    drop_answer(world, broken)
    with pytest.raises(BadFileError) as caught:
        world.answer(state)
    offset = broken.index(b"\xff")
    assert f"byte {offset} (0xff)" in str(caught.value)
    assert "Message_1C_BILLING.xml" in str(caught.value)


def test_an_answer_of_another_exchange_plan_is_refused(world):
    state = world.send()
    drop_answer(world, answer_bytes(1, plan="ДругойОбмен"))
    with pytest.raises(BadFileError, match="ДругойОбмен"):
        world.answer(state)


def test_the_live_check_reads_1cs_answer_through_the_airflow_connection(world, server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ONEC_EXCHANGE_SFTP", json.dumps({
        "conn_type": "sftp", "host": server.host, "port": server.port, "login": server.user,
        "extra": {"key_file": str(server.private_key_path), "look_for_keys": False, "host_key": server.host_key_line,
                  "no_host_key_check": False, "remote_root": str(world.exchange), "organisation_inn": OUR_INN}}))
    state = world.send()
    world.one_c_takes_files()
    text, agrees = flow.check_target(world.ledger)
    assert not agrees and "confirms our messages up to 1" in text and "4 confirmed by 1C still wait" in text
    flow.reconcile_and_report(world.answer(state), world.ledger)
    text, agrees = flow.check_target(world.ledger)
    assert agrees and "4 document(s) acknowledged, 0 waiting: they agree" in text


def test_planned_and_history_show_each_document_with_its_message(world, monkeypatch, capsys, tmp_path):
    from ledgerlink import cli

    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    world.run()
    assert cli.main(["planned"]) == 0
    table = capsys.readouterr().out
    assert "via" in table.splitlines()[0] and len([line for line in table.splitlines() if "message 1" in line]) == 4
    world.one_c_takes_files()
    world.run()
    assert cli.main(["history", "--target", "onec_files", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["status"], r["message_no"]) for r in rows} == {("acknowledged", 1)} and len(rows) == len(SENT)


def test_an_earlier_document_goes_again_when_it_changed_after_it_went_and_never_when_it_did_not_go(world):
    october = world.run_for("2026-10")
    assert october["documents"] == 1  # IN006, issued on 31 October
    world.one_c_takes_files()
    with world.billing.begin() as conn:  # both October invoices cancelled in November
        conn.execute(sa.text("INSERT INTO invoices SELECT 'IN008', customer_id, contract_id, 'БЛ-000099', issue_date, "
                             "period_start, period_end, currency, net_minor, vat_minor, gross_minor, status, "
                             "updated_at FROM invoices WHERE invoice_id = 'IN006'"))
        conn.execute(sa.text("INSERT INTO invoice_lines SELECT 'IN008-0001', 'IN008', line_no, tariff_id, description, "
                             "quantity, unit_price_minor, net_minor, vat_rate, vat_minor, gross_minor, currency, "
                             "updated_at FROM invoice_lines WHERE invoice_id = 'IN006'"))
        conn.execute(sa.text("UPDATE invoices SET status = 'cancelled', updated_at = '2026-11-25T09:00:00+00:00' "
                             "WHERE invoice_id IN ('IN006', 'IN008')"))
    november = world.run()
    assert november["documents"] == len(SENT) + 1 and november["earlier_not_ours"] == 1
    assert november["updated"] == 1, "IN006 went in October: its cancellation goes now"
    world.one_c_takes_files()
    [october_doc] = [d for d in world.dump(SALES) if d["Number"] == "БЛ-000004"]
    assert (october_doc["Posted"], october_doc["DeletionMark"]) == (False, True)
    assert not [d for d in world.dump(SALES) if d["Number"] == "БЛ-000099"], "never ours: not created in 1C"


def test_an_answer_confirming_a_message_never_sent_is_refused_and_acknowledges_nothing(world):
    state = world.send()
    drop_answer(world, answer_bytes(9))  # e.g. a ledger restored from an older backup
    with pytest.raises(BadFileError, match="received our messages up to 9, but the last message the ledger sent is 1"):
        world.answer(state)
    assert {i["status"] for i in world.items().values()} == {"sent"}
