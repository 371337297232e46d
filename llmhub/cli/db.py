"""``llmhub db``: database schema migrations."""

import typer

from llmhub.cli.output import console, hub_settings

db_app = typer.Typer(help="Database schema migrations.")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply schema migrations (Alembic) up to head; idempotent."""
    from llmhub.db import current_revision, migrate

    settings = hub_settings()
    migrate(settings)
    console.print(f"schema at revision {current_revision(settings)}")
