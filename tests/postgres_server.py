"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder.

It listens on a free loopback port with trust authentication, runs as the `postgres` user
when the tests run as root (PostgreSQL refuses to run as root), and is removed on exit.
The server binaries come from the Debian/Ubuntu `postgresql` package (or any initdb on
PATH); `PostgresUnavailableError` says how to get them when they are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "roadstream"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries, or no psycopg, on this machine."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server."""

    host: str
    port: int

    def url(self, dbname: str = "postgres") -> str:
        """The libpq URL of one database on this server."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_bindir() -> Path:
    """The folder of initdb and pg_ctl: PATH first, then the newest /usr/lib/postgresql/*."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found (initdb); install them, e.g. "
        "`apt-get install -y postgresql`")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _runner() -> list[str]:
    """Prefix that runs a command as `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    # runuser lives in sbin, which a non-login PATH may lack
    runuser = shutil.which("runuser", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if runuser is None:
        raise PostgresUnavailableError("running as root needs runuser to start PostgreSQL "
                                       "as the postgres user")
    return [runuser, "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a server for the duration of the block; stop and delete it afterwards."""
    try:
        import psycopg  # noqa: F401  (the store's driver must be there too)
    except ImportError:
        raise PostgresUnavailableError("psycopg is not installed: pip install "
                                       "'psycopg[binary]'") from None
    bindir = find_bindir()
    prefix = _runner()
    root = Path(tempfile.mkdtemp(prefix="roadstream-pg-"))
    data = root / "data"
    if prefix:
        shutil.chown(root, user="postgres", group="postgres")
    port = _free_port()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
               "-c fsync=off -c full_page_writes=off")  # throwaway data: speed over safety
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        started = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                  "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
                                 capture_output=True, timeout=90, check=False)
        if started.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-2000:] \
                if (root / "server.log").exists() else ""
            raise PostgresUnavailableError(f"pg_ctl start failed: "
                                           f"{started.stderr.decode(errors='replace')}\n{log}")
        try:
            yield PostgresServer("127.0.0.1", port)
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
