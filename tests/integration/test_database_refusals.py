"""A database that refuses the connection for good fails the task at once, with a reason; one that is only
unreachable stays transient for Airflow's retries. Against a real PostgreSQL that checks passwords."""
from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from ledgerlink.errors import DatabaseRefused, database_refusal
from ledgerlink.tasks import fail_fast_on_terminal
from tests.support.pg import PgInfo, run_postgres

PASSWORD = "the-right-one"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> PgInfo:
    """The throwaway cluster, told to check passwords on TCP (scram) for a role that has one."""
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        hba = info.data_dir / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")
        with psycopg.connect(info.dsn, autocommit=True) as connection:
            connection.execute(f"CREATE ROLE clerk LOGIN PASSWORD '{PASSWORD}'")
            connection.execute("SELECT pg_reload_conf()")
        yield info


def _connect(url: sa.URL) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def _url(postgres: PgInfo, **changes) -> sa.URL:
    return sa.make_url(postgres.url).set(username="clerk", password=PASSWORD).set(**changes)


def test_the_right_password_connects(postgres):
    _connect(_url(postgres))


@pytest.mark.parametrize("changes, reason", [
    ({"password": "wrong"}, 'password authentication failed for user "clerk"'),
    ({"database": "no_such_db"}, 'database "no_such_db" does not exist'),
])
def test_a_refused_connection_fails_the_task_at_once_naming_why_and_never_the_password(postgres, changes, reason):
    with pytest.raises(sa.exc.OperationalError) as caught:
        _connect(_url(postgres, **changes))
    refusal = database_refusal(caught.value)
    assert isinstance(refusal, DatabaseRefused) and reason in str(refusal)
    assert f"127.0.0.1:{postgres.port}" in str(refusal) and PASSWORD not in str(refusal)

    @fail_fast_on_terminal
    def extract():
        _connect(_url(postgres, **changes))

    with pytest.raises(AirflowFailException, match="retrying cannot fix this"):
        extract()


def test_a_server_that_does_not_answer_stays_transient(postgres):
    closed = _url(postgres, port=1)  # nothing listens there: a restart, a network blip

    @fail_fast_on_terminal
    def extract():
        _connect(closed)

    with pytest.raises(sa.exc.OperationalError) as caught:
        extract()
    assert database_refusal(caught.value) is None
