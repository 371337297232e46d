"""The request-rate forecaster: backtested against the seasonal naive, registered in MLflow."""

import math
import tempfile
import time
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from pydantic import Field

from llmhub.ml_data import HOURLY_MART, busiest_series, read_hourly_mart
from assets.ml_models.promotion import (
    BEATS_CHAMPION_AND_BASELINE,
    CHAMPION,
    TrainedCandidate,
    apply_gate,
    finite,
)
from assets.ml_models.pyfunc import FORECAST_MEMBERS, ForecasterModel, build_forecaster
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from ml.forecast import BacktestResult, SeasonalNaive, rolling_origin_backtest
from ml.forecast.plots import save_forecast_plot
from ml.registry import should_promote

FORECASTER_KEY = dg.AssetKey(["ml", "request_rate_forecaster"])
SCORES = ("mape", "smape", "mase")


class ForecasterConfig(dg.Config):
    experiment: str = Field("llmhub/request_rate_forecaster", description="MLflow experiment.")
    registered_model_name: str = Field(
        "llmhub-request-rate-forecaster", description="MLflow registered model."
    )
    members: list[str] = Field(
        ["adaptive_naive", "sarima", "prophet"],
        description=f"Median-ensemble members, a subset of {FORECAST_MEMBERS}.",
    )
    history_hours: int = Field(24 * 28, description="Hours of the mart read, back from its end.")
    max_series: int = Field(20, description="Backtest the busiest series only (run time).")
    horizon: int = Field(24, description="Hours forecast from each backtest origin.")
    n_origins: int = Field(3, description="Backtest origins per series.")
    publish_horizon: int = Field(48, description="Default horizon of the registered model.")
    season: int = Field(24, description="Seasonal period in hours.")
    weekly_season: int = Field(
        168, description="Second period the adaptive_naive member may pick, in hours."
    )
    level: float = Field(0.95, description="Nominal coverage of the prediction intervals.")
    promotion_metric: str = Field("mase", description="Lower-is-better metric that promotes.")


def _mean(results: list[BacktestResult], score: str) -> float:
    """Mean over series, ignoring series where the score is undefined (MAPE at zeros, MASE of
    a series without seasonal variation); ``nan`` when no series defines it."""
    values = [getattr(r, score) for r in results if math.isfinite(getattr(r, score))]
    return float(np.mean(values)) if values else math.nan


@dg.asset(
    key=FORECASTER_KEY,
    group_name="ml_models",
    kinds={"mlflow", "python"},
    deps=[HOURLY_MART],
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_CHAMPION_AND_BASELINE,
            asset=FORECASTER_KEY,
            blocking=True,
            description="The new version beats the seasonal naive and the champion on the "
            "backtest (it then holds the `champion` alias).",
        )
    ],
)
def request_rate_forecaster(
    context: dg.AssetExecutionContext,
    config: ForecasterConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """Hourly request-count forecaster per (tenant, application, model), as an MLflow model.

    Rolling-origin backtest of the median ensemble and of the seasonal naive on the busiest
    series of ``marts.fct_llm_requests_hourly``; metrics, parameters, the data window and a
    forecast plot go to MLflow, the configuration is registered as a new model version. The
    current champion is backtested on the same series and origins for the comparison. The
    `champion` alias moves here, in the same step as the registration, so a version that lost
    the gate can never be published even if its check is skipped; the check reports the
    decision.
    """
    started = time.monotonic()
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    min_points = (
        max(config.season * 3, config.weekly_season + 2) + config.horizon * config.n_origins
    )
    series = busiest_series(hourly, "request_count", config.max_series, min_points)
    if not series:
        raise dg.Failure(f"no request_count series with {min_points} hours of history to backtest")
    window_start = min(values.index[0] for _, values in series)
    window_end = max(values.index[-1] for _, values in series)

    candidate = build_forecaster(config.members, config.season, config.level, config.weekly_season)
    baseline = SeasonalNaive(season=config.season, level=config.level)
    candidate_results, baseline_results = [], []
    for key, values in series:
        context.log.debug(f"backtesting {key.label()}")
        candidate_results.append(
            rolling_origin_backtest(
                candidate, values, config.horizon, config.season, config.n_origins
            )
        )
        baseline_results.append(
            rolling_origin_backtest(
                baseline, values, config.horizon, config.season, config.n_origins
            )
        )
    candidate_metrics = {s: _mean(candidate_results, s) for s in SCORES}
    candidate_metrics["coverage"] = _mean(candidate_results, "coverage")
    baseline_metrics = {s: _mean(baseline_results, s) for s in SCORES}

    # The champion is re-evaluated on the same series and origins: its own logged metrics come
    # from an older data window, which would make the comparison one of windows, not models.
    name = config.registered_model_name
    champion_version = mlflow_tracking.champion_version(name, CHAMPION)
    champion_metrics: dict[str, float] | None = None
    if champion_version is not None:
        champion_model, _ = mlflow_tracking.load_champion(name, CHAMPION)
        champion = champion_model.unwrap_python_model().forecaster()
        champion_results = [
            rolling_origin_backtest(
                champion, values, config.horizon, config.season, config.n_origins
            )
            for _, values in series
        ]
        champion_metrics = {s: _mean(champion_results, s) for s in SCORES}
    decision = should_promote(
        candidate_metrics, champion_metrics, baseline_metrics, config.promotion_metric
    )

    model_config = {
        "members": list(config.members),
        "season": config.season,
        "weekly_season": config.weekly_season,
        "level": config.level,
        "horizon": config.publish_horizon,
    }
    example_key, example = series[0]
    model_input = pd.DataFrame(
        {
            "series_id": example_key.label(),
            "ds": example.index[-48:].tz_convert(None),
            "y": example.iloc[-48:],
        }
    )
    model_output = pd.DataFrame(
        {
            "series_id": example_key.label(),
            "ds": example.index[-2:].tz_convert(None),
            "yhat": 1.0,
            "yhat_lower": 0.0,
            "yhat_upper": 2.0,
        }
    )
    signature = infer_signature(
        model_input, model_output, params={"horizon": config.publish_horizon}
    )
    with mlflow_tracking.start_run(config.experiment, run_name=context.run_id[:8]) as run:
        mlflow.log_params(
            {
                **{f"model_{k}": v for k, v in model_config.items()},
                "backtest_horizon": config.horizon,
                "n_origins": config.n_origins,
                "series": len(series),
                "window_start": window_start.isoformat(),
                "window_end": window_end.isoformat(),
                "dagster_run_id": context.run_id,
            }
        )
        mlflow.log_metrics(
            {
                **finite(candidate_metrics),
                **{f"baseline_{k}": v for k, v in finite(baseline_metrics).items()},
                **{f"champion_{k}": v for k, v in finite(champion_metrics or {}).items()},
            }
        )
        per_series = pd.concat(
            [
                pd.DataFrame(
                    {
                        "series": [key.label()] * 2,
                        "model": [c.model, b.model],
                        "mape": [c.mape, b.mape],
                        "smape": [c.smape, b.smape],
                        "mase": [c.mase, b.mase],
                        "coverage": [c.coverage, b.coverage],
                    }
                )
                for (key, _), c, b in zip(series, candidate_results, baseline_results, strict=True)
            ],
            ignore_index=True,
        )
        mlflow.log_table(per_series, "backtest_per_series.json")
        with tempfile.TemporaryDirectory() as tmp:
            fold = candidate_results[0].folds[-1]
            plot = save_forecast_plot(
                Path(tmp) / "forecast.png",
                fold.forecast,
                example.iloc[: fold.train_size],
                fold.actual,
                history_points=config.season * 7,
                title=f"{example_key.label()}: last backtest fold",
            )
            mlflow.log_artifact(str(plot), "plots")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecasterModel(model_config),
            signature=signature,
            registered_model_name=name,
            # Only the repository's own code: the wrapper imports ml/ and assets/ at load time.
            pip_requirements=["mlflow", "pandas", "numpy"],
        )
        run_id = run.info.run_id
    return apply_gate(
        context,
        mlflow_tracking,
        TrainedCandidate(
            asset_key=FORECASTER_KEY,
            model_name=name,
            version=str(info.registered_model_version),
            run_id=run_id,
            decision=decision,
            champion_version=champion_version,
            promotion_metric=config.promotion_metric,
            candidate_metrics=candidate_metrics,
            baseline_metrics=baseline_metrics,
            champion_metrics=champion_metrics,
            series=len(series),
            window=(window_start, window_end),
            duration_s=time.monotonic() - started,
        ),
    )
