"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, loopback only.

``postgres_server("mlflow", "prefect")`` finds PostgreSQL's programs, creates a
cluster in a fresh temporary folder with one password-protected role, starts
``postgres`` on ``127.0.0.1`` and a free port (TCP only, no Unix socket), creates
the databases asked for, and yields a :class:`Postgres` that builds URLs for each
driver. On exit it stops the server (``pg_ctl stop -m fast``) and deletes the folder.

The role has a real password and the server checks it (``scram-sha-256`` on TCP),
so the URLs the tests hand to Prefect and MLflow carry a password exactly as in
production, and tests can check that it never shows up in output.

Where the programs come from, first found wins: ``PRESCALE_PG_BINDIR``,
``pg_config --bindir``, ``/usr/lib/postgresql/<newest>/bin`` (Debian), then
``PATH``. None found: :func:`tests.support.need_component` (skip locally, fail in
CI, where ``.ci/run`` installs Debian's ``postgresql``).

PostgreSQL refuses to run as root. As root (CI, this machine) the cluster is owned
by and run as the ``postgres`` account that Debian's package creates; the
temporary folder lives outside pytest's root-only ``tmp_path`` for that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import need_component

USER = "prescale"
PASSWORD = "pg-test-p4ss"  # a fixed test value for a loopback-only server, not a secret
PROGRAMS = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class Postgres:
    """A running server: where it is, who may log in, and URLs for each client."""

    host: str
    port: int
    user: str
    password: str
    bindir: Path
    datadir: Path

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        """``driver://user:password@host:port/database``; ``driver`` e.g. ``postgresql+asyncpg``."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """A psycopg (3) connection in autocommit mode to ``database``; use it as a context manager."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, connect_timeout=10, autocommit=True)

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one query, on a fresh connection."""
        with self.connect(database) as conn:
            return conn.execute(sql, params).fetchall()

    def create_database(self, name: str) -> str:
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    if os.environ.get("PRESCALE_PG_BINDIR"):
        candidates.append(Path(os.environ["PRESCALE_PG_BINDIR"]))
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(Path(out.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += [Path(p) for p in versions]
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).resolve().parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in PROGRAMS):
            return folder
    return None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        need_component("PostgreSQL", "running as root and there is no 'postgres' account to run the server as "
                                     "(Debian's postgresql package creates it)")
    return None


def _run(argv: list[str], *, user: str | None, what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, user=user)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed with code {done.returncode}: {done.stdout}{done.stderr}")


def _initdb(bindir: Path, datadir: Path, *, user: str | None) -> None:
    pwfile = datadir.parent / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if user:
        shutil.chown(pwfile, user)
    _run([str(bindir / "initdb"), "-D", str(datadir), "-U", USER, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
          "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], user=user, what="initdb")
    pwfile.unlink()


def _start(bindir: Path, datadir: Path, *, port: int, user: str | None) -> None:
    # TCP on loopback only, no Unix socket; small and fast: no fsync, few connections (Prefect's pool + MLflow's).
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB")
    _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(datadir / "server.log"), "-o", options, "-w", "-t",
          "60", "start"], user=user, what=f"pg_ctl start (log: {datadir / 'server.log'})")


@contextlib.contextmanager
def postgres_server(*databases: str) -> Iterator[Postgres]:
    """Start a throwaway server with ``databases`` created; stop it and delete its files on exit."""
    bindir = find_bindir()
    if bindir is None:
        need_component("PostgreSQL", "no initdb/pg_ctl/postgres found (PRESCALE_PG_BINDIR, pg_config --bindir, "
                                     "/usr/lib/postgresql/*/bin, PATH); install Debian's `postgresql` package")
    try:
        import psycopg  # noqa: F401 - the tests' SQL client, and SQLAlchemy's (so MLflow's) postgresql:// driver
    except ImportError as exc:
        need_component("psycopg", f"pip install 'psycopg[binary]' ({exc})")
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="prescale-pg-"))
    datadir = root / "data"
    if user:
        shutil.chown(root, user)
    started = False
    try:
        _initdb(bindir, datadir, user=user)
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            port = _free_port()
            try:
                _start(bindir, datadir, port=port, user=user)
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        server = Postgres("127.0.0.1", port, USER, PASSWORD, bindir, datadir)
        for name in databases:
            server.create_database(name)
        yield server
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "-t", "30", "stop"], user=user,
                     what="pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)
