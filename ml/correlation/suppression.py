"""Suppression by the forecasts: a spike the seasonal forecast expected opens no incident.

A flagged anomaly whose series-hour has a forecast row for the same metric, with the observed
value inside ``[yhat_lower, yhat_upper]``, was expected (a daily peak, a known batch) and is
dropped before correlation. Anomalies without a forecast row are kept.

Forecasts cover request counts; the tokens and cost of an expected volume spike rise with it.
A spend anomaly (``tokens``, ``cost_usd``) in a series-hour whose request count was expected is
suppressed too when its observed/expected ratio is at most ``SPEND_SLACK`` times the request
count's: the extra spend is the expected extra volume, not dearer requests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.correlation.model import SERIES_KEY, factorize_rows
from ml.correlation.temporal import as_utc

SPEND_SLACK = 1.25


def _lookup(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> np.ndarray:
    """Row of ``right`` (unique on ``on``) matching each row of ``left``, -1 where none: a left
    join without merging frames (the keys are factorized together as integer codes)."""
    both = pd.concat([left[on], right[on]], ignore_index=True)
    code, first = factorize_rows(both, on)
    row_of = np.full(len(first), -1, dtype=np.int64)
    row_of[code[len(left) :]] = np.arange(len(right))
    return row_of[code[: len(left)]]


def suppress_expected(
    anomalies: pd.DataFrame, forecasts: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``anomalies`` into (kept, suppressed) by the forecast intervals."""
    if forecasts is None or forecasts.empty or anomalies.empty:
        return anomalies, anomalies.iloc[0:0]
    key = [*SERIES_KEY, "metric", "bucket_at"]
    fc = forecasts.rename(columns={"target_at": "bucket_at"})[
        [*key, "yhat_lower", "yhat_upper"]
    ].drop_duplicates(key, keep="last")
    fc = fc.assign(bucket_at=as_utc(fc["bucket_at"]))
    row = _lookup(anomalies.assign(bucket_at=as_utc(anomalies["bucket_at"])), fc, key)
    found = row >= 0
    lower = np.where(found, fc["yhat_lower"].to_numpy(dtype=float)[row], np.nan)
    upper = np.where(found, fc["yhat_upper"].to_numpy(dtype=float)[row], np.nan)
    observed = anomalies["observed"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        inside = ~np.isnan(lower) & (observed >= lower) & (observed <= upper)
    metric = anomalies["metric"].to_numpy()
    is_volume = inside & (metric == "request_count")
    if is_volume.any():
        expected = anomalies["expected"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = observed / np.where(expected > 0, expected, np.nan)
        volume = anomalies.loc[is_volume, [*SERIES_KEY, "bucket_at"]]
        if not volume.duplicated().any():
            volume_row = _lookup(anomalies, volume, [*SERIES_KEY, "bucket_at"])
            volume_ratio = np.where(
                volume_row >= 0, ratio[is_volume][np.maximum(volume_row, 0)], np.nan
            )
            with np.errstate(invalid="ignore"):
                inside |= (
                    np.isin(metric, ["tokens", "cost_usd"])
                    & ~np.isnan(volume_ratio)
                    & (ratio <= SPEND_SLACK * volume_ratio)
                )
        else:
            inside |= _spend_expected_by_merge(anomalies, volume, ratio[is_volume])
    return anomalies[~inside], anomalies[inside]


def _spend_expected_by_merge(
    anomalies: pd.DataFrame, volume: pd.DataFrame, volume_ratio: np.ndarray
) -> np.ndarray:
    """The spend rule by a frame merge, for the rare input with duplicate series-hour rows."""
    volume = volume.assign(volume_ratio=volume_ratio)
    spend = anomalies.merge(volume, on=[*SERIES_KEY, "bucket_at"], how="left")
    spend_ratio = spend["observed"] / spend["expected"].where(spend["expected"] > 0)
    return (
        spend["metric"].isin(["tokens", "cost_usd"])
        & spend["volume_ratio"].notna()
        & (spend_ratio <= SPEND_SLACK * spend["volume_ratio"])
    ).to_numpy()
