"""``llmhub contract``: the published event contract."""

from typing import Annotated

import typer

from llmhub.cli.output import console

contract_app = typer.Typer(help="The published event contract.")


@contract_app.command("export")
def contract_export(
    check: Annotated[bool, typer.Option(help="Fail if generated files are stale.")] = False,
) -> None:
    """Regenerate the JSON Schemas and docs/event-contract.md from the models."""
    from llmhub.contract.schema_export import export

    stale = export(check=check)
    for path in stale:
        console.print(f"{'stale' if check else 'wrote'} {path}")
    if check and stale:
        raise typer.Exit(1)
