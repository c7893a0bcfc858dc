"""A flow as the exchange map declares it, checked against what the flow's code says it does.

The map is the source of truth (DESIGN §2): which system a flow reads and writes, which fields it carries (and
so which columns its content hash covers), its schedule, gate suite, volumes and conflict policy. A flow's code
declares only what is truly its own (the systems it talks to and the fields its mapping reads); where that
disagrees with the map, the flow is refused when it is loaded, naming the entity and the field.

Light on purpose: the DAG files read specs at parse time (no pandas, no connections).
"""
from __future__ import annotations

from dataclasses import dataclass

from ledgerlink.errors import ExchangeMapError
from ledgerlink.exchange_map import ExchangeMap, default_map


@dataclass(frozen=True)
class FlowSpec:
    id: str
    title: str
    entity: str
    source: str
    target: str
    schedule: str
    mode: str
    gate: str | None
    key: tuple[str, ...]
    fields: tuple[str, ...]  # what travels, in the order the content hash takes them (after the key)
    master: str
    conflict_policy: str
    volume_per_run: int | None
    volume_total: int | None

    @property
    def content_columns(self) -> list[str]:
        """The columns a record's content hash covers: its key, then exactly the fields the map gives the flow."""
        return [*self.key, *(f for f in self.fields if f not in self.key)]

    @property
    def tags(self) -> list[str]:
        return ["ledgerlink", self.source, self.target, self.entity, self.mode]

    def doc_md(self, prose: str = "") -> str:
        """The DAG's documentation: what the map says of the flow, then the DAG file's own prose."""
        facts = [f"### {self.title}", "",
                 f"- **Flow**: `{self.id}`: {self.entity} from `{self.source}` to `{self.target}` ({self.mode}), "
                 f"schedule `{self.schedule}`",
                 f"- **Master**: `{self.master}`; on conflict: {self.conflict_policy.replace('_', ' ')}",
                 f"- **Carries**: {', '.join(f'`{f}`' for f in self.fields)} (key {', '.join(self.key)})",
                 f"- **Gate suite**: `{self.gate or 'none'}`; volume: {self.volume_per_run or '-'} per run, "
                 f"{self.volume_total or '-'} in total",
                 "- **From the exchange map** (`ledgerlink map`)."]
        return "\n".join(facts) + ("\n\n" + prose.strip() if prose.strip() else "")


def spec_of(flow_id: str, exchange_map: ExchangeMap | None = None) -> FlowSpec:
    """The map's declaration of a flow (no check against code: the DAG files use it at parse time)."""
    exchange_map = exchange_map or default_map()
    try:
        flow = exchange_map.flow(flow_id)
    except KeyError as e:
        raise ExchangeMapError("<map>", flow_id, "no flow with this id in the exchange map") from e
    entity = exchange_map.entities[flow.entity]
    return FlowSpec(id=flow.id, title=flow.title or flow.id, entity=flow.entity, source=flow.source,
                    target=flow.target, schedule=flow.schedule, mode=flow.mode, gate=flow.gate, key=entity.key,
                    fields=flow.fields, master=entity.master,
                    conflict_policy=flow.conflict_policy or entity.conflict_policy,
                    volume_per_run=entity.volume_per_run, volume_total=entity.volume_total)


def _flow_policy(flow_id: str, exchange_map: ExchangeMap | None = None) -> str | None:
    """The flow's own conflict policy in the map, if its entry has one."""
    return (exchange_map or default_map()).flow(flow_id).conflict_policy


def declared(flow_id: str, *, entity: str, source: str, target: str, carries: tuple[str, ...] | list[str],
             conflict_policies: tuple[str, ...] = ("master_wins",),
             exchange_map: ExchangeMap | None = None) -> FlowSpec:
    """The spec of the flow whose code reads ``source``, writes ``target`` and whose mapping carries ``carries``
    (the entity's fields it reads, key excluded), refused with an :class:`ExchangeMapError` where the code and
    the map disagree. ``conflict_policies``: those the flow can apply (``master_wins``; ``target_edits_held``
    for a keyed flow whose target adapter reports the version it wrote, see ``flows.keyed``)."""
    spec = spec_of(flow_id, exchange_map)
    where = f"flow {flow_id}"
    if spec.entity != entity:
        raise ExchangeMapError(entity, where, f"the code carries entity {entity!r}; the map files the flow under "
                                              f"{spec.entity!r}")
    for end, code_side, map_side in (("from", source, spec.source), ("to", target, spec.target)):
        if code_side != map_side:
            raise ExchangeMapError(entity, f"{where}.{end}", f"the code {'reads' if end == 'from' else 'writes'} "
                                                             f"{code_side!r}; the map says {map_side!r}")
    for field_name in carries:
        if field_name not in spec.key and field_name not in spec.fields:
            raise ExchangeMapError(entity, f"fields.{field_name}",
                                   f"flow {flow_id!r} carries {field_name!r}, which the map does not give it "
                                   f"(it gives {list(spec.fields)})")
    for field_name in spec.fields:
        if field_name not in carries:
            raise ExchangeMapError(entity, f"fields.{field_name}",
                                   f"the map gives flow {flow_id!r} the field {field_name!r}, which its code does "
                                   f"not carry: it would be hashed but never sent")
    if spec.conflict_policy not in conflict_policies:
        raise ExchangeMapError(entity, f"flows.{flow_id}.conflict.policy" if _flow_policy(
                                   flow_id, exchange_map) else "conflict.policy",
                               f"flow {flow_id!r} can apply {list(conflict_policies)}, not {spec.conflict_policy!r}")
    return spec


SYSTEM_NAMES = {"onec": "1C", "erp": "ERP", "billing": "billing", "crm": "CRM", "einvoice": "the e-invoice integrators",
                "bridge": "the conference bridge"}


def system_name(system: str) -> str:
    """A system as finance names it: ``onec`` → ``1C``."""
    return SYSTEM_NAMES.get(system, system)
