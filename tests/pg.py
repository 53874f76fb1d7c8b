"""A throw-away PostgreSQL cluster for the tests: initdb in a temp folder, 127.0.0.1 on a free port, stopped after.

The binaries come from Debian's `postgresql` package (`make test` installs it). PostgreSQL refuses to run as
root, so under root the cluster belongs to the package's `postgres` user. Set TUNELOOP_TEST_POSTGRES_URL
(``postgresql+psycopg://user@host:port/db``) to use a server you already run instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

USER = "tuneloop"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL's initdb was not found: run `make test` (it installs Debian's postgresql "
                       "package) or set TUNELOOP_TEST_POSTGRES_URL to a server you run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``with Cluster() as pg:`` then ``pg.new_database()`` gives a fresh, empty database's SQLAlchemy URL."""

    def __init__(self) -> None:
        self.given = os.environ.get("TUNELOOP_TEST_POSTGRES_URL")
        self.folder: Path | None = None
        self.port = 0
        self._as: list[str] = []

    def __enter__(self) -> Cluster:
        if self.given:
            return self
        bindir = _bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="tuneloop-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        self.port = _free_port()
        self._run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")
        # fsync stays on: the kill -9 tests need real durability, not a faster cluster.
        options = f"-k {self.folder} -h 127.0.0.1 -p {self.port} -c max_connections=200"
        self._run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w",
                  "-t", "120", "start")
        self._pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
        return self

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True)
        if done.returncode != 0:
            log = (self.folder / "log") if self.folder else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(command[:2])} failed: {done.stderr or done.stdout}{tail}")

    def __exit__(self, *exc: object) -> None:
        if self.folder is None:
            return
        subprocess.run([*self._as, *self._pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        if self.given:
            return self.given
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        url = make_url(self.admin_url)
        name = f"t_{uuid.uuid4().hex[:12]}"
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False)
