"""What every training asset does after its gate chose: register the winner, record, promote."""

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.pyfunc
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature

from assets.resources.mlflow import MlflowResource
from ml.promotion import GateDecision
from ml.pyfunc import digest_tags, digest_tree

BEST_OF_CANDIDATES = "best_of_evaluated_candidates"
CHAMPION = "champion"


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite values, as Python floats (Dagster metadata does not take numpy scalars)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def prefixed(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{candidate: {metric: value}}`` as finite ``<candidate>_<metric>`` values."""
    return {f"{name}_{k}": v for name, values in metrics.items() for k, v in finite(values).items()}


def log_gate(decision: GateDecision, noise_multiple: float, resamples: int) -> None:
    """The gate's verdict on the active MLflow run: which candidate won and why."""
    mlflow.set_tags({"gate.winner": str(decision.winner), "gate.reason": decision.reason})
    mlflow.log_params(
        {
            "gate_metric": decision.metric,
            "gate_noise_multiple": noise_multiple,
            "gate_resamples": resamples,
        }
    )
    for comparison in decision.comparisons:
        pair = f"{comparison.challenger}_vs_{comparison.holder}"
        mlflow.log_metrics(
            finite(
                {
                    f"gate_{pair}_advantage": comparison.advantage,
                    f"gate_{pair}_noise_sd": comparison.noise,
                    **{
                        f"gate_{pair}_{metric}_{part}": value
                        for metric, advantage, noise, _ in comparison.others
                        for part, value in (("advantage", advantage), ("noise_sd", noise))
                    },
                }
            )
        )


def register_model(
    mlflow_tracking: MlflowResource,
    *,
    code: Path,
    artifacts: dict[str, str],
    signature: ModelSignature,
    model_name: str,
    pip_requirements: list[str],
) -> ModelVersion:
    """Log the model in the active run (models-from-code: ``code`` is the entry script, the
    state is ``artifacts``), register it, and record the SHA-256 of each of its files as
    ``sha256/<path>`` tags on the new version (``MlflowResource.load_champion`` checks them).

    The digests are taken from the files as the registry serves them back, so they cover
    what MLflow itself added (``MLmodel``, environment files). Until they are recorded the
    version has none, and loading it is refused; the alias only moves afterwards.
    """
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code),
        artifacts=artifacts,
        signature=signature,
        registered_model_name=model_name,
        pip_requirements=pip_requirements,
    )
    version = str(info.registered_model_version)
    with tempfile.TemporaryDirectory() as tmp:
        digests = digest_tree(mlflow_tracking.download_model(model_name, version, Path(tmp)))
    client = mlflow_tracking.client()
    for key, value in digest_tags(digests).items():
        client.set_model_version_tag(model_name, version, key, value)
    return client.get_model_version(model_name, version)


@dataclass(frozen=True)
class TrainedModel:
    """The registered winner and the evidence its gate decided on."""

    asset_key: dg.AssetKey
    model_name: str
    version: ModelVersion
    run_id: str
    decision: GateDecision
    previous_champion: str | None
    metrics: dict[str, dict[str, float]]
    series: int
    window: tuple[datetime, datetime]
    duration_s: float


def promote(
    context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, trained: TrainedModel
) -> dg.MaterializeResult:
    """Tag the version with the gate's reason, move ``champion`` to it, and return the
    materialisation with the gate check's result."""
    client = mlflow_tracking.client()
    name, version, decision = trained.model_name, trained.version.version, trained.decision
    client.set_model_version_tag(name, version, "gate.winner", str(decision.winner))
    client.set_model_version_tag(name, version, "gate.reason", decision.reason)
    client.set_registered_model_alias(name, CHAMPION, version)
    context.log.info(f"{name} v{version} is the champion: {decision.reason}")
    start, end = trained.window
    winner = trained.metrics[str(decision.winner)]
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": trained.run_id,
            "model_name": name,
            "model_version": version,
            "previous_champion_version": trained.previous_champion or "none",
            "winner": str(decision.winner),
            "gate_reason": decision.reason,
            "series": trained.series,
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "duration_s": round(trained.duration_s, 1),
            **finite(winner),
            **prefixed(trained.metrics),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BEST_OF_CANDIDATES,
                asset_key=trained.asset_key,
                passed=decision.promote,
                description=decision.reason,
                metadata={
                    "winner": str(decision.winner),
                    "model_version": version,
                    **finite(
                        {
                            f"{candidate}_{decision.metric}": value
                            for candidate, value in decision.values.items()
                        }
                    ),
                    **finite({"noise_sd": decision.noise}),
                },
            )
        ],
    )
