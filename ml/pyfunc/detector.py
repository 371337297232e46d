"""The registered anomaly detector: the fitted fleet, scoring new hours without refitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from ml.anomaly.fleet_state import load_fleet, save_fleet

#: The models-from-code entry script MLflow runs to build the wrapper.
DETECTOR_CODE = Path(__file__).with_name("detector_code.py")
SCORE_OUTPUT = SCORE_COLUMNS
KIND = "detector"


def save_detector(fleet: Fleet, score_hours: int, directory: Path) -> dict[str, str]:
    """Write the detector's artifacts into ``directory``: ``config`` (JSON) and ``fleet`` (the
    fleet's data files, ``ml.anomaly.fleet_state``). Returns ``log_model``'s ``artifacts``."""
    config = directory / "detector.json"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"kind": KIND, "score_hours": int(score_hours)}))
    save_fleet(fleet, directory / "fleet")
    return {"config": str(config), "fleet": str(directory / "fleet")}


class DetectorModel(mlflow.pyfunc.PythonModel):
    """The fitted detector fleet: scores the newest hours of every series without refitting.

    The fleet (one fitted detector per series and the shared LSTM) is read from the ``fleet``
    artifact by ``load_context``. A series the fleet does not know, or whose input does not
    reach back to the end of its training data, is fitted on the spot from its own input (see
    ``Fleet.score``).

    Input: ``series_id``, ``metric``, ``bucket_at``, ``value`` (no missing values, hourly).
    Params: ``score_hours``. Output: ``SCORE_OUTPUT`` columns, one row per scored point.
    """

    def __init__(self, fleet: Fleet | None = None, score_hours: int = 6) -> None:
        self.fleet = fleet
        self.score_hours = score_hours

    def load_context(self, context: Any) -> None:
        config = json.loads(Path(context.artifacts["config"]).read_text())
        if config.get("kind") != KIND:
            raise ValueError(f"not a detector configuration: {config.get('kind')!r}")
        self.score_hours = int(config["score_hours"])
        self.fleet = load_fleet(Path(context.artifacts["fleet"]))

    def _fleet(self) -> Fleet:
        if self.fleet is None:
            raise RuntimeError("the detector has no fleet: load it with load_context first")
        return self.fleet

    def spec(self) -> DetectorSpec:
        """The fleet's configuration."""
        return self._fleet().spec

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
        hours = int(score_hours if score_hours is not None else self.score_hours)
        scores = self._fleet().score(series, hours)
        return fleet_scores_frame(scores), scores

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame, _ = self.score(model_input, (params or {}).get("score_hours"))
        if frame.empty:
            return pd.DataFrame(columns=SCORE_OUTPUT)
        frame["bucket_at"] = frame["bucket_at"].dt.tz_convert(None)
        return frame.loc[:, SCORE_OUTPUT]
