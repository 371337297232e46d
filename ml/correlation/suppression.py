"""Suppression by the forecasts: a spike the seasonal forecast expected opens no incident.

A flagged anomaly whose series-hour has a forecast row for the same metric, with the observed
value inside ``[yhat_lower, yhat_upper]``, was expected (a daily peak, a known batch) and is
dropped before correlation. Anomalies without a forecast row are kept.
"""

from __future__ import annotations

import pandas as pd

from ml.correlation.model import SERIES_KEY


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
    return anomalies[~inside], anomalies[inside]
