"""``llmhub keys``: per-tenant API keys (issue, list, revoke, rotate)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from llmhub.cli.output import console, hub_settings, out
from llmhub.db import connect

keys_app = typer.Typer(help="Per-tenant API keys of the HTTP API.", no_args_is_help=True)


def _conn() -> psycopg.Connection:
    return connect(hub_settings(), autocommit=True)


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to")],
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[list[str], typer.Option(help="ingest, read or admin (repeatable)")] = ["read"],  # noqa: B006
    role: Annotated[str, typer.Option(help="viewer, editor or admin")] = "viewer",
    expires_days: Annotated[int | None, typer.Option(help="Days until it expires")] = None,
) -> None:
    """Issue a key; the token is printed once on stdout and never stored."""
    from llmhub.api.keys import create_key

    expires = timedelta(days=expires_days) if expires_days else None
    with _conn() as conn:
        token, record = create_key(conn, tenant, name, tuple(scope), role, expires)
    console.print(
        f"[green]key {record.key_id}[/] tenant={tenant} scopes={record.scopes} "
        f"role={role} expires={record.expires_at}"
    )
    out.print(token, highlight=False)


@keys_app.command("list")
def list_(tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """List keys (never their secrets)."""
    from llmhub.api.keys import list_keys

    with _conn() as conn:
        records = list_keys(conn, tenant)
    table = Table("key", "tenant", "name", "scopes", "role", "created", "expires", "revoked")
    for r in records:
        table.add_row(
            r.key_id,
            r.tenant_id,
            r.name,
            ",".join(r.scopes),
            r.role,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            str(r.expires_at or "-"),
            str(r.revoked_at or "-"),
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key now (API processes stop accepting it within 30 s, their cache time)."""
    from llmhub.api.keys import revoke_key

    with _conn() as conn:
        if not revoke_key(conn, key_id):
            console.print(f"[red]no active key {key_id}")
            raise typer.Exit(1)
    console.print(f"[green]revoked {key_id}")


@keys_app.command("rotate")
def rotate(
    key_id: str,
    grace_hours: Annotated[float, typer.Option(help="Hours the old key keeps working")] = 24.0,
) -> None:
    """Issue a replacement key (same tenant, scopes, role); the old one expires after the
    grace period. The new token is printed once on stdout."""
    from llmhub.api.keys import rotate_key

    with _conn() as conn, conn.transaction():
        try:
            token, record = rotate_key(conn, key_id, timedelta(hours=grace_hours))
        except KeyError as exc:
            console.print(f"[red]{exc.args[0]}")
            raise typer.Exit(1) from None
    console.print(
        f"[green]key {record.key_id}[/] replaces {key_id} (old one valid for {grace_hours:g} h)"
    )
    out.print(token, highlight=False)
