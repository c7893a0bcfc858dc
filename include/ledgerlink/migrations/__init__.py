"""The ledger's schema, migrated by Alembic: ``ledgerlink migrate`` (:func:`migrate`) upgrades a ledger, and
:class:`~ledgerlink.ledger.Ledger` only checks, once per process, that it is at the head revision.

Ledgers created before Alembic carry their versions (1 to 4) in ``ledger_schema_version`` and no Alembic
version table: the first :func:`migrate` stamps the revision that reproduces their highest version
(``0001``..``0004``) and upgrades from there. That table stays, and revisions 0001 to 0004 still write their
row in it, so a worker of the code before Alembic finds its versions applied and leaves the schema alone;
later revisions are recorded only in Alembic's table.

Alembic's version table is ``ledger_alembic_version``, not its default ``alembic_version``: the ledger may
live in the same database as Airflow's metadata, whose Alembic history is recorded under the default name.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlalchemy as sa

VERSION_TABLE = "ledger_alembic_version"
# The hand-written runner's versions and the revisions that reproduce them.
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003", 4: "0004"}
# Two DAGs (or two `ledgerlink migrate`) starting at once on a fresh ledger would race to create the tables.
ADVISORY_LOCK = 7470263

_FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Migration:
    """What one :func:`migrate` did: the revision found (None: an empty database), the revision stamped on a
    ledger from before Alembic (with its old version number), and the revision it ends at."""

    url: str  # password hidden
    before: str | None
    stamped: str | None
    legacy_version: int | None
    after: str

    @property
    def changed(self) -> bool:
        return self.stamped is not None or self.before != self.after

    def describe(self) -> str:
        if self.stamped:
            start = f"schema version {self.legacy_version} (before Alembic), stamped {self.stamped}"
        else:
            start = self.before or "empty"
        if not self.changed:
            return f"ledger {self.url}: at {self.after} (head), nothing to do"
        return f"ledger {self.url}: {start} -> {self.after} (head)"


def alembic_config(connection: sa.Connection | None = None):
    """Alembic's configuration built in code (no alembic.ini): this folder's env.py and versions; the
    commands run on ``connection``, inside its transaction."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_FOLDER))
    config.set_main_option("version_locations", str(_FOLDER / "versions"))
    config.attributes["connection"] = connection
    return config


@cache
def head() -> str:
    """The head revision of this code's migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    """The ledger's revision (None when Alembic has not touched it). Read directly, not through Alembic's
    MigrationContext, which logs its set-up: this runs once in every task's process."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.scalar(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))


def legacy_version(connection: sa.Connection) -> int | None:
    """The highest version the runner before Alembic applied (None: no ``ledger_schema_version``). It applied
    every pending version in one transaction, so a ledger holds 1..N; anything else is refused."""
    from ledgerlink.errors import ConfigurationError

    if not sa.inspect(connection).has_table("ledger_schema_version"):
        return None
    versions = sorted(connection.scalars(sa.text("SELECT version FROM ledger_schema_version")))
    if not versions:
        return None
    if versions != list(range(1, versions[-1] + 1)) or versions[-1] not in LEGACY_REVISIONS:
        raise ConfigurationError(
            f"the ledger's ledger_schema_version holds versions {versions}: the runner before Alembic wrote 1..N "
            f"with N at most {max(LEGACY_REVISIONS)}; this ledger cannot be matched to a revision. Inspect it "
            f"before migrating.")
    return versions[-1]


def migrate(url: str | None = None) -> Migration:
    """Upgrade the ledger at ``url`` (default: :func:`~ledgerlink.ledger.default_ledger_url`) to head, in one
    transaction under an advisory lock on PostgreSQL. A ledger from before Alembic is stamped first."""
    from alembic import command

    from ledgerlink.ledger import _make_engine, default_ledger_url

    engine = _make_engine(url or default_ledger_url())
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
            config = alembic_config(conn)
            before, stamped, old = current_revision(conn), None, None
            if before is None:
                old = legacy_version(conn)
                if old is not None:
                    stamped = LEGACY_REVISIONS[old]
                    command.stamp(config, stamped)
                    if engine.dialect.name == "postgresql":
                        _grant_version_table_as_runs(conn)
            command.upgrade(config, "head")
            after = current_revision(conn)
    finally:
        engine.dispose()
    return Migration(engine.url.render_as_string(hide_password=True), before, stamped, old, after)


def _grant_version_table_as_runs(connection: sa.Connection) -> None:
    """PostgreSQL, a ledger from before Alembic: the roles granted rights on its tables (a role the nightly
    loads run as, not the owner) may read the new version table, which every ``Ledger`` checks."""
    grantees = connection.scalars(sa.text(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
        "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'runs'::regclass AND a.grantee <> c.relowner")).all()
    for grantee in grantees:  # names quoted by the server
        connection.execute(sa.text(f"GRANT SELECT ON {VERSION_TABLE} TO {grantee}"))


def require_head(engine: sa.Engine) -> None:
    """Raise :class:`~ledgerlink.errors.ConfigurationError` unless the ledger is at this code's head."""
    from ledgerlink.errors import ConfigurationError

    try:
        with engine.connect() as conn:
            found = current_revision(conn)
    except sa.exc.ProgrammingError as e:  # PostgreSQL: a role without rights on the version table
        raise ConfigurationError(
            f"cannot read the ledger's schema revision ({VERSION_TABLE}) at "
            f"{engine.url.render_as_string(hide_password=True)}: grant this role SELECT on it ({e.orig})") from e
    wanted = head()
    if found == wanted:
        return
    where = engine.url.render_as_string(hide_password=True)
    if found is None:
        state = "has no schema yet" if not sa.inspect(engine).has_table("ledger_schema_version") else \
            "was created before Alembic"
    elif _known(found):
        state = f"is at revision {found}"
    else:
        raise ConfigurationError(
            f"the ledger {where} is at revision {found}, which this Ledgerlink does not know (its head is {wanted}): "
            f"a newer Ledgerlink migrated it; run that version.")
    raise ConfigurationError(f"the ledger {where} {state}, this Ledgerlink needs revision {wanted}: "
                             f"run `ledgerlink migrate` (python -m ledgerlink migrate).")


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def record_legacy_version(version: int, description: str) -> None:
    """Inside a revision (0001 to 0004): its row in ``ledger_schema_version``, as the runner before Alembic
    wrote it, unless there already."""
    from datetime import datetime, timezone

    from alembic import op

    table = sa.table("ledger_schema_version", sa.column("version", sa.Integer),
                     sa.column("description", sa.String), sa.column("applied_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    if bind.scalar(sa.select(table.c.version).where(table.c.version == version)) is None:
        bind.execute(sa.insert(table).values(version=version, description=description,
                                             applied_at=datetime.now(timezone.utc)))
