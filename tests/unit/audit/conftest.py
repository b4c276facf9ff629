"""Store fixtures: every store test runs on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.audit.store import AuditStore, open_store
from tests.postgres_server import PostgresServer, PostgresUnavailableError, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session (fails, never skips, without one)."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailableError as exc:
        pytest.fail(f"the PostgreSQL store tests need a local server: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty audit database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"audit_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(store_url: str) -> Iterator[AuditStore]:
    """An open store on an empty database."""
    with open_store(store_url) as opened:
        yield opened


def raw_sql(url: str, *statements: str) -> None:
    """Run SQL on the database behind the store's back, as someone with direct access would."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for statement in statements:
            pg.execute(statement)


def drop_guards(url: str) -> tuple[str, ...]:
    """Statements that remove the append-only triggers (what a tamperer would do first)."""
    if url.startswith("sqlite:///"):
        return ("DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete")
    return ("DROP TRIGGER audit_events_no_change ON audit_events",
            "DROP TRIGGER audit_events_no_truncate ON audit_events")
