"""Load and validate the exchange map (``exchange_map.yaml``): masters, flows, schedules, conflict policies.

A bad map is refused with an ``ExchangeMapError`` naming the entity and key at fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from ledgerlink.errors import ExchangeMapError

DEFAULT_MAP_PATH = Path(__file__).with_name("exchange_map.yaml")
SCHEDULE_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@continuous", "on-file",
                    "manual"}
# "rating": a transformation inside one system (usage rated into invoices in billing), the one mode whose flow
# may start and end at the same system.
MODES = {"api", "file", "sql", "rating"}
STATUSES = {"live", "planned"}
# target_edits_held: the master's change is written only over what we last wrote; a record edited in the target
# since (a person's edit: 1C's DataVersion moved) is held back and shown to finance with both values, never
# overwritten. Declared on a flow (``conflict:`` in the flow's entry) when its target keeps people's edits.
CONFLICT_POLICIES = {"master_wins", "last_change_wins", "target_edits_held"}


@dataclass(frozen=True)
class Flow:
    id: str
    entity: str
    source: str
    target: str
    schedule: str
    mode: str
    fields: tuple[str, ...]
    gate: str | None
    status: str
    title: str = ""
    conflict_policy: str | None = None  # the flow's own policy (``conflict:`` in its entry); None: the entity's


@dataclass(frozen=True)
class Entity:
    name: str
    title: str
    master: str
    key: tuple[str, ...]
    field_masters: dict[str, str]
    conflict_policy: str
    timestamp_field: str | None
    volume_per_run: int | None
    volume_total: int | None
    flows: tuple[Flow, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ExchangeMap:
    systems: dict[str, dict]
    entities: dict[str, Entity]

    def flow(self, flow_id: str) -> Flow:
        for entity in self.entities.values():
            for flow in entity.flows:
                if flow.id == flow_id:
                    return flow
        raise KeyError(f"no flow {flow_id!r} in the exchange map")

    def flows(self) -> list[Flow]:
        return [flow for entity in self.entities.values() for flow in entity.flows]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML key given twice (say, two ``master:`` lines) is an error, not a silent overwrite."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _schedule_is_valid(schedule: str) -> bool:
    if schedule in SCHEDULE_PRESETS:
        return True
    from croniter import croniter  # ships with Airflow; imported here to keep module import light

    return croniter.is_valid(schedule)


def parse_exchange_map(document: dict) -> ExchangeMap:
    """Validate a parsed map document and build the typed map."""
    if not isinstance(document, dict):
        raise ExchangeMapError("<map>", "<root>", "the map must be a mapping with 'systems' and 'entities'")
    systems = document.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ExchangeMapError("<map>", "systems", "missing or empty")
    raw_entities = document.get("entities")
    if not isinstance(raw_entities, dict) or not raw_entities:
        raise ExchangeMapError("<map>", "entities", "missing or empty")

    entities: dict[str, Entity] = {}
    field_owner: dict[str, tuple[str, str]] = {}  # "entity.field" -> (master, entity) across the map
    flow_ids: dict[str, str] = {}
    for name, raw in raw_entities.items():
        if not isinstance(raw, dict):
            raise ExchangeMapError(name, "<entity>", "must be a mapping")
        master = raw.get("master")
        if master not in systems:
            raise ExchangeMapError(name, "master", f"unknown system {master!r}; known: {sorted(systems)}")
        key = raw.get("key")
        if not key:
            raise ExchangeMapError(name, "key", "every entity needs a key")
        keys = tuple(key) if isinstance(key, list) else (str(key),)
        field_masters = {}
        for field_name, field_master in (raw.get("fields") or {}).items():
            if isinstance(field_master, list):
                raise ExchangeMapError(name, f"fields.{field_name}",
                                       f"two masters for one field: {field_master}; a field has exactly one")
            if field_master not in systems:
                raise ExchangeMapError(name, f"fields.{field_name}", f"unknown system {field_master!r}")
            field_masters[field_name] = field_master
            record = raw.get("record", name)
            qualified = f"{record}.{field_name}"
            if qualified in field_owner and field_owner[qualified][0] != field_master:
                other_master, other_entity = field_owner[qualified]
                raise ExchangeMapError(name, f"fields.{field_name}",
                                       f"two masters for one field: {field_master!r} here and {other_master!r} "
                                       f"in entity {other_entity!r}")
            field_owner[qualified] = (field_master, name)
        conflict = raw.get("conflict") or {"policy": "master_wins"}
        policy = _conflict_policy(name, "conflict", conflict)
        volume = raw.get("volume") or {}

        flows = []
        for index, raw_flow in enumerate(raw.get("flows") or []):
            where = f"flows[{index}]"
            flow_id = raw_flow.get("id")
            if not flow_id:
                raise ExchangeMapError(name, f"{where}.id", "every flow needs an id")
            if flow_id in flow_ids:
                raise ExchangeMapError(name, f"{where}.id", f"flow id {flow_id!r} already used in {flow_ids[flow_id]!r}")
            flow_ids[flow_id] = name
            for end in ("from", "to"):
                if raw_flow.get(end) not in systems:
                    raise ExchangeMapError(name, f"{where}.{end}", f"unknown system {raw_flow.get(end)!r}")
            if raw_flow["from"] == raw_flow["to"] and raw_flow.get("mode") != "rating":
                raise ExchangeMapError(name, where, "a flow needs two different systems (only a rating stays in one)")
            schedule = str(raw_flow.get("schedule", ""))
            if not _schedule_is_valid(schedule):
                raise ExchangeMapError(name, f"{where}.schedule",
                                       f"{schedule!r} does not parse (cron expression or one of {sorted(SCHEDULE_PRESETS)})")
            mode = raw_flow.get("mode")
            if mode not in MODES:
                raise ExchangeMapError(name, f"{where}.mode", f"{mode!r} is not one of {sorted(MODES)}")
            status = raw_flow.get("status", "planned")
            if status not in STATUSES:
                raise ExchangeMapError(name, f"{where}.status", f"{status!r} is not one of {sorted(STATUSES)}")
            gate = raw_flow.get("gate")
            if gate is not None:
                from ledgerlink.gates.suites import suite_names  # light: names only, no pandas or GX

                if gate not in suite_names():
                    raise ExchangeMapError(name, f"{where}.gate",
                                           f"no gate suite called {gate!r}; the suites are {sorted(suite_names())}")
            carried = tuple(raw_flow.get("fields") or field_masters.keys())
            for field_name in carried:
                if field_masters and field_name not in field_masters:
                    raise ExchangeMapError(name, f"{where}.fields", f"field {field_name!r} is not declared in the entity")
            flow_policy = (_conflict_policy(name, f"{where}.conflict", raw_flow["conflict"])
                           if raw_flow.get("conflict") is not None else None)
            flows.append(Flow(id=flow_id, entity=name, source=raw_flow["from"], target=raw_flow["to"],
                              schedule=schedule, mode=mode, fields=carried, gate=gate, status=status,
                              title=str(raw_flow.get("title") or flow_id), conflict_policy=flow_policy))

        entity = Entity(name=name, title=raw.get("title", name), master=master, key=keys, field_masters=field_masters,
                        conflict_policy=policy, timestamp_field=conflict.get("timestamp_field"),
                        volume_per_run=volume.get("per_run"), volume_total=volume.get("total"), flows=tuple(flows))
        _check_flows_start_at_masters(entity)
        entities[name] = entity
    return ExchangeMap(systems=systems, entities=entities)


def _conflict_policy(entity: str, where: str, conflict) -> str:
    """A ``conflict:`` mapping's policy, checked (an entity's, or a flow's own)."""
    if not isinstance(conflict, dict):
        raise ExchangeMapError(entity, where, "must be a mapping, e.g. {policy: master_wins}")
    policy = conflict.get("policy")
    if policy not in CONFLICT_POLICIES:
        raise ExchangeMapError(entity, f"{where}.policy", f"{policy!r} is not one of {sorted(CONFLICT_POLICIES)}")
    if policy == "last_change_wins" and not conflict.get("timestamp_field"):
        raise ExchangeMapError(entity, f"{where}.timestamp_field", "last_change_wins needs the source timestamp field")
    return policy


def _check_flows_start_at_masters(entity: Entity) -> None:
    """Each field a flow carries must leave from its master, or from a system the master's data reaches."""
    for index, flow in enumerate(entity.flows):
        for field_name in flow.fields or ("<all>",):
            master = entity.field_masters.get(field_name, entity.master)
            holders = {master}
            changed = True
            while changed:  # systems the field reaches from its master, through flows that carry it
                changed = False
                for other in entity.flows:
                    carries = field_name in other.fields or not other.fields
                    if other is not flow and carries and other.source in holders and other.target not in holders:
                        holders.add(other.target)
                        changed = True
            if flow.source not in holders:
                raise ExchangeMapError(
                    entity.name, f"flows[{index}].from",
                    f"flow {flow.id!r} sends field {field_name!r} from {flow.source!r}, which is not its master "
                    f"({master!r}) and does not receive it from the master")


def load_exchange_map(path: Path | str | None = None) -> ExchangeMap:
    """Read and validate a map file (the package's own by default)."""
    path = Path(path) if path else DEFAULT_MAP_PATH
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError as e:
        raise ExchangeMapError("<map>", str(path), f"not valid YAML: {e}") from e
    return parse_exchange_map(document)


@lru_cache(maxsize=1)
def default_map() -> ExchangeMap:
    return load_exchange_map()


def map_table(exchange_map: ExchangeMap) -> list[dict]:
    """One row per flow, for ``python -m ledgerlink map``."""
    rows = []
    for entity in exchange_map.entities.values():
        for flow in entity.flows:
            rows.append({
                "entity": entity.name, "master": entity.master, "flow": flow.id,
                "direction": f"{flow.source} -> {flow.target}", "schedule": flow.schedule, "mode": flow.mode,
                "conflict": flow.conflict_policy or entity.conflict_policy, "gate": flow.gate or "-",
                "volume/run": entity.volume_per_run or "-", "status": flow.status,
            })
    return rows
