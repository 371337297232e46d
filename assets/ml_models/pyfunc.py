"""The registered models: MLflow ``PythonModel`` wrappers around a forecaster / detector config.

Timestamps cross the pyfunc boundary as timezone-naive UTC (MLflow's datetime schema rejects
timezone-aware columns); the models localise them to UTC again.

Both models are refitted on the history they are given (the forecasters and detectors in ``ml``
fit in the call), so what the registry versions is the *configuration* that won the evaluation,
plus the code it runs. ``models:/<name>@champion`` loads it with ``mlflow.pyfunc.load_model``.
"""

from typing import Any

import mlflow.pyfunc
import pandas as pd

from ml.anomaly import (
    Detector,
    EnsembleDetector,
    IsolationForestDetector,
    LstmAutoencoderDetector,
    RobustBaseline,
)
from ml.forecast import Ensemble, Forecaster, ProphetForecaster, Sarima, SeasonalNaive

FORECAST_MEMBERS = ("seasonal_naive", "sarima", "prophet")
DETECTOR_MEMBERS = ("robust_baseline", "isolation_forest", "lstm_autoencoder")
FORECAST_OUTPUT = ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
SCORE_OUTPUT = [
    "series_id",
    "metric",
    "bucket_at",
    "observed",
    "expected",
    "deviation",
    "score",
    "is_anomaly",
]


def build_forecaster(members: list[str], season: int, level: float) -> Forecaster:
    """The median ensemble of ``members`` (a single member is used alone)."""
    unknown = set(members) - set(FORECAST_MEMBERS)
    if unknown or not members:
        raise ValueError(f"forecast members must be a non-empty subset of {FORECAST_MEMBERS}")
    built: dict[str, Forecaster] = {
        "seasonal_naive": SeasonalNaive(season=season, level=level),
        "sarima": Sarima(season=season, level=level),
        "prophet": ProphetForecaster(level=level),
    }
    chosen = tuple(built[name] for name in members)
    return chosen[0] if len(chosen) == 1 else Ensemble(members=chosen, combination="median")


def build_detector(
    members: list[str], fusion: str, threshold: float, cooldown: int
) -> EnsembleDetector:
    """A fresh ``EnsembleDetector`` of ``members`` with the given fusion and alerting."""
    unknown = set(members) - set(DETECTOR_MEMBERS)
    if unknown or not members:
        raise ValueError(f"detector members must be a non-empty subset of {DETECTOR_MEMBERS}")
    factories: dict[str, type] = {
        "robust_baseline": RobustBaseline,
        "isolation_forest": IsolationForestDetector,
        "lstm_autoencoder": LstmAutoencoderDetector,
    }
    built: list[Detector] = [factories[name]() for name in members]
    return EnsembleDetector(
        built,
        fusion=fusion,
        threshold=threshold,
        cooldown=cooldown,  # type: ignore[arg-type]
    )


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """Forecasts every series of the input ``horizon`` hours past its last point.

    Input: ``series_id``, ``ds`` (hourly UTC timestamps, gap-free per series), ``y``.
    Params: ``horizon`` (default from the config). Output: ``FORECAST_OUTPUT`` columns.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)

    def forecaster(self) -> Forecaster:
        return build_forecaster(
            list(self.config["members"]), int(self.config["season"]), float(self.config["level"])
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", self.config["horizon"]))
        forecaster = self.forecaster()
        frames = []
        for series_id, group in model_input.groupby("series_id", sort=True):
            index = pd.DatetimeIndex(pd.to_datetime(group["ds"], utc=True))
            history = pd.Series(group["y"].to_numpy(dtype=float), index=index).sort_index()
            # Raises on a gap: the forecasters need a regular series.
            history.index.freq = "h"
            frame = forecaster.forecast(history, horizon).to_frame()
            frame.insert(0, "series_id", series_id)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=FORECAST_OUTPUT)
        return pd.concat(frames, ignore_index=True).loc[:, FORECAST_OUTPUT]


class DetectorModel(mlflow.pyfunc.PythonModel):
    """Fits the detector on each series' history and scores its last ``score_hours`` points.

    Input: ``series_id``, ``metric``, ``bucket_at``, ``value`` (no missing values).
    Params: ``score_hours``. Output: ``SCORE_OUTPUT`` columns, one row per scored point.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)

    def detector(self) -> EnsembleDetector:
        return build_detector(
            list(self.config["members"]),
            str(self.config["fusion"]),
            float(self.config["threshold"]),
            int(self.config["cooldown"]),
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        score_hours = int((params or {}).get("score_hours", self.config["score_hours"]))
        frames = []
        for (series_id, metric), group in model_input.groupby(["series_id", "metric"], sort=True):
            values = pd.Series(
                group["value"].to_numpy(dtype=float),
                index=pd.DatetimeIndex(pd.to_datetime(group["bucket_at"], utc=True)),
            ).sort_index()
            if len(values) <= score_hours:
                raise ValueError(f"{series_id}/{metric}: no history before the scored hours")
            result = (
                self.detector()
                .fit(values.iloc[:-score_hours])
                .score(values.iloc[-score_hours:], series_id=str(series_id), metric=str(metric))
            )
            frames.append(
                pd.DataFrame(
                    {
                        "series_id": series_id,
                        "metric": metric,
                        "bucket_at": result.index,
                        "observed": result.values,
                        "expected": result.expected,
                        "deviation": result.deviation,
                        "score": result.scores,
                        "is_anomaly": result.is_anomaly,
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=SCORE_OUTPUT)
        return pd.concat(frames, ignore_index=True).loc[:, SCORE_OUTPUT]
