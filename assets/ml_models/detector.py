"""The anomaly detector: candidate fleets judged on injected spikes, the winner registered in
MLflow with its fitted state."""

import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from pydantic import Field

from assets import groups
from assets.ml_models.promotion import (
    BEST_OF_CANDIDATES,
    CHAMPION,
    TrainedModel,
    finite,
    log_gate,
    prefixed,
    promote,
    register_model,
)
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from llmhub.ml_data import HOURLY_MART, detector_series, read_frame, read_hourly_mart
from ml.anomaly.fleet import DEFAULT_MEMBERS, MEMBERS, DetectorSpec, SeriesId
from ml.anomaly.plots import anomaly_timeline, score_distribution
from ml.anomaly.shift_evaluation import CHANGE_HOURS, KnownWindow
from ml.anomaly.training import (
    GATE_METRICS,
    SpikeEvaluation,
    baseline_spec,
    evaluate_candidates,
    fit_published,
)
from ml.keys import RouteKey
from ml.promotion import NOISE_MULTIPLE, RESAMPLES
from ml.pyfunc import DETECTOR_CODE, DetectorModel, save_detector

DETECTOR_KEY = dg.AssetKey(["ml", "anomaly_detector"])
#: Scored series per (tenant, application, model). Rates and percentiles are carried forward
#: through idle hours, and never flagged there (``fill_idle_hours``).
DETECTOR_METRICS = ["request_count", "tokens", "cost_usd", "error_rate", "latency_p95_ms"]

FALSE_POSITIVE_SCORES = """
select f.tenant_id, f.asset_id, f.request_model, f.metric, a.score
from analytics.anomaly_feedback f
join analytics.anomalies a using (bucket_at, tenant_id, asset_id, request_model, metric)
where f.verdict = 'false_positive' and f.bucket_at >= %s
"""

# What the hub knows about the held-out week (``ml.anomaly.shift_evaluation.KnownWindow``): the
# shift evaluation counts no false alarm there. A model's change touches the tenant's routes on
# that model, an application's its routes; prompts and policies name no route.
REGISTRY_CHANGES = """
select occurred_at, tenant_id, asset_id, asset_kind, coalesce(model, name) as model
from raw.registry_events
where event_type = 'asset_updated' and asset_kind in ('model', 'application')
    and occurred_at >= %s and occurred_at < %s
"""
# An incident counts when something beside the detector's own anomalies supports it (an event
# member, or an analyst confirming its root cause): otherwise a champion's false alarms would
# open incidents that hide them from the next evaluation.
KNOWN_INCIDENTS = """
select i.tenant_ids, i.asset_ids, i.opened_at,
    coalesce(i.resolved_at, i.last_seen_at) + interval '1 hour' as ended_at
from analytics.incidents i
where i.opened_at < %s and coalesce(i.resolved_at, i.last_seen_at) + interval '1 hour' > %s
    and (
        exists (
            select 1 from analytics.incident_members m
            where m.incident_id = i.incident_id and m.member_kind = 'event'
        )
        or exists (
            select 1 from analytics.incident_feedback f
            where f.incident_id = i.incident_id and f.verdict = 'root_cause_right'
        )
    )
"""
TRUE_POSITIVES = """
select tenant_id, asset_id, request_model, bucket_at
from analytics.anomaly_feedback
where verdict = 'true_positive' and bucket_at >= %s and bucket_at < %s
"""


class DetectorConfig(dg.Config):
    experiment: str = Field("llmhub/anomaly_detector", description="MLflow experiment.")
    registered_model_name: str = Field(
        "llmhub-anomaly-detector", description="MLflow registered model."
    )
    members: list[str] = Field(
        list(DEFAULT_MEMBERS), description=f"Fused detectors, a subset of {MEMBERS}."
    )
    fusion: str = Field("mean", description="mean, max or median of the members' scores.")
    threshold: float = Field(0.5, description="Alert threshold on the fused score.")
    cooldown: int = Field(64, description="Hours after an alert in which only a higher one counts.")
    shared_network: bool = Field(
        True, description="One LSTM autoencoder for the whole fleet instead of one per series."
    )
    shift_tests: bool = Field(
        True,
        description="The configured candidate runs the shift tests beside its members "
        "(ml.anomaly.shift_test); the gate also weighs the robust baseline with them.",
    )
    subtle_shifts: bool = Field(
        True,
        description="Judge the candidates on injected subtle shifts too (recall beside the "
        "spikes' AUC; at most 0.5 more false alarms per 1,000 series-hours than the holder).",
    )
    metrics: list[str] = Field(DETECTOR_METRICS, description="Series metrics fitted and scored.")
    history_hours: int = Field(24 * 21, description="Hours of the mart read, back from its end.")
    eval_hours: int = Field(
        168,
        description="Held-out hours per series (spikes injected there); the candidates are "
        "fitted on the hours before them.",
    )
    min_train_hours: int = Field(24 * 7, description="Series with fewer training hours wait.")
    spike_sigmas: list[float] = Field(
        [3.0, 4.0, 6.0],
        description="Injected spike heights, in robust sigmas of the day-over-day noise; each "
        "series is evaluated once per height.",
    )
    score_hours: int = Field(6, description="Default hours the registered model scores.")
    feedback_ceiling: float = Field(
        0.9, description="Highest per-series threshold analyst feedback may set."
    )
    promotion_metric: str = Field(
        "auc", description=f"Higher-is-better gate metric, one of {GATE_METRICS}."
    )
    gate_resamples: int = Field(
        RESAMPLES, description="Bootstrap resamples of the series measuring the gate's noise."
    )
    gate_noise_multiple: float = Field(
        NOISE_MULTIPLE,
        description="A more complex candidate must win by more than this many noise sds.",
    )
    gate_seed: int = Field(0, description="Seed of the bootstrap resamples.")

    def spec(self) -> DetectorSpec:
        return DetectorSpec(
            members=tuple(self.members),
            fusion=self.fusion,  # type: ignore[arg-type]
            threshold=self.threshold,
            cooldown=self.cooldown,
            shared_network=self.shared_network,
            min_train_points=self.min_train_hours,
            shift_tests=self.shift_tests,
        )

    def evaluation(self) -> SpikeEvaluation:
        return SpikeEvaluation(
            eval_hours=self.eval_hours,
            spike_sigmas=tuple(self.spike_sigmas),
            metric=self.promotion_metric,
            resamples=self.gate_resamples,
            seed=self.gate_seed,
            noise_multiple=self.gate_noise_multiple,
            subtle_shifts=self.subtle_shifts,
        )


def known_windows(
    changes: pd.DataFrame, incidents: pd.DataFrame, true_positives: pd.DataFrame
) -> list[KnownWindow]:
    """The windows the hub knows are not clean, from the rows of ``REGISTRY_CHANGES``,
    ``KNOWN_INCIDENTS`` and ``TRUE_POSITIVES``: a registry change and the ``CHANGE_HOURS``
    after it, an incident's span on each of its (tenant, application) pairs, an hour an
    analyst confirmed."""
    hour, change = pd.Timedelta(hours=1), pd.Timedelta(hours=CHANGE_HOURS)
    windows = [
        KnownWindow(
            row.tenant_id,
            row.asset_id if row.asset_kind == "application" else None,
            row.model if row.asset_kind == "model" else None,
            pd.Timestamp(row.occurred_at),
            pd.Timestamp(row.occurred_at) + change,
            "registry_change",
        )
        for row in changes.itertuples(index=False)
    ]
    windows += [
        KnownWindow(tenant, asset, None, row.opened_at, row.ended_at, "incident")
        for row in incidents.itertuples(index=False)
        for tenant in row.tenant_ids
        for asset in row.asset_ids
    ]
    windows += [
        KnownWindow(
            row.tenant_id,
            row.asset_id,
            row.request_model,
            pd.Timestamp(row.bucket_at),
            pd.Timestamp(row.bucket_at) + hour,
            "true_positive",
        )
        for row in true_positives.itertuples(index=False)
    ]
    return windows


def _signature(series: dict[SeriesId, pd.Series], score_hours: int):
    (example_id, example_metric), example = next(iter(series.items()))
    model_input = pd.DataFrame(
        {
            "series_id": example_id,
            "metric": example_metric,
            "bucket_at": example.index[-48:].tz_convert(None),
            "value": example.iloc[-48:].to_numpy(dtype=float),
        }
    )
    model_output = pd.DataFrame(
        {
            "series_id": example_id,
            "metric": example_metric,
            "bucket_at": example.index[-2:].tz_convert(None),
            "observed": 1.0,
            "expected": 1.0,
            "deviation": 0.0,
            "score": 0.0,
            "is_anomaly": False,
        }
    )
    return infer_signature(model_input, model_output, params={"score_hours": score_hours})


@dg.asset(
    key=DETECTOR_KEY,
    group_name=groups.ML_MODELS,
    kinds={"mlflow", "python"},
    deps=[HOURLY_MART],
    check_specs=[
        dg.AssetCheckSpec(
            BEST_OF_CANDIDATES,
            asset=DETECTOR_KEY,
            blocking=True,
            description="The registered version is the best of the evaluated candidates (robust "
            "baseline, robust baseline with the shift tests, configured ensemble, champion's "
            "configuration), judged on injected spikes (AUC) and injected subtle shifts "
            "(recall, at most 0.5 more false alarms per 1,000 series-hours); a more complex "
            "one wins only beyond the evaluation's noise on one and not worse beyond it on the "
            "other. It holds the `champion` alias.",
        )
    ],
)
def anomaly_detector(
    context: dg.AssetExecutionContext,
    config: DetectorConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """The published anomaly detector: the best candidate fleet, fitted to every series.

    Grain: one fitted detector per (tenant, application, model, metric) series of
    ``marts.fct_llm_requests_hourly`` with ``min_train_hours`` of history. The candidates --
    the ``RobustBaseline`` alone, the robust baseline with the shift tests, the configured
    ensemble and the champion's configuration -- are fitted on all but the last
    ``eval_hours`` hours and scored on them with injected spikes and, separately, injected
    subtle shifts (``ml.anomaly.training``, ``ml.anomaly.shift_evaluation``); the gate
    (``ml.promotion``) keeps the simplest unless a more complex one wins on one evaluation by
    more than its bootstrap noise, loses on neither beyond it, and adds at most 0.5 false
    alarms per 1,000 series-hours: its published flags on the real held-out week, outside the
    windows the hub knows are not clean (``analytics.incidents``, registry changes in
    ``raw.registry_events``, anomalies marked ``true_positive``). The winner is refitted on all
    but the newest ``score_hours``, registered (fitted state as data files, SHA-256 of each on
    the version) and made `champion`, so a fresh install always publishes a detector. Series
    with alerts an analyst marked false positive get a raised threshold.
    """
    started = time.monotonic()
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    inputs = detector_series(hourly, config.metrics, config.min_train_hours + config.eval_hours)
    series = inputs.series
    if not series:
        raise dg.Failure(
            f"no series with {config.min_train_hours + config.eval_hours} hours to train on"
        )
    window_start = min(values.index[0] for values in series.values())
    window_end = max(values.index[-1] for values in series.values())
    held_out = (window_end - pd.Timedelta(hours=config.eval_hours - 1)).to_pydatetime()
    # A change shortly before the week still moves the week's levels.
    since_change = held_out - pd.Timedelta(hours=CHANGE_HOURS).to_pytimedelta()
    until = (window_end + pd.Timedelta(hours=1)).to_pydatetime()
    with hub.connect() as conn:
        marked = read_frame(conn, FALSE_POSITIVE_SCORES, (window_start.to_pydatetime(),))
        known = known_windows(
            read_frame(conn, REGISTRY_CHANGES, (since_change, until)),
            read_frame(conn, KNOWN_INCIDENTS, (until, held_out)),
            read_frame(conn, TRUE_POSITIVES, (held_out, until)),
        )
    false_positive_scores: dict[SeriesId, list[float]] = {}
    for row in marked.itertuples(index=False):
        series_id = RouteKey(row.tenant_id, row.asset_id, row.request_model).encode()
        false_positive_scores.setdefault((series_id, row.metric), []).append(float(row.score))

    spec = config.spec()
    # Simplest first: the robust baseline alone, with the shift tests, the configured fleet.
    candidates = {
        "baseline": baseline_spec(spec),
        "baseline_tests": replace(baseline_spec(spec), shift_tests=True),
        "candidate": spec,
    }
    name = config.registered_model_name
    champion_version = mlflow_tracking.champion_version(name, CHAMPION)
    if champion_version is not None:
        champion, _ = mlflow_tracking.load_champion(name, CHAMPION)
        if not isinstance(champion, DetectorModel):
            raise dg.Failure(f"{name}@{CHAMPION} is not a detector")
        candidates["champion"] = champion.spec()
    training = evaluate_candidates(
        series,
        candidates,
        incumbent="champion" if champion_version is not None else None,
        evaluation=config.evaluation(),
        false_positive_scores=false_positive_scores,
        feedback_ceiling=config.feedback_ceiling,
        judged=inputs.active,
        known=known,
        shift_inputs=inputs.shift_inputs,
    )
    decision = training.decision
    context.log.info(decision.reason)
    if decision.winner is None:
        raise dg.Failure(f"the detector evaluation produced no usable metric: {decision.reason}")
    winner = training.winner
    published = fit_published(winner, series, config.score_hours, training.tuned)
    feedback = {
        **training.feedback,
        "false_positives_marked": float(sum(map(len, false_positive_scores.values()))),
    }

    evaluated = training.evaluations[decision.winner]
    middle = config.spike_sigmas[len(config.spike_sigmas) // 2]
    busiest = sorted(
        (key for key in evaluated.fleet.detectors if key[1] == config.metrics[0]),
        key=lambda key: -float(series[key].sum()),
    )[:3]
    with mlflow_tracking.start_run(config.experiment, run_name=context.run_id[:8]) as run:
        mlflow.log_params(
            {
                **{
                    f"model_{k}": ",".join(v) if isinstance(v, tuple) else v
                    for k, v in asdict(winner).items()
                },
                "model_score_hours": config.score_hours,
                "candidates": ",".join(training.specs),
                **{
                    f"candidate_{k}_members": ",".join(s.members) for k, s in training.specs.items()
                },
                "metrics": ",".join(config.metrics),
                "eval_hours": config.eval_hours,
                "spike_sigmas": ",".join(str(x) for x in config.spike_sigmas),
                "spikes_per_series": len(training.positions),
                "series": len(published),
                "series_too_short": len(published.skipped),
                "thresholds_tuned_by_feedback": len(training.tuned),
                **{
                    f"known_windows_{reason}": sum(w.reason == reason for w in known)
                    for reason in ("registry_change", "incident", "true_positive")
                },
                "window_start": window_start.isoformat(),
                "window_end": window_end.isoformat(),
                "dagster_run_id": context.run_id,
            }
        )
        log_gate(decision, config.gate_noise_multiple, config.gate_resamples)
        mlflow.log_metrics(
            {
                **finite(training.metrics[decision.winner]),
                **prefixed(training.metrics),
                **{f"feedback_{k}": v for k, v in finite(feedback).items()},
            }
        )
        pooled = evaluated.evaluations.values()
        mlflow.log_figure(
            score_distribution(
                np.concatenate([e.spiked for e in pooled]),
                np.concatenate([e.clean for e in pooled]),
                winner.threshold,
            ),
            "plots/score_distribution.png",
        )
        mlflow.log_figure(
            anomaly_timeline(
                {key: evaluated.evaluations[(key, middle)] for key in busiest}, winner.threshold
            ),
            "plots/anomaly_timeline.png",
        )
        with tempfile.TemporaryDirectory() as tmp:
            version = register_model(
                mlflow_tracking,
                code=DETECTOR_CODE,
                artifacts=save_detector(published, config.score_hours, Path(tmp)),
                signature=_signature(series, config.score_hours),
                model_name=name,
                pip_requirements=["mlflow", "pandas", "numpy", "scikit-learn", "torch"],
            )
        run_id = run.info.run_id
    return promote(
        context,
        mlflow_tracking,
        TrainedModel(
            asset_key=DETECTOR_KEY,
            model_name=name,
            version=version,
            run_id=run_id,
            decision=decision,
            previous_champion=champion_version,
            metrics=training.metrics,
            series=len(published),
            window=(window_start, window_end),
            duration_s=time.monotonic() - started,
        ),
    )
