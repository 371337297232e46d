"""``llmhub``: the command line of the hub (stack, schema, producers, ingestion, status, ML).

One module per command group (``llmhub/cli/<group>.py`` defining ``<group>_app``), registered
here: with a name for a group (``llmhub stack up``), without one for a module whose commands sit
at the top level (``llmhub ingest``). Command modules parse options, call the library and print;
heavy imports (torch, prophet, pandas) happen inside the commands.
"""

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from llmhub.cli.alerts import alerts_app
from llmhub.cli.contract import contract_app
from llmhub.cli.db import db_app
from llmhub.cli.dead_letter import dead_letter_app
from llmhub.cli.export import export_app
from llmhub.cli.forecast import forecast_app
from llmhub.cli.ingest import ingest_app
from llmhub.cli.keys import keys_app
from llmhub.cli.ml import ml_app
from llmhub.cli.ml_correlation import ml_correlation_app
from llmhub.cli.ml_forecast import ml_forecast_app
from llmhub.cli.ml_incidents import ml_incidents_app
from llmhub.cli.offsets import offsets_app
from llmhub.cli.output import console
from llmhub.cli.produce import produce_app
from llmhub.cli.quotas import quotas_app
from llmhub.cli.retention import retention_app
from llmhub.cli.serve import serve_app
from llmhub.cli.stack import stack_app
from llmhub.cli.status import status_app

app = typer.Typer(help="LLM Analytics Hub", no_args_is_help=True, add_completion=False)

# Top-level commands: `llmhub ingest`, `status`, `retention`, `export`, `serve`.
app.add_typer(ingest_app)
app.add_typer(serve_app)
app.add_typer(status_app)
app.add_typer(retention_app)
app.add_typer(export_app)
# Groups: `llmhub <group> <command>`.
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(produce_app, name="produce")
app.add_typer(contract_app, name="contract")
app.add_typer(offsets_app, name="offsets")
app.add_typer(dead_letter_app, name="dead-letter")
app.add_typer(keys_app, name="keys")
app.add_typer(quotas_app, name="quotas")
app.add_typer(forecast_app, name="forecast")
app.add_typer(ml_app, name="ml")
# The ml group's commands in their own modules: `llmhub ml eval-forecast`, `eval-daily`,
# `eval-incidents`, `eval-correlation`.
ml_app.add_typer(ml_forecast_app)
ml_app.add_typer(ml_incidents_app)
app.add_typer(alerts_app, name="alerts")
ml_app.add_typer(ml_correlation_app)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


if __name__ == "__main__":
    app()
