"""PostgreSQL 17 + TimescaleDB from Debian trixie, run from a chroot (no Docker engine needed).

Debian 12 has no TimescaleDB package; Debian 13 has ``postgresql-17-timescaledb`` (the Apache
build). ``mmdebstrap`` builds a minimal trixie root holding both in about 20 s; the root lives at
a fixed path outside the checkout so later runs reuse it.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PG_MAJOR = "17"
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = f"postgresql-{PG_MAJOR},postgresql-{PG_MAJOR}-timescaledb"
DATABASES = ("llmhub", "dagster", "mlflow")

# Durability settings stay at PostgreSQL defaults (fsync, synchronous_commit): exactly-once
# ingestion relies on a committed offset surviving a crash.
SERVER_CONF = """\
listen_addresses = '127.0.0.1'
port = {port}
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 1GB
work_mem = 32MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = lz4
effective_cache_size = 8GB
"""

HBA_CONF = """\
# Local dev stack only: trust on loopback. Production uses its own server and credentials.
local   all all                trust
host    all all 127.0.0.1/32   trust
host    all all ::1/128        trust
"""


class StackError(RuntimeError):
    """The local stack could not be brought up; the message says what to do."""


@dataclass(frozen=True)
class TimescaleStack:
    """A TimescaleDB server run from a trixie root at ``root``, listening on ``port``."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 5433

    @classmethod
    def for_url(cls, stack_dir: Path, database_url: str) -> TimescaleStack:
        parts = urlsplit(database_url)
        return cls(
            root=stack_dir / "tsdb-root",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
        )

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc" / "postgresql" / PG_MAJOR / "main"

    def is_built(self) -> bool:
        lib = self.root / "usr" / "lib" / "postgresql" / PG_MAJOR / "lib" / "timescaledb.so"
        return lib.exists() and self.conf_dir.exists()

    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def build(self) -> None:
        """Build the trixie root with mmdebstrap (installing mmdebstrap itself if missing)."""
        if self.is_built():
            return
        if shutil.which("mmdebstrap") is None:
            log.info("installing mmdebstrap from Debian's packages")
            _run(["apt-get", "update", "-qq"])
            _run(["apt-get", "install", "-y", "-qq", "mmdebstrap"])
        staging = self.root.with_name(self.root.name + ".partial")
        if staging.exists():
            shutil.rmtree(staging)
        staging.parent.mkdir(parents=True, exist_ok=True)
        log.info("building a Debian %s root with %s at %s", DEBIAN_SUITE, PACKAGES, self.root)
        _run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={PACKAGES}",
                DEBIAN_SUITE,
                str(staging),
                DEBIAN_MIRROR,
            ]
        )
        # Renaming last makes an interrupted build restart from scratch instead of half-working.
        staging.rename(self.root)

    def configure(self) -> None:
        conf_d = self.conf_dir / "conf.d"
        conf_d.mkdir(exist_ok=True)
        (conf_d / "llmhub.conf").write_text(SERVER_CONF.format(port=self.port))
        (self.conf_dir / "pg_hba.conf").write_text(HBA_CONF)

    def mount(self) -> None:
        proc = self.root / "proc"
        shm = self.root / "dev" / "shm"
        shm.mkdir(parents=True, exist_ok=True)
        if not _is_mountpoint(proc):
            _run(["mount", "-t", "proc", "proc", str(proc)])
        if not _is_mountpoint(shm):
            _run(["mount", "--bind", "/dev/shm", str(shm)])

    def start(self, timeout_s: float = 60.0) -> None:
        if self.is_running():
            return
        self.build()
        self.configure()
        self.mount()
        _run(["chroot", str(self.root), "pg_ctlcluster", PG_MAJOR, "main", "start"])
        deadline = time.monotonic() + timeout_s
        while not self.is_running():
            if time.monotonic() > deadline:
                raise StackError(f"TimescaleDB did not accept connections on port {self.port}")
            time.sleep(0.2)
        self.create_databases()

    def stop(self) -> None:
        if not self.is_running() or not self.is_built():
            return
        _run(["chroot", str(self.root), "pg_ctlcluster", PG_MAJOR, "main", "stop", "-m", "fast"])

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def create_databases(self) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("select datname from pg_database")}
            for name in DATABASES:
                if name not in existing:
                    conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
