"""The request-rate forecaster: candidates backtested on the same series, the winner registered."""

import tempfile
import time
from pathlib import Path

import dagster as dg
import mlflow
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
from llmhub.ml_data import HOURLY_MART, busiest_series, read_hourly_mart
from ml.forecast.plots import save_forecast_plot
from ml.forecast.training import FORECAST_MEMBERS, SCORES, ForecastSpec, evaluate_forecasters
from ml.promotion import NOISE_MULTIPLE, RESAMPLES
from ml.pyfunc import FORECASTER_CODE, ForecasterModel, save_forecaster

FORECASTER_KEY = dg.AssetKey(["ml", "request_rate_forecaster"])


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
    promotion_metric: str = Field(
        "mase", description=f"Lower-is-better gate metric, one of {SCORES}."
    )
    gate_resamples: int = Field(
        RESAMPLES, description="Bootstrap resamples of the series measuring the gate's noise."
    )
    gate_noise_multiple: float = Field(
        NOISE_MULTIPLE,
        description="A more complex candidate must win by more than this many noise sds.",
    )
    gate_seed: int = Field(0, description="Seed of the bootstrap resamples.")

    def spec(self) -> ForecastSpec:
        return ForecastSpec(tuple(self.members), self.season, self.weekly_season, self.level)


@dg.asset(
    key=FORECASTER_KEY,
    group_name=groups.ML_MODELS,
    kinds={"mlflow", "python"},
    deps=[HOURLY_MART],
    check_specs=[
        dg.AssetCheckSpec(
            BEST_OF_CANDIDATES,
            asset=FORECASTER_KEY,
            blocking=True,
            description="The registered version is the best of the backtested candidates "
            "(seasonal naive, configured ensemble, champion's configuration); a more complex "
            "one wins only beyond the backtest's noise. It holds the `champion` alias.",
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

    Rolling-origin backtest of the seasonal naive, the configured median ensemble and the
    champion's configuration on the same origins of the busiest series of
    ``marts.fct_llm_requests_hourly`` (``ml.forecast.training``); the gate (``ml.promotion``)
    keeps the simplest unless a more complex one wins by more than the backtest's bootstrap
    noise. Metrics, the gate's verdict, the data window and a forecast plot go to MLflow; the
    winner's configuration is registered (a JSON artifact, SHA-256 on the version) and made
    `champion`, so a fresh install always publishes a forecaster.
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

    spec = config.spec()
    candidates = {"baseline": spec.baseline(), "candidate": spec}
    name = config.registered_model_name
    champion_version = mlflow_tracking.champion_version(name, CHAMPION)
    if champion_version is not None:
        champion, _ = mlflow_tracking.load_champion(name, CHAMPION)
        if not isinstance(champion, ForecasterModel):
            raise dg.Failure(f"{name}@{CHAMPION} is not a forecaster")
        candidates["champion"] = ForecastSpec.from_config(champion.config)
    training = evaluate_forecasters(
        [values for _, values in series],
        candidates,
        horizon=config.horizon,
        n_origins=config.n_origins,
        incumbent="champion" if champion_version is not None else None,
        metric=config.promotion_metric,
        resamples=config.gate_resamples,
        seed=config.gate_seed,
        noise_multiple=config.gate_noise_multiple,
        progress=lambda candidate: context.log.debug(f"backtesting {candidate}"),
    )
    decision = training.decision
    context.log.info(decision.reason)
    if decision.winner is None:
        raise dg.Failure(f"the forecaster backtest produced no usable metric: {decision.reason}")
    winner = training.winner
    model_config = winner.config(config.publish_horizon)

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
                **{
                    f"model_{k}": ",".join(v) if isinstance(v, list) else v
                    for k, v in model_config.items()
                },
                "candidates": ",".join(training.specs),
                **{
                    f"candidate_{k}_members": ",".join(s.members) for k, s in training.specs.items()
                },
                "backtest_horizon": config.horizon,
                "n_origins": config.n_origins,
                "series": len(series),
                "window_start": window_start.isoformat(),
                "window_end": window_end.isoformat(),
                "dagster_run_id": context.run_id,
            }
        )
        log_gate(decision, config.gate_noise_multiple, config.gate_resamples)
        mlflow.log_metrics(
            {**finite(training.metrics[decision.winner]), **prefixed(training.metrics)}
        )
        mlflow.log_table(
            training.per_series([key.label() for key, _ in series]), "backtest_per_series.json"
        )
        with tempfile.TemporaryDirectory() as tmp:
            fold = training.results[decision.winner][0].folds[-1]
            plot = save_forecast_plot(
                Path(tmp) / "forecast.png",
                fold.forecast,
                example.iloc[: fold.train_size],
                fold.actual,
                history_points=config.season * 7,
                title=f"{example_key.label()}: last backtest fold ({decision.winner})",
            )
            mlflow.log_artifact(str(plot), "plots")
            version = register_model(
                mlflow_tracking,
                code=FORECASTER_CODE,
                artifacts=save_forecaster(model_config, Path(tmp) / "model"),
                signature=signature,
                model_name=name,
                pip_requirements=["mlflow", "pandas", "numpy"],
            )
        run_id = run.info.run_id
    return promote(
        context,
        mlflow_tracking,
        TrainedModel(
            asset_key=FORECASTER_KEY,
            model_name=name,
            version=version,
            run_id=run_id,
            decision=decision,
            previous_champion=champion_version,
            metrics=training.metrics,
            series=len(series),
            window=(window_start, window_end),
            duration_s=time.monotonic() - started,
        ),
    )
