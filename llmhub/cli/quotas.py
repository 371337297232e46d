"""``llmhub quotas``: per-tenant overrides of the HTTP API's quotas (defaults from config)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmhub.cli.output import console, hub_settings, out
from llmhub.db import connect

quotas_app = typer.Typer(
    help="Per-tenant API quotas: rates, bursts and the monthly event quota.", no_args_is_help=True
)


@quotas_app.command("set")
def set_(
    tenant: Annotated[str, typer.Argument(help="Tenant id")],
    ingest_rate: Annotated[float | None, typer.Option(help="Ingested events per second")] = None,
    ingest_burst: Annotated[float | None, typer.Option(help="Ingest bucket size")] = None,
    monthly_events: Annotated[int | None, typer.Option(help="Events per calendar month")] = None,
    query_rate: Annotated[float | None, typer.Option(help="Queries per second")] = None,
    query_burst: Annotated[float | None, typer.Option(help="Query bucket size")] = None,
) -> None:
    """Give a tenant its own limits (the ones not given keep their current value); every API
    process applies them at the tenant's next request."""
    from llmhub.api.quotas import set_override

    limits = {
        "ingest_rate_per_s": ingest_rate,
        "ingest_burst": ingest_burst,
        "monthly_events": monthly_events,
        "query_rate_per_s": query_rate,
        "query_burst": query_burst,
    }
    given = {k: v for k, v in limits.items() if v is not None}
    if not given:
        console.print("[red]give at least one limit (see --help)")
        raise typer.Exit(2)
    with connect(hub_settings(), autocommit=True) as conn:
        try:
            set_override(conn, tenant, given)
        except ValueError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from None
    _show(tenant)


@quotas_app.command("reset")
def reset(tenant: Annotated[str, typer.Argument(help="Tenant id")]) -> None:
    """Return a tenant to the configured defaults."""
    from llmhub.api.quotas import clear_override

    with connect(hub_settings(), autocommit=True) as conn:
        if not clear_override(conn, tenant):
            console.print(f"[yellow]{tenant} had no override")
            return
    console.print(f"[green]{tenant} back to the defaults")


@quotas_app.command("show")
def show(
    tenant: Annotated[
        str | None, typer.Argument(help="Tenant id (default: every tenant with an override)")
    ] = None,
) -> None:
    """Effective limits; an asterisk marks a tenant's own value (the rest are defaults)."""
    _show(tenant)


HEADINGS = ("ingest/s", "ingest burst", "events/month", "queries/s", "query burst")


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _show(tenant: str | None) -> None:
    from llmhub.api.quotas import LIMITS, tenant_limits
    from llmhub.config import load_api_settings

    settings = hub_settings()
    with connect(settings, autocommit=True) as conn:
        rows = tenant_limits(conn, load_api_settings(settings), tenant)
    table = Table("tenant", *HEADINGS)
    for row in rows:
        table.add_row(
            row.tenant_id,
            *(_number(getattr(row, k)) + ("*" if k in row.overridden else "") for k in LIMITS),
        )
    out.print(table)
