"""The registered request-rate forecaster: a configuration, refitted on the history it is given.

The forecasters in ``ml.forecast`` fit in the call, so the registry versions the configuration
(a JSON artifact) and the code; there is no fitted state to store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from ml.forecast import Forecaster
from ml.forecast.training import build_forecaster

#: The models-from-code entry script MLflow runs to build the wrapper.
FORECASTER_CODE = Path(__file__).with_name("forecaster_code.py")
FORECAST_OUTPUT = ["series_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
KIND = "forecaster"
CONFIG_KEYS = ("members", "season", "weekly_season", "level", "horizon")


def save_forecaster(config: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Write the forecaster's ``config`` (``CONFIG_KEYS``) as JSON into ``directory``.
    Returns ``log_model``'s ``artifacts``."""
    missing = set(CONFIG_KEYS) - set(config)
    if missing:
        raise ValueError(f"forecaster configuration lacks {sorted(missing)}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "forecaster.json"
    path.write_text(json.dumps({"kind": KIND, **{k: config[k] for k in CONFIG_KEYS}}))
    return {"config": str(path)}


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """Forecasts every series of the input ``horizon`` hours past its last point.

    Input: ``series_id``, ``ds`` (hourly UTC timestamps, gap-free per series), ``y``.
    Params: ``horizon`` (default from the config). Output: ``FORECAST_OUTPUT`` columns.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    def load_context(self, context: Any) -> None:
        config = json.loads(Path(context.artifacts["config"]).read_text())
        if config.get("kind") != KIND:
            raise ValueError(f"not a forecaster configuration: {config.get('kind')!r}")
        self.config = {k: config[k] for k in CONFIG_KEYS}

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
