"""Start and stop the whole sandbox world: ``python -m sandbox up|down|status|serve``.

``up`` generates the demo data (if missing), starts every stand-in on free loopback ports in a background
process, waits until each answers, and writes ``<dir>/connections.env`` with the matching Airflow
connections (``AIRFLOW_CONN_*``) — the only bridge between the stand-ins and Ledgerlink.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

DEFAULT_DIR = Path(".sandbox")


def _env_line(name: str, value: str) -> str:
    return f"export {name}={shlex.quote(value)}"


# Offsets from --base-port when the ports must be known in advance (docker-compose); 0 means any free port.
PORT_OFFSETS = {"onec": 1, "crm": 2, "einvoice_rest": 3, "einvoice_soap": 4, "control": 9, "sftp": 22, "smtp": 25}
SECRET_NAMES = ("onec", "crm", "einvoice_rest", "einvoice_soap", "sftp")


def make_control_server(host: str, port: int, plans: dict):
    """The world's control point for stand-ins that do not speak HTTP: ``/_sandbox/faults/<sftp|smtp>``
    takes the same rules (POST replaces, DELETE clears, GET shows) as any HTTP stand-in's ``/_sandbox/faults``."""
    from sandbox.httpbase import Response, SandboxHandler, SandboxServer

    class ControlHandler(SandboxHandler):
        def admin_route(self, method, path, query, body):
            name = path.removeprefix("/_sandbox/faults/")
            if not path.startswith("/_sandbox/faults/") or name not in plans:
                return None
            plan = plans[name]
            if method in ("POST", "PUT"):
                try:
                    plan.set(json.loads(body or b"[]"))
                except (ValueError, TypeError) as e:
                    return Response.json(400, {"error": str(e)})
            elif method == "DELETE":
                plan.clear()
            return Response.json(200, plan.rules())

        def route(self, method, path, query, body):
            return Response.json(404, {"error": f"the control server has only /_sandbox/ endpoints, not {path}"})

    return SandboxServer((host, port), ControlHandler)


def serve(directory: Path, seed: int, customers: int, host: str = "127.0.0.1", base_port: int = 0) -> None:
    """Run every stand-in in this process until SIGTERM/SIGINT."""
    from sandbox import bridge, crm, generator
    from sandbox.einvoice import gib as gib_module
    from sandbox.einvoice import rest_integrator, soap_integrator
    from sandbox.onec.server import make_server as make_onec
    from sandbox.sftp_server import SftpServer
    from sandbox.smtp_sink import SmtpSink

    directory.mkdir(parents=True, exist_ok=True)
    billing_db, erp_db = directory / "billing.db", directory / "erp.db"
    if not billing_db.exists():
        generator.generate_billing(billing_db, seed=seed, customers=customers)
    if not erp_db.exists():
        generator.generate_erp(erp_db, seed=seed, customers=customers)

    secrets_file = directory / "secrets.json"
    if secrets_file.exists():
        creds = json.loads(secrets_file.read_text())
    else:
        creds = {name: secrets.token_urlsafe(18) for name in SECRET_NAMES}
    # docker-compose hands the same secrets to Airflow's connections and to the stand-ins through the env.
    creds.update({name: os.environ[f"SANDBOX_{name.upper()}_SECRET"] for name in SECRET_NAMES
                  if os.environ.get(f"SANDBOX_{name.upper()}_SECRET")})
    secrets_file.write_text(json.dumps(creds))
    secrets_file.chmod(0o600)

    def port(name: str) -> int:
        return base_port + PORT_OFFSETS[name] if base_port else 0

    sftp_root = directory / "sftp"
    onec_exchange = sftp_root / "onec"
    for folder in (sftp_root / "bridge", onec_exchange):
        folder.mkdir(parents=True, exist_ok=True)
    if not any((sftp_root / "bridge").iterdir()):
        # The conference bridge's drop for the first day after the world's last period: one file in cp1251, one
        # late (October's last day, whose invoices billing has issued), one broken.
        with sqlite3.connect(billing_db) as db:
            customer_ids = [row[0] for row in db.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
        bridge.drop_cdr_files(sftp_root / "bridge", customer_ids, date(2026, 11, 1), seed=seed,
                              bridges=("BR01", "BR02", "BR03", "BR04"), cp1251_bridges=("BR02",),
                              late_bridges=("BR03",), broken={"BR04": "bad_row"})

    # A day's bank statement against billing's open invoices, imported into 1C as bank receipts once their payers
    # (billing's customers, which billing_customers_to_onec creates in 1C) are there.
    from sandbox.onec.bank import write_demo_statement

    statement = directory / "onec_bank_statement.json"
    write_demo_statement(billing_db, statement)
    # SANDBOX_ONEC_IF_MATCH=ignore: a 1C base that ignores If-Match, as some real ones do. Node PAYMENTS of the
    # exchange plan is the one the payments flow reads its changes through (BILLING is the file exchange's).
    # SANDBOX_ONEC_LATENCY_MS=20: the base's own time per OData request (a real 1C: 10 to 50 ms; default 0).
    onec = make_onec(host=host, port=port("onec"), db_path=directory / "onec.db", users={"ledgerlink": creds["onec"]},
                     base="/demo", exchange_dir=onec_exchange, bank_statement=statement,
                     node_codes=("BILLING", "PAYMENTS"),
                     honour_if_match=os.environ.get("SANDBOX_ONEC_IF_MATCH", "honour").lower() != "ignore",
                     latency_seconds=float(os.environ.get("SANDBOX_ONEC_LATENCY_MS") or 0) / 1000)
    crm_server = crm.make_server(host, port("crm"), directory / "crm.db", tokens={creds["crm"]: "ledgerlink"})
    gib = gib_module.Gib(directory / "gib.db")
    # GİB's e-Fatura user list: Turkish companies are registered, people (TCKN) are not and get e-Arşiv.
    with sqlite3.connect(billing_db) as db:
        for tax_id, legal_name in db.execute("SELECT tax_id, legal_name FROM customers WHERE country = 'TR'"
                                             " AND entity_kind = 'company' ORDER BY customer_id"):
            gib.register_user(tax_id, legal_name)
    rest = rest_integrator.make_server(host, port("einvoice_rest"), gib, api_keys={creds["einvoice_rest"]: "ledgerlink"})
    soap = soap_integrator.make_server(host, port("einvoice_soap"), gib, users={"ledgerlink": creds["einvoice_soap"]})
    http_servers = {"onec": onec, "crm": crm_server, "einvoice_rest": rest, "einvoice_soap": soap}
    for server in http_servers.values():
        server.start_in_thread()
    sftp = SftpServer(host, port("sftp"), sftp_root, directory / "sftp_host_key",
                      users={"ledgerlink": {"password": creds["sftp"]}})
    sftp.start()
    smtp = SmtpSink(host, port("smtp"), directory / "mail")
    smtp.start()
    control = make_control_server(host, port("control"), {"sftp": sftp.faults, "smtp": smtp.faults})
    control.start_in_thread()

    def http_conn(server, login: str | None, password: str, extra: dict | None = None) -> str:
        host, port = server.server_address[:2]
        return json.dumps({"conn_type": "http", "host": host, "port": port, "schema": "http", "login": login,
                           "password": password, "extra": extra or {}})

    # The key with its type ("ssh-ed25519 AAAA..."): Airflow's asynchronous SFTP hook (the deferrable sensor's)
    # reads a bare key as RSA and refuses an Ed25519 server; the synchronous hook takes either form.
    sftp_extra = {"host_key": " ".join(sftp.host_key_line.split()[:2]), "no_host_key_check": False}
    connections = {
        "AIRFLOW_CONN_BILLING_DEFAULT": f"sqlite:///{billing_db.resolve()}",
        "AIRFLOW_CONN_ERP_DEFAULT": f"sqlite:///{erp_db.resolve()}",
        "AIRFLOW_CONN_ONEC_DEFAULT": http_conn(onec, "ledgerlink", creds["onec"], {"base": "/demo", "timeout": 30,
                                                                                  "exchange_node": "PAYMENTS"}),
        "AIRFLOW_CONN_CRM_DEFAULT": http_conn(crm_server, None, creds["crm"], {"base": "/api/v1"}),
        "AIRFLOW_CONN_EINVOICE_REST_DEFAULT": http_conn(rest, None, creds["einvoice_rest"]),
        "AIRFLOW_CONN_EINVOICE_SOAP_DEFAULT": http_conn(soap, "ledgerlink", creds["einvoice_soap"]),
        "AIRFLOW_CONN_BRIDGE_SFTP": json.dumps({"conn_type": "sftp", "host": "127.0.0.1", "port": sftp.port,
                                                "login": "ledgerlink", "password": creds["sftp"],
                                                "extra": {**sftp_extra, "remote_root": "/bridge"}}),
        "AIRFLOW_CONN_ONEC_EXCHANGE_SFTP": json.dumps({"conn_type": "sftp", "host": "127.0.0.1", "port": sftp.port,
                                                       "login": "ledgerlink", "password": creds["sftp"],
                                                       # Our node and 1C's in its exchange plan, and the
                                                       # organisation its base holds (schema.SEED).
                                                       "extra": {**sftp_extra, "remote_root": "/onec",
                                                                 "node": "BILLING", "peer": "1C",
                                                                 "exchange_plan": "Ledgerlink",
                                                                 "organisation_inn": "7701452833",
                                                                 "ack_wait_seconds": 60}}),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                                 "extra": {"disable_tls": True, "disable_ssl": True}}),
    }
    env_file = directory / "connections.env"
    env_file.write_text("\n".join(_env_line(k, v) for k, v in connections.items()) + "\n")
    env_file.chmod(0o600)
    world = {"pid": os.getpid(), "urls": {name: s.url for name, s in {**http_servers, "control": control}.items()},
             "sftp_port": sftp.port, "smtp_port": smtp.port, "directory": str(directory.resolve())}
    (directory / "world.json").write_text(json.dumps(world, indent=2))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in (*http_servers.values(), control):
        server.shutdown()
        server.server_close()
    sftp.stop()
    smtp.stop()
    (directory / "world.json").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's: not our sandbox
        return False
    return True


def up(directory: Path, seed: int, customers: int, timeout: float = 60.0) -> dict:
    """Start the world in the background; returns world.json once every stand-in answers."""
    world_file = directory / "world.json"
    if world_file.exists():
        world = json.loads(world_file.read_text())
        if _alive(world["pid"]):
            return world
        world_file.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    log = open(directory / "sandbox.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--dir", str(directory), "--seed", str(seed),
                                "--customers", str(customers)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sandbox stopped while starting; see {directory / 'sandbox.log'}")
        if world_file.exists():
            world = json.loads(world_file.read_text())
            if all(_healthy(url) for url in world["urls"].values()):
                return world
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the sandbox did not start within {timeout:.0f} s; see {directory / 'sandbox.log'}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_sandbox/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def down(directory: Path) -> None:
    world_file = directory / "world.json"
    if not world_file.exists():
        return
    pid = json.loads(world_file.read_text())["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"the sandbox (pid {pid}) did not stop within 10 s; {world_file} is kept")
    world_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "serve"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (serve only)")
    parser.add_argument("--base-port", type=int, default=0, help="fixed ports from here (serve only); 0: any free")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.dir, args.seed, args.customers, args.host, args.base_port)
    elif args.command == "up":
        world = up(args.dir, args.seed, args.customers)
        sys.stdout.write(f"sandbox up: {json.dumps(world['urls'])}; connections in {args.dir / 'connections.env'}\n")
    elif args.command == "down":
        down(args.dir)
        sys.stdout.write("sandbox down\n")
    else:
        world_file = args.dir / "world.json"
        sys.stdout.write(world_file.read_text() if world_file.exists() else "sandbox is not running\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
