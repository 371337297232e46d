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

import pandas as pd

from ml.correlation.model import SERIES_KEY

SPEND_SLACK = 1.25


def suppress_expected(
    anomalies: pd.DataFrame, forecasts: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``anomalies`` into (kept, suppressed) by the forecast intervals."""
    if forecasts is None or forecasts.empty or anomalies.empty:
        return anomalies, anomalies.iloc[0:0]
    fc = forecasts.rename(columns={"target_at": "bucket_at"})[
        [*SERIES_KEY, "metric", "bucket_at", "yhat_lower", "yhat_upper"]
    ].drop_duplicates([*SERIES_KEY, "metric", "bucket_at"], keep="last")
    merged = anomalies.merge(fc, on=[*SERIES_KEY, "metric", "bucket_at"], how="left")
    inside = (
        merged["yhat_lower"].notna()
        & (merged["observed"] >= merged["yhat_lower"])
        & (merged["observed"] <= merged["yhat_upper"])
    ).to_numpy()
    expected_volume = merged.loc[inside & (merged["metric"] == "request_count").to_numpy()]
    if not expected_volume.empty:
        ratio = (
            expected_volume["observed"]
            / expected_volume["expected"].where(expected_volume["expected"] > 0)
        ).rename("volume_ratio")
        volume = expected_volume[[*SERIES_KEY, "bucket_at"]].assign(volume_ratio=ratio.to_numpy())
        spend = anomalies.merge(volume, on=[*SERIES_KEY, "bucket_at"], how="left")
        spend_ratio = spend["observed"] / spend["expected"].where(spend["expected"] > 0)
        inside |= (
            spend["metric"].isin(["tokens", "cost_usd"])
            & spend["volume_ratio"].notna()
            & (spend_ratio <= SPEND_SLACK * spend["volume_ratio"])
        ).to_numpy()
    return anomalies[~inside], anomalies[inside]
