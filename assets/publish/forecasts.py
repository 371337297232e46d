"""48-hour request-count forecasts of the busiest series, by the champion forecaster."""

import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets import groups
from assets.ml_models import FORECASTER_KEY
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from llmhub.ml_data import HOURLY_MART, busiest_series, read_hourly_mart
from ml.pyfunc import ForecasterModel

UPSERT_FORECAST = """
insert into analytics.forecasts (
    series_key, tenant_id, asset_id, metric, grain, target_at, forecast_made_at,
    yhat, yhat_lower, yhat_upper, model_name, model_version, mlflow_run_id
) values (%s, %s, %s, %s, 'hour', %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (series_key, metric, grain, target_at, forecast_made_at) do update set
    tenant_id = excluded.tenant_id, asset_id = excluded.asset_id, yhat = excluded.yhat,
    yhat_lower = excluded.yhat_lower, yhat_upper = excluded.yhat_upper,
    model_name = excluded.model_name, model_version = excluded.model_version,
    mlflow_run_id = excluded.mlflow_run_id
"""
METRIC = "request_count"


class ForecastsConfig(dg.Config):
    forecaster_model_name: str = Field(
        "llmhub-request-rate-forecaster", description="MLflow registered model (its `champion`)."
    )
    horizon: int = Field(48, description="Hours forecast past the newest hour of the mart.")
    max_series: int = Field(20, description="Forecast the busiest series only.")
    history_hours: int = Field(24 * 28, description="Hours of history each forecast fits on.")
    min_history_hours: int = Field(24 * 7, description="Shorter series are not forecast.")


@dg.asset(
    key=["analytics", "forecasts"],
    group_name=groups.PUBLISH,
    kinds={"mlflow", "timescaledb"},
    deps=[HOURLY_MART, FORECASTER_KEY],
)
def forecasts(
    context: dg.AssetExecutionContext,
    config: ForecastsConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """Hourly request-count forecast with a 95% interval, ``horizon`` hours ahead.

    Grain: one row per series (``tenant/application/model``), target hour and forecast origin
    (``forecast_made_at`` = the newest hour of history) in ``analytics.forecasts``, for the
    busiest series of ``marts.fct_llm_requests_hourly``, by the `champion` forecaster. Counts
    cannot be negative, so forecasts and bounds are clipped at 0. Re-running from the same
    origin replaces its rows.
    """
    started = time.monotonic()
    model, version = mlflow_tracking.load_champion(config.forecaster_model_name)
    if not isinstance(model, ForecasterModel):
        raise dg.Failure(f"{config.forecaster_model_name} is not a forecaster")
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    series = busiest_series(hourly, METRIC, config.max_series, config.min_history_hours)
    if not series:
        return dg.MaterializeResult(metadata={"rows_written": 0, "series": 0})
    keys = {key.route.encode(): (key, values.index[-1]) for key, values in series}
    model_input = pd.concat(
        [
            pd.DataFrame(
                {
                    "series_id": key.route.encode(),
                    "ds": values.index.tz_convert(None),
                    "y": values.to_numpy(dtype=float),
                }
            )
            for key, values in series
        ],
        ignore_index=True,
    )
    predicted = model.predict(None, model_input, params={"horizon": config.horizon})
    predicted["ds"] = pd.to_datetime(predicted["ds"], utc=True)
    rows = []
    for r in predicted.itertuples(index=False):
        key, origin = keys[r.series_id]
        rows.append(
            (
                r.series_id,
                key.tenant_id,
                key.asset_id,
                METRIC,
                pd.Timestamp(r.ds).to_pydatetime(),
                origin.to_pydatetime(),
                float(np.maximum(r.yhat, 0.0)),
                float(np.maximum(r.yhat_lower, 0.0)),
                float(np.maximum(r.yhat_upper, 0.0)),
                config.forecaster_model_name,
                str(version.version),
                version.run_id,
            )
        )
    with hub.connect() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT_FORECAST, rows)
    context.log.info(f"{len(rows)} forecast rows for {len(series)} series")
    return dg.MaterializeResult(
        metadata={
            "rows_written": len(rows),
            "series": len(series),
            "horizon_h": config.horizon,
            "forecast_made_at": max(origin for _, origin in keys.values()).isoformat(),
            "model_name": config.forecaster_model_name,
            "model_version": str(version.version),
            "mlflow_run_id": version.run_id or "",
            "duration_s": round(time.monotonic() - started, 1),
        }
    )
