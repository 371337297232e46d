"""Database connections and schema migrations (Alembic)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from llmhub.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection to the hub database."""
    return psycopg.connect(settings.database_url, autocommit=autocommit, application_name="llmhub")


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy form of a ``postgresql://`` URL, using the psycopg 3 driver."""
    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg{sep}{rest}"
    return database_url


def alembic_config(settings: Settings) -> Config:
    # Imported here: Alembic pulls in SQLAlchemy, a second of start-up every ingest run pays.
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would treat a '%' in a password as a format directive.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(settings.database_url).replace("%", "%%"))
    return cfg


def migrate(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent: an up-to-date schema is left alone)."""
    from alembic import command

    command.upgrade(alembic_config(settings), revision)


def current_revision(settings: Settings) -> str | None:
    with connect(settings, autocommit=True) as conn:
        exists = conn.execute("select to_regclass('public.alembic_version')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute("select version_num from public.alembic_version").fetchone()
        return row[0] if row else None
