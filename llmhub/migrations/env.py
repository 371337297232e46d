"""Alembic environment: runs migrations online against the connection handed in by ``llmhub.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        transaction_per_migration=True,
        version_table=config.get_main_option("version_table") or "alembic_version",
        version_table_schema=config.get_main_option("version_table_schema"),
    )
    with context.begin_transaction():
        # Serialises concurrent `llmhub db migrate` runs (two CI jobs, two workers starting).
        connection.exec_driver_sql("select pg_advisory_xact_lock(hashtext('llmhub-migrate'))")
        context.run_migrations()
engine.dispose()
