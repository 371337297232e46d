"""How stable the detector gate's verdict on ``make demo``'s traffic is, without the stack.

A fresh install's demo sends four weeks of traffic ending now (seed ``DEMO_SEED``), and the
training job's gate then picks the champion among the plain robust baseline and the baseline
with the shift tests (the ensemble is left out here: it costs minutes per window and has not
won a demo). This replays that step for other window ends (``--hours``: hours after
``--start``) and other traffic seeds (``--seeds``), in process: the demo's ``generate`` call,
the ingestion normaliser and the mart's hourly aggregation (``llmhub.incident_eval``), the
training asset's series and known windows (registry changes; a fresh install knows no incident
yet), and ``ml.anomaly.training.evaluate_candidates`` with the asset's configuration. For each
window it prints the verdict under the gate's rule and the verdict the rule before its
non-inferiority margins would have given (a false-alarm budget without noise, AUC without a
tolerance), then a summary line. JSON lines on stdout, progress on stderr.

Checked against a real fresh demo (13:26 UTC end, 2026-11-30): the same advantages, margins and
false alarms as the training run logged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from assets.ml_models.detector import DetectorConfig, known_windows
from llmhub.demo import DEMO_SEED, demo_traffic
from llmhub.incident_eval import window_frames
from llmhub.ml_data import detector_series
from llmhub.producers.synthetic import SyntheticTraffic
from ml.anomaly.training import baseline_spec, evaluate_candidates
from ml.evaluation.incidents.harness import parse_seeds
from ml.promotion import Comparison

CHANGE_COLUMNS = ["occurred_at", "tenant_id", "asset_id", "asset_kind", "model"]
NO_INCIDENTS = pd.DataFrame(columns=["tenant_ids", "asset_ids", "opened_at", "ended_at"])
NO_TRUE_POSITIVES = pd.DataFrame(columns=["tenant_id", "asset_id", "request_model", "bucket_at"])


def registry_changes(traffic: SyntheticTraffic) -> pd.DataFrame:
    """The rows ``assets.ml_models.detector.REGISTRY_CHANGES`` would read after ingestion."""
    rows = []
    for message in traffic.iter_messages():
        if message.topic != "llm.registry":
            continue
        event = orjson.loads(message.value)
        body = event["body"]
        if event.get("event_type") == "asset_updated" and body.get("asset_kind") in (
            "model",
            "application",
        ):
            rows.append(
                (
                    pd.Timestamp(event["occurred_at"]),
                    event["tenant_id"],
                    event["asset_id"],
                    body["asset_kind"],
                    body.get("model") or body.get("name"),
                )
            )
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


def earlier_rule(comparison: Comparison) -> bool:
    """Whether the challenger would have taken over before the margins: a loss past the noise
    margin alone, any excess over the false-alarm budget."""
    steps = [
        (comparison.advantage, comparison.margin),
        *((a, m) for _, a, _, m in comparison.others),
    ]
    wins = any(a > m and a > 0 for a, m in steps)
    losses = any(not a >= -m for a, m in steps)
    alarms = comparison.false_alarms
    over = alarms is not None and alarms[0] > alarms[1] + alarms[2]
    return wins and not losses and not over


def verdict(seed: int, end: datetime, config: DetectorConfig) -> dict:
    started = time.perf_counter()
    traffic = demo_traffic(seed, end)
    hourly, _ = window_frames(traffic, end + timedelta(minutes=5))
    # read_hourly_mart: complete hours only, the newest history_hours of them.
    hourly = hourly[hourly["request_hour_at"] < pd.Timestamp(end).floor("h")]
    newest = hourly["request_hour_at"].max()
    hourly = hourly[hourly["request_hour_at"] > newest - pd.Timedelta(hours=config.history_hours)]
    inputs = detector_series(hourly, config.metrics, config.min_train_hours + config.eval_hours)
    known = known_windows(registry_changes(traffic), NO_INCIDENTS, NO_TRUE_POSITIVES)
    base = baseline_spec(config.spec())
    training = evaluate_candidates(
        inputs.series,
        {"baseline": base, "baseline_tests": replace(base, shift_tests=True)},
        evaluation=config.evaluation(),
        judged=inputs.active,
        known=known,
        shift_inputs=inputs.shift_inputs,
    )
    comparison = training.decision.comparisons[0]
    alarms = comparison.false_alarms or (float("nan"),) * 3
    return {
        "seed": seed,
        "end": end.isoformat(),
        "winner": training.decision.winner,
        "winner_before_margins": "baseline_tests" if earlier_rule(comparison) else "baseline",
        "auc_advantage": round(comparison.advantage, 5),
        "auc_noise_margin": round(comparison.margin, 5),
        "shift_recall_advantage": [round(a, 3) for _, a, _, _ in comparison.others],
        "shift_recall_margin": [round(m, 3) for _, _, _, m in comparison.others],
        "false_alarms_tests_plain_budget": [round(x, 3) for x in alarms],
        "false_alarm_margin": round(comparison.false_alarm_margin, 3),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=str(DEMO_SEED), help="e.g. 1-12 or 20261130")
    parser.add_argument("--start", default="2026-11-30T13:26:00+00:00", help="first window end")
    parser.add_argument("--hours", default="0", help="window ends after --start, e.g. 0-167")
    parser.add_argument("--step", type=int, default=1, help="take every step-th of --hours")
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).astimezone(UTC)
    cases = [
        (seed, start + timedelta(hours=hours))
        for seed in parse_seeds(args.seeds)
        for hours in parse_seeds(args.hours)[:: args.step]
    ]
    config = DetectorConfig()
    rows = []
    with Progress(console=Console(file=sys.stderr)) as progress:
        task = progress.add_task("gate verdicts", total=len(cases))
        for seed, end in cases:
            rows.append(verdict(seed, end, config))
            print(json.dumps(rows[-1]), flush=True)
            progress.advance(task)
    counts = {
        rule: {name: sum(r[rule] == name for r in rows) for name in ("baseline", "baseline_tests")}
        for rule in ("winner", "winner_before_margins")
    }
    print(json.dumps({"benchmark": "demo_gate_verdicts", "windows": len(rows), **counts}))


if __name__ == "__main__":
    main()
