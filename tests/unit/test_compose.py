"""docker-compose.yaml cannot be started here (no Docker engine), so it is checked for consistency instead:
every service, volume, mounted path and connection it names exists, and the connections cover the map."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ledgerlink.exchange_map import default_map
from sandbox.__main__ import PORT_OFFSETS

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_ROLES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text(encoding="utf-8"))


def _substituted(value: str) -> str:
    """${VAR:?message} and ${VAR:-default} become a placeholder, as compose would substitute a value."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?[-?][^}]*)?\}", "x", value)


def test_every_airflow_role_and_backing_service_is_there(compose):
    services = set(compose["services"])
    assert AIRFLOW_ROLES | {"postgres", "redis", "sftp", "sandbox", "airflow-init"} <= services
    commands = {name: compose["services"][name]["command"] for name in AIRFLOW_ROLES}
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-dag-processor"] == "dag-processor"
    common_env = compose["services"]["airflow-worker"]["environment"]
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "@postgres/" in common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_depends_on_names_existing_services(compose):
    for name, service in compose["services"].items():
        depends = service.get("depends_on") or {}
        for other in (depends if isinstance(depends, list) else depends.keys()):
            assert other in compose["services"], f"{name} depends on unknown service {other}"


def test_volumes_are_declared_and_mounted_paths_exist(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing path {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
    assert (REPO / "Dockerfile").read_text().startswith("#") and "FROM apache/airflow:3.3" in (REPO / "Dockerfile").read_text()


def _connections(environment: dict) -> dict[str, tuple[str, int | None]]:
    found = {}
    for key, value in environment.items():
        if not key.startswith("AIRFLOW_CONN_"):
            continue
        text = _substituted(str(value))
        if text.lstrip().startswith("{"):
            conn = json.loads(text)
            found[key.removeprefix("AIRFLOW_CONN_").lower()] = (conn["host"], conn.get("port"))
        else:
            parts = urlsplit(text)
            found[key.removeprefix("AIRFLOW_CONN_").lower()] = (parts.hostname, parts.port)
    return found


def test_connections_point_at_services_and_cover_the_exchange_map(compose):
    services = compose["services"]
    connections = _connections(services["airflow-worker"]["environment"])
    from ledgerlink.einvoice.routing import load_routing

    # A routed system (the e-invoice integrators as one target) names its connections in its routing file.
    needed = {system["connection"] for system in default_map().systems.values() if system["protocol"] != "routed"}
    needed |= {integrator.connection for integrator in load_routing().integrators.values()} | {"ledgerlink_ledger"}
    assert needed <= set(connections), f"missing connections: {needed - set(connections)}"
    command = services["sandbox"]["command"]
    base_port = int(command[command.index("--base-port") + 1])
    sandbox_ports = {base_port + offset for offset in PORT_OFFSETS.values()}
    for conn_id, (host, port) in connections.items():
        assert host in services, f"{conn_id} points at {host}, which is not a service"
        if host == "sandbox":
            assert port in sandbox_ports, f"{conn_id} uses port {port}, the sandbox listens on {sorted(sandbox_ports)}"


def test_no_secret_is_written_in_the_file():
    text = (REPO / "docker-compose.yaml").read_text()
    for match in re.finditer(r'"password":\s*"([^"]*)"', text):
        assert match.group(1).startswith("${"), "a password is written in docker-compose.yaml"
    for match in re.finditer(r"postgresql(?:\+\w+)?://\w+:([^@]+)@", text):
        assert match.group(1).startswith("${"), "a database password is written in docker-compose.yaml"


def test_the_image_installs_the_runtime_pins_and_the_package_not_the_test_ones():
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")]
    runs = [args for op, args in instructions if op == "RUN"]
    assert any("pip install" in run and "-r /opt/ledgerlink/requirements.txt" in run for run in runs)
    assert any("pip install" in run and "--no-deps /opt/ledgerlink" in run for run in runs), "the package itself"
    assert "requirements-dev" not in dockerfile, "test and bench requirements stay out of the image"
    for op, args in instructions:
        if op == "COPY":
            sources = [part for part in args.split() if not part.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"the Dockerfile copies missing {source}"
    copied = {part for op, args in instructions if op == "COPY" for part in args.split()}
    assert {"pyproject.toml", "requirements.txt", "include"} <= copied, "what `pip install .` builds from"
