"""``llmhub ml eval-anomaly`` on three NAB files (the full corpus is scored by the CLI itself).

Needs the public NAB subset in ``../shared/data/nab`` (or ``$LLMHUB_EVAL_DATA/nab``) and skips
when it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmhub.cli.ml import ml_app

pytestmark = pytest.mark.shared_data

FILES = (
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
)
KEYS = {"nab_standard", "nab_low_fp", "nab_low_fn", "precision", "recall", "f1", "fpr"}


def _nab_dir() -> Path:
    configured = os.environ.get("LLMHUB_EVAL_DATA")
    root = (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "../shared/data"
    )
    nab = root.resolve() / "nab"
    if not (nab / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB data {nab} is absent (set LLMHUB_EVAL_DATA to the shared data)")
    return nab


def test_eval_anomaly_scores_a_nab_subset() -> None:
    nab = _nab_dir()
    args = ["eval-anomaly", "--data-dir", str(nab / "data")]
    args += ["--labels", str(nab / "labels" / "combined_windows.json"), "--json"]
    for name in FILES:
        args += ["--file", name]
    result = CliRunner().invoke(ml_app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"ensemble", "robust_baseline", "isolation_forest", "lstm_autoencoder"}
    for report in scores.values():
        assert KEYS <= set(report)
        for key in ("precision", "recall", "f1", "fpr"):
            assert 0.0 <= report[key] <= 1.0
        for key in ("nab_standard", "nab_low_fp", "nab_low_fn"):
            # The tuned threshold can always fall back to "no detection": never below null.
            assert 0.0 <= report[key] <= 100.0
    ensemble = scores["ensemble"]
    # These six windows are clear (a daily peak tripling, a level shift, price spikes): the
    # published detector must find most of them early and beat the null detector by far.
    assert ensemble["nab_standard"] >= 70.0
    assert ensemble["recall"] >= 0.8
