"""The registered models: MLflow ``PythonModel`` wrappers around a forecaster / detector config.

Timestamps cross the pyfunc boundary as timezone-naive UTC (MLflow's datetime schema rejects
timezone-aware columns); the models localise them to UTC again.

The forecaster is refitted on the history it is given (the forecasters in ``ml`` fit in the
call), so the registry versions its *configuration* and code. The detector versions its fitted
state too: the fleet of per-series detectors trained at registration is the model's ``fleet``
artifact, and scoring fits nothing. ``models:/<name>@champion`` loads either with
``mlflow.pyfunc.load_model``.
"""

from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd

from ml.anomaly.fleet import (
    SCORE_COLUMNS,
    DetectorSpec,
    Fleet,
    FleetScores,
    SeriesId,
    fleet_scores_frame,
)
from ml.forecast import (
    AdaptiveSeasonalNaive,
    Ensemble,
    Forecaster,
    ProphetForecaster,
    Sarima,
    SeasonalNaive,
)

FORECAST_MEMBERS = ("seasonal_naive", "adaptive_naive", "sarima", "prophet")
FLEET_ARTIFACT = "fleet"
FORECAST_OUTPUT = ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
SCORE_OUTPUT = SCORE_COLUMNS


def build_forecaster(
    members: list[str], season: int, level: float, weekly_season: int | None = None
) -> Forecaster:
    """The median ensemble of ``members`` (a single member is used alone).

    ``adaptive_naive`` picks ``season`` or ``weekly_season`` (default a week) per series.
    """
    unknown = set(members) - set(FORECAST_MEMBERS)
    if unknown or not members:
        raise ValueError(f"forecast members must be a non-empty subset of {FORECAST_MEMBERS}")
    built: dict[str, Forecaster] = {
        "seasonal_naive": SeasonalNaive(season=season, level=level),
        "adaptive_naive": AdaptiveSeasonalNaive(
            seasons=(season, weekly_season or 7 * season), level=level
        ),
        "sarima": Sarima(season=season, level=level),
        "prophet": ProphetForecaster(level=level),
    }
    chosen = tuple(built[name] for name in members)
    return chosen[0] if len(chosen) == 1 else Ensemble(members=chosen, combination="median")


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """Forecasts every series of the input ``horizon`` hours past its last point.

    Input: ``series_id``, ``ds`` (hourly UTC timestamps, gap-free per series), ``y``.
    Params: ``horizon`` (default from the config). Output: ``FORECAST_OUTPUT`` columns.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)

    def forecaster(self) -> Forecaster:
        return build_forecaster(
            list(self.config["members"]),
            int(self.config["season"]),
            float(self.config["level"]),
            self.config.get("weekly_season"),
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
    """The fitted detector fleet: scores the newest hours of every series without refitting.

    The fleet (``ml.anomaly.fleet.Fleet``, one fitted ensemble per series and the shared LSTM)
    is the model's ``fleet`` artifact, written with joblib at training and loaded once by
    ``load_context``. A series the fleet does not know, or whose input does not reach back to
    the end of its training data, is fitted on the spot from its own input (see ``Fleet.score``).

    Input: ``series_id``, ``metric``, ``bucket_at``, ``value`` (no missing values, hourly).
    Params: ``score_hours``. Output: ``SCORE_OUTPUT`` columns, one row per scored point.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        self.fleet: Fleet | None = None

    def spec(self) -> DetectorSpec:
        return DetectorSpec.from_dict(self.config)

    def load_context(self, context: Any) -> None:
        path = (context.artifacts or {}).get(FLEET_ARTIFACT)
        self.fleet = joblib.load(path) if path else Fleet.empty(self.spec())

    def score(
        self, model_input: pd.DataFrame, score_hours: int | None = None
    ) -> tuple[pd.DataFrame, FleetScores]:
        """Scores of the newest ``score_hours`` of each series, and what the pass did."""
        series = {
            (str(series_id), str(metric)): pd.Series(
                group["value"].to_numpy(dtype=float),
                index=pd.DatetimeIndex(pd.to_datetime(group["bucket_at"], utc=True)),
            ).sort_index()
            for (series_id, metric), group in model_input.groupby(
                ["series_id", "metric"], sort=True
            )
        }
        return self.score_series(series, score_hours)

    def score_series(
        self, series: dict[SeriesId, pd.Series], score_hours: int | None = None
    ) -> tuple[pd.DataFrame, FleetScores]:
        """``score`` for callers that already hold one hourly series per (series id, metric)."""
        fleet = self.fleet if self.fleet is not None else Fleet.empty(self.spec())
        hours = int(score_hours if score_hours is not None else self.config["score_hours"])
        scores = fleet.score(series, hours)
        return fleet_scores_frame(scores), scores

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame, _ = self.score(model_input, (params or {}).get("score_hours"))
        if frame.empty:
            return pd.DataFrame(columns=SCORE_OUTPUT)
        frame["bucket_at"] = frame["bucket_at"].dt.tz_convert(None)
        return frame.loc[:, SCORE_OUTPUT]
