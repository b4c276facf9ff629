"""Store fixtures: every store test runs on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.audit.settings import AuditSettings
from services.audit.store import AuditStore, open_store
from tests.postgres_server import PostgresServer, PostgresUnavailableError, postgres_server

#: The audit key of the tests (a real one is 64 random hex characters).
KEY = b"test-audit-key-0123456789abcdef-0123456789abcdef"


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
    """An open store (the tests' key, no anchor file) on an empty database."""
    with open_store(store_url, key=KEY) as opened:
        yield opened


@pytest.fixture
def trail_options(store_url: str, tmp_path: Path) -> AuditSettings:
    """Settings of a trail on each kind of database: the tests' key in a file, an anchor
    file beside it, an anchor every 10 rows."""
    key_file = tmp_path / "secrets" / "audit.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY.decode() + "\n", encoding="utf-8")
    return AuditSettings(url=store_url, key_file=key_file,
                         anchor_file=tmp_path / "anchors" / "audit.anchors",
                         anchor_every_rows=10, anchor_every_s=3600)


def sql_text(value: str) -> str:
    """A SQL string literal (quotes doubled), for statements built by the tamper tests."""
    return "'" + value.replace("'", "''") + "'"


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
