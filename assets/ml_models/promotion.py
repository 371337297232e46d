"""What every training asset does after logging a candidate: apply the gate and report it."""

import math
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from assets.resources.mlflow import MlflowResource
from ml.registry import PromotionDecision

BEATS_CHAMPION_AND_BASELINE = "beats_champion_and_baseline"
CHAMPION = "champion"


def finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def promotion_check(
    decision: PromotionDecision, had_champion: bool, asset_key: dg.AssetKey, metadata: dict
) -> dg.AssetCheckResult:
    """The gate's verdict. Not promoted while a champion exists: WARN (publishing goes on with
    the old champion). Not promoted with no champion at all: ERROR, which blocks the publishing
    assets, since there is no model they could load."""
    return dg.AssetCheckResult(
        check_name=BEATS_CHAMPION_AND_BASELINE,
        asset_key=asset_key,
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.WARN if had_champion else dg.AssetCheckSeverity.ERROR,
        description=decision.reason,
        metadata=metadata,
    )


@dataclass(frozen=True)
class TrainedCandidate:
    """A registered candidate version and the evidence its gate decided on."""

    asset_key: dg.AssetKey
    model_name: str
    version: str
    run_id: str
    decision: PromotionDecision
    champion_version: str | None
    promotion_metric: str
    candidate_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    series: int
    window: tuple[datetime, datetime]
    duration_s: float


def apply_gate(
    context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, trained: TrainedCandidate
) -> dg.MaterializeResult:
    """Tag the version and its training run with the decision, move ``champion`` to it if the
    gate says so, and return the materialisation with the blocking check's result."""
    client = mlflow_tracking.client()
    name, version, decision = trained.model_name, trained.version, trained.decision
    client.set_model_version_tag(name, version, "promotion", decision.reason)
    client.set_tag(trained.run_id, "promotion.promote", str(decision.promote))
    client.set_tag(trained.run_id, "promotion.reason", decision.reason)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    context.log.info(f"{name} v{version}: {decision.reason}")
    metric = trained.promotion_metric
    start, end = trained.window
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": trained.run_id,
            "model_name": name,
            "model_version": version,
            "champion_version": version
            if decision.promote
            else (trained.champion_version or "none"),
            "promoted": decision.promote,
            "series": trained.series,
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "duration_s": round(trained.duration_s, 1),
            **{f"candidate_{k}": v for k, v in finite(trained.candidate_metrics).items()},
            **{f"baseline_{k}": v for k, v in finite(trained.baseline_metrics).items()},
        },
        check_results=[
            promotion_check(
                decision,
                trained.champion_version is not None,
                trained.asset_key,
                {
                    "model_version": version,
                    "candidate": trained.candidate_metrics.get(metric, math.nan),
                    "baseline": trained.baseline_metrics.get(metric, math.nan),
                    "champion": (trained.champion_metrics or {}).get(metric, math.nan),
                },
            )
        ],
    )
