"""``llmhub ml``: the ML group, and its evaluation of the anomaly detectors on NAB.

The group's other commands live in ``ml_<topic>.py`` modules (``ml_forecast``, ``ml_incidents``)
whose apps ``llmhub/cli/__init__.py`` merges into ``ml_app``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llmhub.cli.output import console, out

ml_app = typer.Typer(help="ML models: evaluations against public benchmarks.", no_args_is_help=True)

logger = logging.getLogger(__name__)


@ml_app.callback()
def _ml() -> None:
    """ML models: evaluations against public benchmarks."""


_COLUMNS = {
    "nab_standard": "NAB std",
    "nab_low_fp": "low FP",
    "nab_low_fn": "low FN",
    "precision": "prec",
    "recall": "recall",
    "f1": "F1",
    "fpr": "FPR",
}


@ml_app.command("eval-anomaly")
def eval_anomaly(
    data_dir: Annotated[
        Path,
        typer.Option(
            exists=True, file_okay=False, help="NAB data layout: DIR/<category>/<file>.csv."
        ),
    ],
    labels: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="NAB combined_windows.json."),
    ],
    profiles: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="NAB profiles.json (default: NAB's three profiles)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--file", help="Score only this file (<category>/<file>.csv); repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the published ensemble (and each member) over a NAB corpus and score it NAB's way.

    Every file is streamed online: detectors learn on its probationary 15% and score each later
    point from the points up to it. Scores per detector: normalised NAB score on the standard,
    reward-low-FP and reward-low-FN profiles (threshold tuned per profile; null 0, perfect 100)
    and precision, recall, F1 and false-positive rate at the standard threshold.
    """
    import torch

    from ml.anomaly import EnsembleDetector
    from ml.evaluation.nab import (
        NAB_PROFILES,
        EvaluationError,
        evaluate_online,
        load_corpus,
        load_profiles,
    )

    # The LSTM is tiny: more threads only contend (and this runs beside other work).
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        corpus = load_corpus(data_dir, labels)
        if only:
            corpus = corpus.subset(only)
        chosen = load_profiles(profiles) if profiles else NAB_PROFILES

        def progress(name: str, seconds: float) -> None:
            logger.info("%s scored in %.1f s", name, seconds)

        reports, _ = evaluate_online(corpus, EnsembleDetector, chosen, on_file=progress)
    except (EvaluationError, ValueError) as exc:
        console.print(f"[red]evaluation failed:[/] {exc}")
        raise typer.Exit(2) from None
    seconds = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps({name: report.to_dict() for name, report in reports.items()}))
        return
    table = Table(
        title=(
            f"NAB: {len(corpus.series)} files, {corpus.window_count} windows, "
            f"{seconds:,.0f} s (probationary 15%, thresholds tuned per profile)"
        )
    )
    table.add_column("detector", no_wrap=True)
    for header in _COLUMNS.values():
        table.add_column(header, justify="right")
    for name, report in reports.items():
        values = report.to_dict()
        table.add_row(
            name,
            *(f"{values[c]:.1f}" if c.startswith("nab") else f"{values[c]:.3f}" for c in _COLUMNS),
        )
    out.print(table)
